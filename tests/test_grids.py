# SPDX-License-Identifier: Apache-2.0
"""Grids and effective NFE (Eq. 16) against the numbers of docs/method.md §3–4."""
import pytest

from comfyui_tmd.tmd_core import SamplingConfigError, effective_nfe, shift_time, teacher_sigmas, tmd_grid, tmd_sigmas


@pytest.mark.parametrize("steps, gamma, expected", [
    (1, 10, [0.999, 0.0]),
    (2, 10, [0.999, 0.9089, 0.0]),
    (3, 10, [0.999, 0.9522, 0.8331, 0.0]),
    (3, 5, [0.999, 0.9088, 0.7140, 0.0]),
    (4, 10, [0.999, 0.9676, 0.9089, 0.7690, 0.0]),
    (4, 5, [0.999, 0.9373, 0.8331, 0.6247, 0.0]),  # FastGen's hard-coded 4-step grid
])
def test_tmd_grid_matches_the_papers_grids(steps, gamma, expected):
    assert tmd_grid(steps, gamma) == pytest.approx(expected, abs=5e-5)
    assert tmd_sigmas(steps, gamma).tolist() == pytest.approx(expected, abs=5e-5)


def test_shift_quantiles():
    # docs/method.md §5.3: shift_3 maps the uniform quantiles 0.1/0.5/0.9 to about 0.25/0.75/0.96.
    assert [round(shift_time(q, 3), 2) for q in (0.1, 0.5, 0.9)] == [0.25, 0.75, 0.96]
    assert shift_time(0.37, 1) == 0.37


def test_teacher_sigmas_run_from_one_to_zero():
    sigmas = teacher_sigmas(50, shift=5)
    assert len(sigmas) == 51 and sigmas[0] == 1.0 and sigmas[-1] == 0.0
    assert bool((sigmas[1:] < sigmas[:-1]).all())


@pytest.mark.parametrize("m, n, h, layers, expected", [
    (1, 2, 3, 30, 1.10), (2, 2, 3, 30, 2.20),
    (1, 2, 5, 30, 1.17), (2, 2, 5, 30, 2.33),
    (1, 2, 8, 30, 1.27), (2, 2, 8, 30, 2.53),
    (1, 4, 2, 30, 1.20), (2, 4, 2, 30, 2.40),
    (1, 4, 3, 30, 1.30), (2, 4, 3, 30, 2.60),
    (1, 4, 5, 30, 1.50), (2, 4, 5, 30, 3.00),
    (1, 1, 5, 30, 1.00), (2, 1, 5, 30, 2.00),
    (1, 4, 5, 40, 1.38), (2, 4, 5, 40, 2.75),
    (1, 2, 5, 40, 1.125), (2, 2, 5, 40, 2.25),
])
def test_effective_nfe_table(m, n, h, layers, expected):
    assert effective_nfe(m, n, h, layers) == pytest.approx(expected, abs=5e-3)


@pytest.mark.parametrize("m, n, h", [(0, 2, 5), (2, 0, 5), (2, 2, 0), (2, 2, 30), (2, 2, 31), (2.5, 2, 5), (-1, 2, 5),
                                     (True, 2, 5)])
def test_impossible_step_counts_are_refused(m, n, h):
    with pytest.raises(SamplingConfigError, match="must"):
        effective_nfe(m, n, h, 30)


@pytest.mark.parametrize("gamma", [0.5, 0, float("nan"), float("inf")])
def test_bad_shift_is_refused(gamma):
    with pytest.raises(SamplingConfigError, match="γ"):
        tmd_grid(2, gamma)
