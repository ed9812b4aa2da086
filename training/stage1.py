# SPDX-License-Identifier: Apache-2.0
"""Stage 1: transition-matching pretraining of the flow head with MeanFlow (TM-MF, the paper's Eqs. 8–10, App. A.2).

Roles: `student` (TMDStudent, every parameter trained, the backbone is not detached). No teacher network
is needed: the targets come from the data and, for CFG, from the student's own negative-prompt velocity.

Per sample (all draws from the algorithm's RNG, in this order): t_i ~ Unif{t_1..t_M}; noise x1; inner
noise y1; (s, r) by the discrete scheme (r = s for 75%); condition dropout to the negative prompt (10%).
Then x_t = (1 − t)x + t·x1, y = x1 − x, y_s = (1 − s)y + s·y1, v = y1 − y,
v_tgt = u_neg + ω(v − u_neg) for kept samples and v for dropped ones (no_grad, eval of the student at
r = s with the negative prompt: the paper's "standard CFG formulation", read as MeanFlow/FastGen do),
û = v_tgt − (s − r)·du/ds by finite differences on the same backbone features m (reusing m is this
pack's choice; the paper is silent), and the loss ||u − û||² / sg(||u − û||² + c), c = factor·d.
u is formed from the head's output in the configured inner form (tmd_core/inner_form.py). The finite
differences re-run only the head, in float32 with autocast off: δ = 5e-3 is about one bf16 step near s = 1,
so a bf16 difference quotient is mostly rounding noise.
"""
from __future__ import annotations

import dataclasses

import torch

from ..tmd_core.grids import tmd_grid
from ..tmd_core.guidance import guided
from ..tmd_core.inner_form import average_velocity
from ..tmd_core.student import BackboneFeatures, TMDStudent
from .algorithm import Algorithm
from .config import TrainConfig
from .distributed import Env
from .meanflow import adaptive_loss, meanflow_target
from .models import initial_student, load_teacher
from .times import noised, outer_times, stage1_inner_times


def _rows_fp32(features: BackboneFeatures, rows: torch.Tensor) -> BackboneFeatures:
    """The rows `rows` of detached features, in float32 for the finite differences."""
    return dataclasses.replace(features, tokens=features.tokens[rows].detach().float(),
                               context=features.context[rows].detach().float())


def _average_velocity(student: TMDStudent, features: BackboneFeatures, y: torch.Tensor, s: torch.Tensor,
                      r: torch.Tensor, y1: torch.Tensor, inner_form: str) -> torch.Tensor:
    """u(y, s, r; m) [B, C, T, H, W] from head_θ in the given inner form (Eq. 14 for "y1")."""
    return average_velocity(student.head(features, y, student.head_time(s, r, y.dtype)), y, y1, s, inner_form)


def _student_u(student: TMDStudent, x_t, t, context, y_s, s, r, y1,
               inner_form: str) -> tuple[torch.Tensor, BackboneFeatures]:
    features = student.backbone(x_t, t, context)
    return _average_velocity(student, features, y_s, s, r, y1, inner_form), features


class TMMeanFlow(Algorithm):
    stage = "1"
    log_keys = ("loss", "mse", "mf_share")

    def __init__(self, config: TrainConfig, env: Env):
        super().__init__(config, env)
        m = config.model
        teacher = load_teacher(m, env.device, torch.float32)
        self.wan_config = teacher.config
        self.add_role("student", initial_student(m, teacher), self.optim.lr)
        del teacher  # stage 1 needs no frozen network
        self.finish_setup()
        self.outer_grid = tmd_grid(m.outer_steps, m.outer_gamma)
        self.inner_grid = tmd_grid(m.inner_steps, m.inner_gamma)

    def inputs(self, batch: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
        """The batch on the device and every random draw of a step, per sample [B, ...], in the documented order."""
        cfg = self.config.stage1
        x = batch["latents"].to(self.env.device)
        b = x.shape[0]
        t = outer_times(b, self.outer_grid, self.rng)
        x1, y1 = self.randn_like(x), self.randn_like(x)
        s, r = stage1_inner_times(b, self.inner_grid, cfg.s_gamma, cfg.r_equals_s_prob, self.rng)
        dropped = torch.rand(b, generator=self.rng, device=x.device) < cfg.cond_dropout
        return {"x": x, "context": batch["context"].to(self.env.device),
                "negative": batch["negative_context"].to(self.env.device),
                "t": t, "x1": x1, "y1": y1, "s": s, "r": r, "dropped": dropped}

    def loss(self, batch: dict[str, torch.Tensor]) -> tuple[torch.Tensor, dict[str, float]]:
        """The TM-MF loss of one whole batch (graph attached) and its log values."""
        return self.loss_of(self.inputs(batch))

    def loss_of(self, rows: dict[str, torch.Tensor]) -> tuple[torch.Tensor, dict[str, float]]:
        """The TM-MF loss of drawn rows (a batch or a micro-batch of `inputs`), a mean over the rows."""
        cfg = self.config.stage1
        x, negative, t, x1, y1, s, r = (rows[k] for k in ("x", "negative", "t", "x1", "y1", "s", "r"))
        dropped = rows["dropped"]
        context = torch.where(dropped[:, None, None], negative, rows["context"])
        x_t, y = noised(x, x1, t), x1 - x
        y_s, v = noised(y, y1, s), y1 - y

        kept = torch.nonzero(~dropped).flatten()
        v_target = v.clone()
        form = self.config.model.inner_form
        if cfg.cfg_scale != 1.0 and (len(kept) or self.lockstep):
            rows_in = kept if len(kept) else kept.new_zeros(1)  # a stand-in row keeps FSDP2's processes in step
            with torch.no_grad():
                u_neg, _ = self.call("student", _student_u, x_t[rows_in], t[rows_in], negative[rows_in],
                                     y_s[rows_in], s[rows_in], s[rows_in], y1[rows_in], form)
            v_target[kept] = guided(v[kept], u_neg[:len(kept)].to(v.dtype), cfg.cfg_scale)

        u, features = self.call("student", _student_u, x_t, t, context, y_s, s, r, y1, form)
        error = u.float() - self.target(features, y_s, v_target, s, r, y1).float()
        d = error[0].numel()
        loss = adaptive_loss(error, cfg.loss_c_factor * d)
        return loss, {"loss": loss.item(), "mse": error.detach().pow(2).mean().item(),
                      "mf_share": (r < s).double().mean().item()}

    def target(self, features: BackboneFeatures, y_s: torch.Tensor, v_target: torch.Tensor, s: torch.Tensor,
               r: torch.Tensor, y1: torch.Tensor) -> torch.Tensor:
        """û = v_tgt − (s − r)·du/ds [B, ...] float64, du/ds by finite differences of the head alone on the
        features m of the loss's own backbone pass, in float32 with autocast off."""
        form = self.config.model.inner_form

        def u_fn(y_eval: torch.Tensor, s_eval: torch.Tensor, rows: torch.Tensor) -> torch.Tensor:
            return self.call_fp32("student", _average_velocity, _rows_fp32(features, rows), y_eval.float(), s_eval,
                                  r[rows], y1[rows].float(), form)

        return meanflow_target(u_fn, y_s, v_target, s, r, self.config.stage1.fd_delta, self.lockstep)

    def step(self, batch: dict[str, torch.Tensor], iteration: int) -> dict[str, float]:
        return self.accumulate(self.loss_of, self.inputs(batch), "student")
