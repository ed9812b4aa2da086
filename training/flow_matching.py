# SPDX-License-Identifier: Apache-2.0
"""Flow-matching training of a Wan teacher (the toy world's teacher; also fine-tuning a real one).

Roles: `model` (a Wan, every parameter trained), started from `model.teacher` (or a random `model.wan`).
Loss: MSE(v_θ(x_t, t, c), x1 − x) with x_t = (1 − t)x + t·x1, t = shift_γ(U[0.001, 0.999]), and a
`cond_dropout` share of samples conditioned on the negative prompt so that CFG works at sampling time.
"""
from __future__ import annotations

import torch
import torch.nn.functional as F

from .algorithm import Algorithm
from .config import TrainConfig
from .distributed import Env
from .models import initial_wan_student, load_teacher, wan_velocity
from .times import noised, shifted_uniform


class FlowMatching(Algorithm):
    stage = "fm"
    exported_role = "model"
    log_keys = ("loss",)

    def __init__(self, config: TrainConfig, env: Env):
        super().__init__(config, env)
        initial = load_teacher(config.model, env.device, torch.float32)
        self.wan_config = initial.config
        self.add_role("model", initial_wan_student(config.model, initial), self.optim.lr)
        self.finish_setup()

    def inputs(self, batch: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
        """The batch on the device and the step's draws per sample: t, noise, condition dropout, in this order."""
        cfg = self.config.flow_matching
        x = batch["latents"].to(self.env.device)
        t = shifted_uniform(x.shape[0], cfg.t_gamma, self.rng)
        noise = self.randn_like(x)
        dropped = torch.rand(x.shape[0], generator=self.rng, device=x.device) < cfg.cond_dropout
        return {"x": x, "context": batch["context"].to(self.env.device),
                "negative": batch["negative_context"].to(self.env.device), "t": t, "noise": noise, "dropped": dropped}

    def loss(self, batch: dict[str, torch.Tensor]) -> tuple[torch.Tensor, dict[str, float]]:
        return self.loss_of(self.inputs(batch))

    def loss_of(self, rows: dict[str, torch.Tensor]) -> tuple[torch.Tensor, dict[str, float]]:
        """MSE over drawn rows (a batch or a micro-batch of `inputs`)."""
        x, t, noise = rows["x"], rows["t"], rows["noise"]
        context = torch.where(rows["dropped"][:, None, None], rows["negative"], rows["context"])
        v = self.call("model", wan_velocity, noised(x, noise, t), t, context)
        loss = F.mse_loss(v.float(), (noise - x).float())
        return loss, {"loss": loss.item()}

    def step(self, batch: dict[str, torch.Tensor], iteration: int) -> dict[str, float]:
        return self.accumulate(self.loss_of, self.inputs(batch), "model")
