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

    def loss(self, batch: dict[str, torch.Tensor]) -> tuple[torch.Tensor, dict[str, float]]:
        cfg = self.config.flow_matching
        x, context, negative = (batch[k].to(self.env.device) for k in ("latents", "context", "negative_context"))
        t = shifted_uniform(x.shape[0], cfg.t_gamma, self.rng)
        noise = self.randn_like(x)
        dropped = torch.rand(x.shape[0], generator=self.rng, device=x.device) < cfg.cond_dropout
        context = torch.where(dropped[:, None, None], negative, context)
        v = self.call("model", wan_velocity, noised(x, noise, t), t, context)
        loss = F.mse_loss(v.float(), (noise - x).float())
        return loss, {"loss": loss.item()}

    def step(self, batch: dict[str, torch.Tensor], iteration: int) -> dict[str, float]:
        loss, logs = self.loss(batch)
        self.optimize(loss, "model")
        return logs
