# SPDX-License-Identifier: Apache-2.0
"""Stage 1's finite-difference du/ds is evaluated in float32 with autocast off: under the run's bf16 autocast,
δ = 5e-3 divides bf16 rounding noise of the head's output by 2δ = 0.01."""
import dataclasses

import pytest
import torch

from comfyui_tmd.tmd_core import tmd_grid
from comfyui_tmd.training.config import config_from_dict
from comfyui_tmd.training.distributed import Env
from comfyui_tmd.training.stage1 import TMMeanFlow

from factories import perturb_extras
from training_factories import SHARD_LATENT, TEXT_LEN


@dataclasses.dataclass(frozen=True)
class CPUBf16Env(Env):
    """The run's bf16 autocast, on the CPU (a real run has it on CUDA only)."""

    def autocast(self):
        return torch.autocast("cpu", dtype=torch.bfloat16)


def du_ds(algo, features, y_s, v, s, r, y1):
    """(v − û)/(s − r) = du/ds, [B, ...] float64, as the algorithm computes it."""
    return (v.double() - algo.target(features, y_s, v, s, r, y1)) / (s - r).reshape(-1, 1, 1, 1, 1)


@pytest.mark.parametrize("inner_form", ["y1", "ys"])
def test_du_ds_under_bf16_autocast_matches_float32(config_dict, inner_form):
    config_dict["model"]["inner_form"] = inner_form
    algo = TMMeanFlow(config_from_dict(config_dict), CPUBf16Env())
    perturb_extras(algo.module("student"))
    g = torch.Generator().manual_seed(5)
    b = 4
    x_t, y, y1 = (torch.randn(b, *SHARD_LATENT, generator=g) for _ in range(3))
    context = torch.randn(b, TEXT_LEN, 4096, generator=g)
    t = torch.full((b,), tmd_grid(2)[0], dtype=torch.float64)
    s = torch.tensor([0.99, 0.95, 0.8, 0.93], dtype=torch.float64)  # near the top, where bf16 is coarsest
    r = torch.full((b,), tmd_grid(2)[1], dtype=torch.float64)
    y_s = (1 - s).reshape(-1, 1, 1, 1, 1).float() * y + s.reshape(-1, 1, 1, 1, 1).float() * y1
    v = y1 - y
    with torch.no_grad():
        features = algo.module("student").backbone(x_t, t, context)  # the same float32 m for both runs
        bf16 = du_ds(algo, features, y_s, v, s, r, y1)
        algo.env = Env()  # float32 throughout
        reference = du_ds(algo, features, y_s, v, s, r, y1)
    error = ((bf16 - reference).norm() / reference.norm()).item()
    assert error < 1e-5, f"du/ds under bf16 autocast is {error:.2%} off the float32 reference"
