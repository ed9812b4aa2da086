# SPDX-License-Identifier: Apache-2.0
"""The one classifier-free guidance mix and the one per-sample time broadcast that sampler and training share."""
import torch

from comfyui_tmd.tmd_core.broadcast import broadcast
from comfyui_tmd.tmd_core.guidance import guided


def test_guidance_scale_one_is_the_conditional_and_zero_the_unconditional():
    cond, uncond = torch.randn(2, 3), torch.randn(2, 3)
    torch.testing.assert_close(guided(cond, uncond, 1.0), cond)
    torch.testing.assert_close(guided(cond, uncond, 0.0), uncond)
    torch.testing.assert_close(guided(cond, uncond, 5.0), uncond + 5.0 * (cond - uncond))


def test_broadcast_scales_each_sample_in_the_asked_dtype():
    t, x = torch.tensor([0.999, 0.5], dtype=torch.float64), torch.ones(2, 16, 1, 2, 2, dtype=torch.bfloat16)
    assert broadcast(t, x).shape == (2, 1, 1, 1, 1) and broadcast(t, x).dtype == torch.bfloat16
    kept = broadcast(t, x, torch.float32)
    assert kept.dtype == torch.float32 and kept[0].item() == torch.tensor(0.999, dtype=torch.float32).item()
