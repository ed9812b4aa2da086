# SPDX-License-Identifier: Apache-2.0
"""Small random Wan models for tests. Every parameter is random, so no term can hide behind a zero."""
import torch

from comfyui_tmd.tmd_core import WanConfig, WanDiT

SMALL = WanConfig(dim=64, ffn_dim=96, num_heads=2, num_layers=6)
LATENT = (2, 16, 3, 4, 6)  # [B, C, T, H, W] -> 3·2·3 = 18 tokens


def random_wan(config: WanConfig = SMALL, seed: int = 0, dtype: torch.dtype = torch.float32) -> WanDiT:
    """A Wan with every parameter random (biases and norms too), so no term can hide behind a zero."""
    torch.manual_seed(seed)
    wan = WanDiT(config)
    with torch.no_grad():
        for name, p in wan.named_parameters():
            if p.ndim == 1:
                p.copy_(1.0 + 0.1 * torch.randn_like(p) if "norm" in name else 0.1 * torch.randn_like(p))
    return wan.to(dtype).eval()


def perturb_extras(student, seed: int = 7):
    """Move a student's flow-head extras off their identity initialisation, as training would."""
    torch.manual_seed(seed)
    with torch.no_grad():
        for p in student.extras.parameters():
            p.add_(0.05 * torch.randn_like(p))
    return student
