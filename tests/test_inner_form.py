# SPDX-License-Identifier: Apache-2.0
"""The two inner-velocity forms against a Gaussian target whose posterior mean is known in closed form.

Inner data y ~ N(0, σ²) per coordinate, y_s = (1 − s)·y + s·y1, so E[y | y_s] = (1 − s)σ² / ((1 − s)²σ² + s²)·y_s:
the head a perfect r = s training would give. Following the inner ODE from y1 ~ N(0, 1) must end at std σ.
"""
import pytest
import torch

from comfyui_tmd.tmd_core import SamplingConfigError, average_velocity, flow_map_step, inner_rollout, tmd_grid

SAMPLES = 100_000  # std estimates within ~0.3 % (standard error σ/√(2n))


class PosteriorMeanHead:
    """Duck-types TMDStudent.head for `inner_rollout`, whose `times` are here the inner times s themselves."""

    def __init__(self, sigma: float):
        self.variance = sigma ** 2

    def head(self, features, y_s, s, transformer_options=None):
        return (1 - s) * self.variance / ((1 - s) ** 2 * self.variance + s ** 2) * y_s


def rollout_std(sigma: float, steps: int, gamma: float, form: str) -> float:
    y1 = torch.randn(SAMPLES, generator=torch.Generator().manual_seed(0), dtype=torch.float64).reshape(-1, 1, 1, 1, 1)
    grid = tmd_grid(steps, gamma)
    with torch.no_grad():
        return inner_rollout(PosteriorMeanHead(sigma), None, y1, grid[:-1], grid, inner_form=form).std().item()


@pytest.mark.parametrize("sigma", [1.0, 0.5])
@pytest.mark.parametrize("gamma, tolerance", [(1.0, 0.01), (10.0, 0.04)])
def test_ys_form_follows_the_inner_ode_to_the_data_std(sigma, gamma, tolerance):
    """256 Euler steps of u = (y_s − head)/s reach σ: within 1 % on a uniform grid, within 4 % on the sampler's
    γ = 10 grid, whose coarse low-s steps are the discretisation error (measured 0.984 for σ = 1, 0.485 for 0.5)."""
    assert rollout_std(sigma, 256, gamma, "ys") == pytest.approx(sigma, rel=tolerance)


@pytest.mark.parametrize("sigma, measured", [(1.0, 0.496), (0.5, 0.193)])
def test_y1_form_with_a_posterior_mean_head_misses_the_data_std(sigma, measured):
    """u = y1 − head with y1 held fixed does not follow the inner ODE: 256 steps on the γ = 10 grid end at
    about half (σ = 1) or under two fifths (σ = 0.5) of the data's std. Asserted as measured, within 0.01."""
    assert rollout_std(sigma, 256, 10.0, "y1") == pytest.approx(measured, abs=0.01)


def test_both_forms_agree_at_the_first_inner_step():
    """At the top of the grid y_s = y1 and s = 0.999, so (y_s − head)/s = (y1 − head)/0.999."""
    s = tmd_grid(2)[0]
    y1 = torch.randn(2, 16, 1, 4, 4, generator=torch.Generator().manual_seed(1))
    head = PosteriorMeanHead(1.0).head(None, y1, s) + 0.1 * torch.randn_like(y1)
    u_y1, u_ys = average_velocity(head, y1, y1, s, "y1"), average_velocity(head, y1, y1, s, "ys")
    torch.testing.assert_close(u_ys, u_y1, rtol=1.01e-3, atol=0.0)
    assert not torch.equal(u_ys, u_y1)


@pytest.mark.parametrize("form", ["y1", "ys"])
def test_flow_map_step_in_place_equals_the_autograd_form(form):
    g = torch.Generator().manual_seed(2)
    y, head, y1 = (torch.randn(2, 16, 1, 4, 4, generator=g) for _ in range(3))
    s, r = 0.9, 0.4
    expected = y - (s - r) * average_velocity(head, y, y1, s, form)
    with torch.no_grad():
        stepped = flow_map_step(y.clone(), head.clone(), y1, s, r, form)
    torch.testing.assert_close(stepped, expected, rtol=1e-6, atol=1e-6)
    if form == "ys":  # a DDIM-like interpolation towards the head's estimate of y
        torch.testing.assert_close(stepped, (r / s) * y + (1 - r / s) * head, rtol=1e-6, atol=1e-6)


def test_time_tensors_broadcast_per_sample():
    y, head = torch.randn(3, 16, 1, 2, 2), torch.randn(3, 16, 1, 2, 2)
    s = torch.tensor([0.999, 0.5, 0.25], dtype=torch.float64)
    u = average_velocity(head, y, None, s, "ys")
    for i in range(3):
        torch.testing.assert_close(u[i], (y[i] - head[i]) / float(s[i]))


def test_an_unknown_form_is_named():
    with pytest.raises(SamplingConfigError, match="inner form 'x1' is unknown; expected one of y1, ys"):
        rollout_std(1.0, 2, 10.0, "x1")
