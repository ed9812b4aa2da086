# SPDX-License-Identifier: Apache-2.0
"""TM-MeanFlow math against closed forms: the target on a Gaussian inner flow, the finite-difference order,
the adaptive normalisation and the (t, s, r) sampling scheme (App. A.2; docs/method.md §5)."""
from itertools import pairwise

import pytest
import torch

from comfyui_tmd.tmd_core import shift_time, tmd_grid
from comfyui_tmd.training.meanflow import adaptive_loss, fd_points, meanflow_target, total_derivative
from comfyui_tmd.training.times import outer_times, shifted_uniform, stage1_inner_times, student_inputs


class GaussianFlow:
    """y ~ N(μ, σ²) per element, y_s = (1 − s)y + s·y1: the marginal flow is z_s = m_s + σ_s·ξ with
    m_s = (1 − s)μ and σ_s² = (1 − s)²σ² + s², so velocity and flow map are known in closed form."""

    def __init__(self, mu: torch.Tensor, sigma: float):
        self.mu, self.sigma = mu, sigma

    def std(self, s):
        return torch.sqrt((1 - s) ** 2 * self.sigma ** 2 + s ** 2)[:, None]

    def velocity(self, z, s):
        m, sd = (1 - s)[:, None] * self.mu, self.std(s)
        dsd = ((s - (1 - s) * self.sigma ** 2)[:, None]) / sd
        return -self.mu + dsd / sd * (z - m)

    def average_velocity(self, z, s, r):
        z_r = (1 - r)[:, None] * self.mu + self.std(r) / self.std(s) * (z - (1 - s)[:, None] * self.mu)
        return (z - z_r) / (s - r)[:, None]


@pytest.fixture
def flow():
    g = torch.Generator().manual_seed(5)
    return GaussianFlow(torch.randn(1, 12, generator=g, dtype=torch.float64), 0.7), g


def test_meanflow_target_equals_the_closed_form_average_velocity(flow):
    """û = v − (s − r)·du/ds, with the exact u plugged in, reproduces the exact u (the identity is its fixed point)."""
    flow, g = flow
    s = torch.tensor([0.3, 0.55, 0.8, 0.95, 0.6], dtype=torch.float64)
    r = torch.tensor([0.1, 0.2, 0.5, 0.9089, 0.6], dtype=torch.float64)  # the last row is r = s
    z = (1 - s)[:, None] * flow.mu + flow.std(s) * torch.randn(5, 12, generator=g, dtype=torch.float64)
    u_fn = lambda y, s_eval, rows: flow.average_velocity(y, s_eval, r[rows])  # noqa: E731
    v = flow.velocity(z, s)
    exact = flow.average_velocity(z[:4], s[:4], r[:4])
    # delta = 5e-3 (the paper's): central-difference truncation ~delta^2 * u''' = O(1e-5); 1e-4: float64 rounding only.
    torch.testing.assert_close(meanflow_target(u_fn, z, v, s, r, delta=5e-3)[:4], exact, rtol=0, atol=1e-4)
    target = meanflow_target(u_fn, z, v, s, r, delta=1e-4)
    torch.testing.assert_close(target[:4], exact, rtol=0, atol=1e-7)
    torch.testing.assert_close(target[4], v[4], rtol=0, atol=0)  # r = s: plain flow matching
    # The printed paper's sign (v + (s - r) du/ds) misses the closed form by far: a sign flip would fail here.
    assert ((2 * v[:4] - target[:4]) - exact).abs().max() > 1e-2


def _derivative_error(flow, z, s, r, delta):
    u_fn = lambda y, s_eval, rows: flow.average_velocity(y, s_eval, r[rows])  # noqa: E731
    rows = torch.arange(len(s))
    fd = total_derivative(u_fn, z, flow.velocity(z, s), s, r, delta, rows)
    exact = (flow.velocity(z, s) - flow.average_velocity(z, s, r)) / (s - r)[:, None]  # from u + (s − r)u' = v
    return (fd - exact).abs().max().item()


def test_central_difference_error_shrinks_as_delta_squared(flow):
    flow, g = flow
    s, r = torch.tensor([0.4, 0.7, 0.9], dtype=torch.float64), torch.tensor([0.1, 0.3, 0.5], dtype=torch.float64)
    z = (1 - s)[:, None] * flow.mu + flow.std(s) * torch.randn(3, 12, generator=g, dtype=torch.float64)
    errors = [_derivative_error(flow, z, s, r, d) for d in (4e-2, 2e-2, 1e-2, 5e-3)]
    ratios = [a / b for a, b in pairwise(errors)]
    assert all(3.6 < q < 4.4 for q in ratios), (errors, ratios)


def test_one_sided_difference_at_the_top_boundary_is_first_order(flow):
    flow, g = flow
    s, r = torch.tensor([0.998], dtype=torch.float64), torch.tensor([0.9], dtype=torch.float64)
    z = (1 - s)[:, None] * flow.mu + flow.std(s) * torch.randn(1, 12, generator=g, dtype=torch.float64)
    errors = [_derivative_error(flow, z, s, r, d) for d in (4e-2, 2e-2, 1e-2)]
    ratios = [a / b for a, b in pairwise(errors)]
    assert all(1.7 < q < 2.3 for q in ratios), (errors, ratios)


def test_fd_points_are_central_inside_and_one_sided_at_the_boundaries():
    s = torch.tensor([0.5, 0.998, 0.003, 0.3021], dtype=torch.float64)
    r = torch.tensor([0.2, 0.9, 0.0, 0.3], dtype=torch.float64)
    upper, lower = fd_points(s, r, 5e-3)
    torch.testing.assert_close(upper, torch.tensor([0.505, 0.998, 0.008, 0.3071], dtype=torch.float64))
    torch.testing.assert_close(lower, torch.tensor([0.495, 0.993, 0.003, 0.3021], dtype=torch.float64))


def test_adaptive_loss_value_and_stop_gradient_denominator():
    g = torch.Generator().manual_seed(2)
    error = torch.randn(3, 16, 2, 2, 2, generator=g, dtype=torch.float64, requires_grad=True)
    c = 40.0
    loss = adaptive_loss(error, c)
    sq = error.detach().pow(2).flatten(1).sum(1)
    torch.testing.assert_close(loss.detach().double(), (sq / (sq + c)).mean(), rtol=1e-6, atol=0)
    loss.backward()
    expected = 2 * error.detach() / (3 * (sq + c))[:, None, None, None, None]
    torch.testing.assert_close(error.grad, expected, rtol=1e-5, atol=1e-9)


def test_stage1_times_follow_the_discrete_scheme():
    g = torch.Generator().manual_seed(0)
    grid = tmd_grid(4, 10.0)
    s, r = stage1_inner_times(20000, grid, 3.0, 0.75, g)
    assert s.dtype == torch.float64 and (r <= s).all()
    assert abs((r == s).double().mean().item() - 0.75) < 0.015
    below = r < s
    allowed = torch.tensor(grid, dtype=torch.float64)
    assert torch.isin(r[below], allowed).all()
    # r is the largest grid point at or below s
    for si, ri in zip(s[below][:200].tolist(), r[below][:200].tolist(), strict=True):
        assert ri == max(p for p in grid if p <= si)
    assert abs(s.median().item() - 0.75) < 0.01  # shift_3 maps the median 0.5 to 0.75 (docs/method.md §5.3)
    assert s.min() >= shift_time(0.001, 3.0) and s.max() <= shift_time(0.999, 3.0)


def test_outer_times_and_student_inputs():
    g = torch.Generator().manual_seed(1)
    grid = tmd_grid(2, 10.0)
    t = outer_times(1000, grid, g)
    assert set(t.tolist()) == set(grid[:-1])
    t_dmd = shifted_uniform(20000, 5.0, g)
    assert abs(t_dmd.quantile(0.1).item() - 0.36) < 0.01 and abs(t_dmd.median().item() - 0.83) < 0.01
    x, noise = torch.randn(2, 16, 1, 2, 2, generator=g), torch.randn(2, 16, 1, 2, 2, generator=g)
    t2 = torch.tensor(grid[:-1], dtype=torch.float64)
    inputs = student_inputs(x, noise, t2)
    torch.testing.assert_close(inputs[0], 0.999 * noise[0])  # the sampler's start: pure noise at the top
    torch.testing.assert_close(inputs[1], (1 - grid[1]) * x[1] + grid[1] * noise[1])
