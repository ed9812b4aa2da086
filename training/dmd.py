# SPDX-License-Identifier: Apache-2.0
"""The math of DMD2-v (Eqs. 11, 17, App. A.3; docs/method.md §6–7), free of any network: tested analytically.

Scores are x0-predictions g(x_t, t) = x_t − t·v(x_t, t) (Eq. 17). The student's distribution-matching
gradient is (g_fake − g_teacher)·w: descending it moves a sample towards the teacher's denoised estimate
and away from the fake score's. It is applied through the surrogate 0.5·MSE(x̂, sg(x̂ − grad)), whose
gradient in x̂ is exactly grad / numel.

Normaliser w (App. A.3's formula is garbled in the PDF; docs/method.md §6.2): "dmd" (default) is the
original DMD weight 1/mean|x̂ − g_teacher| per sample, which the authors' public FastGen code uses;
"paper" reads App. A.3 as 1/||g_fake − g_teacher||_1, taken as a per-element mean so the step size does
not shrink with the latent size (a sum would only rescale the learning rate by 1/d).
"""
from __future__ import annotations

import torch
import torch.nn.functional as F

from ..tmd_core.broadcast import broadcast


_EPS = 1e-6  # keeps w finite when a sample already matches (FastGen's value)


def x0_from_velocity(x_t: torch.Tensor, t: torch.Tensor, v: torch.Tensor) -> torch.Tensor:
    """g = x_t − t·v: the data estimate of a velocity prediction."""
    return x_t - broadcast(t, x_t) * v


def vsd_gradient(x_hat: torch.Tensor, g_fake: torch.Tensor, g_teacher: torch.Tensor,
                 normalizer: str = "dmd") -> torch.Tensor:
    """(g_fake − g_teacher)·w per sample, [B, ...] float32, no graph."""
    x_hat, g_fake, g_teacher = x_hat.detach().float(), g_fake.detach().float(), g_teacher.detach().float()
    diff = g_fake - g_teacher
    scale = (x_hat - g_teacher) if normalizer == "dmd" else diff
    weight = 1.0 / (scale.abs().flatten(1).mean(1) + _EPS)  # [B]
    return diff * broadcast(weight, diff)


def vsd_loss(x_hat: torch.Tensor, grad: torch.Tensor) -> torch.Tensor:
    """0.5·MSE(x̂, sg(x̂ − grad)): its gradient in x̂ is grad / x̂.numel()."""
    x_hat = x_hat.float()
    return 0.5 * F.mse_loss(x_hat, (x_hat - grad).detach())


def fake_score_loss(g_fake: torch.Tensor, x_hat: torch.Tensor) -> torch.Tensor:
    """Denoising loss of the fake score on the student's samples: MSE(g_fake(x̂_t, t), sg(x̂)) (FastGen, unweighted)."""
    return F.mse_loss(g_fake.float(), x_hat.detach().float())


def gan_generator_loss(fake_logits: torch.Tensor) -> torch.Tensor:
    """Non-saturating generator loss, mean softplus(−D(fake))."""
    return F.softplus(-fake_logits.float()).mean()


def gan_discriminator_loss(fake_logits: torch.Tensor, real_logits: torch.Tensor) -> torch.Tensor:
    """mean softplus(D(fake)) + mean softplus(−D(real))."""
    return F.softplus(fake_logits.float()).mean() + F.softplus(-real_logits.float()).mean()
