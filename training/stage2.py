# SPDX-License-Identifier: Apache-2.0
"""Stage 2: DMD2-v distillation (Eqs. 11, 15, App. A.3), with the TMD flow-head rollout or as the plain baseline.

Roles: `student` (trainable), `teacher` (frozen real score, CFG 5 with the negative prompt),
`fake_score` (a trainable copy of the teacher, x0-parametrised, learns the student's samples) and
`discriminator` (Conv3D heads on teacher features; absent when the GAN weight is 0).

Iteration k: if k % 5 == 0 the student takes a step on L_VSD + 0.03·L_GAN; otherwise the fake score
and the discriminator each take one (one backward, disjoint graphs). Student input: t_i ~ Unif{t_1..t_M},
x_{t_i} noised real data (no outer backward simulation; pure noise t·x1 at the grid top). TMD: backbone
once, then all N head steps with gradients (`inner_rollout`, the sampler's own loop; `rollout_grad: last`
keeps the last step's only). The student's sample is x̂ = x_t − t·ŷ by default ("denoised": what the sampler
computes, and the baseline's form), or Eq. 15's literal x1 − ŷ ("eq15"); the paper leaves the choice open.
DMD noise: t ~ shift_5(U[0.001, 0.999]), one noise ε shared by the fake sample and the discriminator's
real sample (FastGen's `gan_use_same_t_noise`).
"""
from __future__ import annotations

import torch

from ..tmd_core.grids import tmd_grid
from ..tmd_core.guidance import guided
from ..tmd_core.inner_form import flow_map_step
from ..tmd_core.sampler import inner_rollout
from ..tmd_core.student import TMDStudent
from .algorithm import Algorithm
from .config import TrainConfig
from .discriminator import Discriminator, default_disc_blocks, teacher_features
from .distributed import Env
from .dmd import fake_score_loss, gan_discriminator_loss, gan_generator_loss, vsd_gradient, vsd_loss, x0_from_velocity
from .models import initial_student, initial_wan_student, load_teacher, trainable_copy, wan_velocity
from .times import noised, outer_times, shifted_uniform, student_inputs


def _guided_velocity(wan, x_t, t, context, negative, scale: float) -> torch.Tensor:
    """Teacher velocity with CFG, cond and negative in one batch."""
    cond, neg = wan(torch.cat([x_t, x_t]), 1000.0 * torch.cat([t, t]), torch.cat([context, negative])).chunk(2)
    return guided(cond, neg, scale)


def _discriminate(discriminator, features: list[torch.Tensor], train: bool) -> torch.Tensor:
    """Logits [B, heads]; dropout only when the discriminator itself is trained, so the generator's GAN loss is
    a deterministic function of its sample."""
    discriminator.train(train)
    return discriminator(features)


def _tmd_rollout(student: TMDStudent, x_t, t, context, y1, inner_grid: list[float], inner_form: str,
                 rollout_grad: str = "all") -> torch.Tensor:
    """ŷ of one outer step: backbone once, N head steps from y1. When autograd is on, gradients flow through all
    N steps ("all") or the last only ("last": the first N − 1 run under no_grad, so the last step's input is a
    constant; the backbone's features still get gradient through that step)."""
    features = student.backbone(x_t, t, context)
    times = [student.head_time(torch.full_like(t, s), torch.full_like(t, r), x_t.dtype)
             for s, r in zip(inner_grid[:-1], inner_grid[1:], strict=True)]
    if rollout_grad == "all":
        return inner_rollout(student, features, y1, times, inner_grid, inner_form=inner_form)
    with torch.no_grad():
        y = inner_rollout(student, features, y1, times[:-1], inner_grid[:-1], inner_form=inner_form)
    s, r = inner_grid[-2], inner_grid[-1]
    return flow_map_step(y, student.head(features, y, times[-1]), y1, s, r, inner_form)


class DMD2V(Algorithm):
    """The plain DMD2-v baseline: the student is a Wan, x̂ = x_t − t·v_student(x_t, t) on an M-step grid."""

    stage = "dmd2v"
    log_keys = ("student_loss", "vsd", "gan_g", "fake_score", "disc", "d_real", "d_fake")

    def __init__(self, config: TrainConfig, env: Env):
        super().__init__(config, env)
        m, s2 = config.model, config.stage2
        teacher_dtype = torch.bfloat16 if env.bf16 else torch.float32
        teacher = load_teacher(m, env.device, teacher_dtype)
        self.wan_config = teacher.config
        self.add_role("student", self.initial_student(teacher), self.optim.lr)
        self.add_role("fake_score", trainable_copy(teacher), s2.fake_lr)
        self.disc_blocks = s2.disc_blocks or default_disc_blocks(len(teacher.blocks))
        if s2.gan_weight > 0:
            disc = Discriminator(teacher.dim, len(self.disc_blocks)).to(env.device)
            self.add_role("discriminator", disc, s2.disc_lr)
        self.add_role("teacher", teacher)
        self.finish_setup()
        self.outer_grid = tmd_grid(m.outer_steps, m.outer_gamma)

    def initial_student(self, teacher):
        return initial_wan_student(self.config.model, teacher)

    def generate(self, x_t: torch.Tensor, x1: torch.Tensor, t: torch.Tensor, context: torch.Tensor) -> torch.Tensor:
        """The student's sample x̂ from x_t (graph attached when autograd is on)."""
        return x0_from_velocity(x_t, t, self.call("student", wan_velocity, x_t, t, context).float())

    def _sample(self, batch: dict[str, torch.Tensor], grad: bool):
        """(x, context, negative, x̂, DMD time t, DMD noise ε): the student's sample of a batch and its noising."""
        x, context, negative = (batch[k].to(self.env.device) for k in ("latents", "context", "negative_context"))
        t_i = outer_times(x.shape[0], self.outer_grid, self.rng)
        x1 = self.randn_like(x)
        with torch.set_grad_enabled(grad):
            x_hat = self.generate(student_inputs(x, x1, t_i), x1, t_i, context)
        t = shifted_uniform(x.shape[0], self.config.stage2.dmd_gamma, self.rng)
        return x, context, negative, x_hat, t, self.randn_like(x)

    def _features(self, x_t: torch.Tensor, t: torch.Tensor, context: torch.Tensor) -> list[torch.Tensor]:
        return self.call("teacher", teacher_features, x_t, t, context, self.disc_blocks)

    def student_losses(self, batch: dict[str, torch.Tensor]) -> tuple[torch.Tensor, dict[str, float]]:
        s2 = self.config.stage2
        x, context, negative, x_hat, t, eps = self._sample(batch, grad=True)
        x_hat_t = noised(x_hat, eps, t)
        with torch.no_grad():
            v_real = self.call("teacher", _guided_velocity, x_hat_t, t, context, negative, s2.teacher_cfg)
            v_fake = self.call("fake_score", wan_velocity, x_hat_t, t, context)
            grad = vsd_gradient(x_hat, x0_from_velocity(x_hat_t, t, v_fake.float()),
                                x0_from_velocity(x_hat_t, t, v_real.float()), s2.normalizer)
        vsd = vsd_loss(x_hat, grad)
        logs = {"vsd": vsd.item()}
        loss = vsd
        if "discriminator" in self._modules:
            logits = self.call("discriminator", _discriminate, self._features(x_hat_t, t, context), False)
            gan = gan_generator_loss(logits)
            loss = loss + s2.gan_weight * gan
            logs["gan_g"] = gan.item()
        logs["student_loss"] = loss.item()
        return loss, logs

    def critic_losses(self, batch: dict[str, torch.Tensor]) -> tuple[torch.Tensor, dict[str, float]]:
        x, context, _, x_hat, t, eps = self._sample(batch, grad=False)
        x_hat_t = noised(x_hat, eps, t)
        v_fake = self.call("fake_score", wan_velocity, x_hat_t, t, context)
        fake = fake_score_loss(x0_from_velocity(x_hat_t, t, v_fake.float()), x_hat)
        logs = {"fake_score": fake.item()}
        loss = fake
        if "discriminator" in self._modules:
            both_t, b = torch.cat([t, t]), x.shape[0]
            with torch.no_grad():  # fake and real in one teacher pass and one discriminator pass (one DDP forward)
                feats = self._features(torch.cat([x_hat_t, noised(x, eps, t)]), both_t, torch.cat([context, context]))
            logits = self.call("discriminator", _discriminate, feats, True)
            disc = gan_discriminator_loss(logits[:b], logits[b:])
            loss = loss + disc
            logs.update(disc=disc.item(), d_fake=logits[:b].mean().item(), d_real=logits[b:].mean().item())
        return loss, logs

    def step(self, batch: dict[str, torch.Tensor], iteration: int) -> dict[str, float]:
        if iteration % self.config.stage2.student_update_every == 0:
            loss, logs = self.student_losses(batch)
            self.optimize(loss, "student")
        else:
            loss, logs = self.critic_losses(batch)
            self.optimize(loss, *[name for name in ("fake_score", "discriminator") if name in self._modules])
        return logs


class TMDDistillation(DMD2V):
    """Stage 2 of TMD: DMD2-v whose student is the backbone + flow head, rolled out over N inner steps."""

    stage = "2"

    def __init__(self, config: TrainConfig, env: Env):
        super().__init__(config, env)
        self.inner_grid = tmd_grid(config.model.inner_steps, config.model.inner_gamma)

    def initial_student(self, teacher):
        return initial_student(self.config.model, teacher)

    def generate(self, x_t: torch.Tensor, x1: torch.Tensor, t: torch.Tensor, context: torch.Tensor) -> torch.Tensor:
        y1 = self.randn_like(x_t)
        y_hat = self.call("student", _tmd_rollout, x_t, t, context, y1, self.inner_grid,
                          self.config.model.inner_form, self.config.stage2.rollout_grad).float()
        if self.config.stage2.student_x0 == "eq15":
            return x1 - y_hat
        return x0_from_velocity(x_t, t, y_hat)
