# SPDX-License-Identifier: Apache-2.0
"""The toy metrics on cases with known answers."""
import numpy as np
import pytest
import torch

from comfyui_tmd.toy.clips import make_clips
from comfyui_tmd.toy.detector import detect
from comfyui_tmd.toy.metrics import (DUPLICATE_RMS, adherence, feature_frechet, frechet_distance,
                                     mean_temporal_consistency, mode_collapse_index, speckle, sqrt_psd,
                                     start_spread, wilson_interval)

RNG = np.random.default_rng()
SEED = int(RNG.integers(1 << 30))


def test_frechet_is_zero_for_identical_sets_and_grows_with_a_shift():
    a = RNG.normal(size=(200, 5))
    assert abs(frechet_distance(a, a)) < 1e-8
    distances = [frechet_distance(a, a + shift) for shift in (0.5, 1.0, 2.0)]
    assert np.allclose(distances, [5 * 0.25, 5 * 1.0, 5 * 4.0])  # ‖μ₁ − μ₂‖², the covariances being equal


def test_frechet_matches_the_closed_form_in_one_dimension():
    a, b = RNG.normal(1.0, 2.0, size=(500, 1)), RNG.normal(-1.0, 0.5, size=(400, 1))
    expected = (a.mean() - b.mean()) ** 2 + (a.std(ddof=1) - b.std(ddof=1)) ** 2
    assert np.isclose(frechet_distance(a, b), expected)


def test_matrix_square_root():
    m = RNG.normal(size=(6, 6))
    psd = m @ m.T
    root = sqrt_psd(psd)
    assert np.allclose(root @ root, psd) and np.allclose(root, root.T)


def test_adherence_counts_each_attribute():
    clips = make_clips(8, SEED, "a red circle moving down")
    detections = [detect(c.frames) for c in clips]
    perfect = {"colour": 1.0, "shape": 1.0, "direction": 1.0, "all": 1.0}
    assert adherence(detections, [c.caption for c in clips]) == perfect
    wrong = ["a blue circle moving down"] * 4 + ["a red square moving down"] * 4
    assert adherence(detections, wrong) == {"colour": 0.5, "shape": 0.5, "direction": 1.0, "all": 0.0}


def test_wilson_interval_has_its_closed_forms_and_covers_95_percent():
    z = 1.96
    assert wilson_interval(0.0, 64) == (0.0, pytest.approx(z * z / (64 + z * z)))  # upper end at 0 successes
    low, high = wilson_interval(0.5, 64)
    assert low == pytest.approx(1 - high) and high - low == pytest.approx(0.23796, abs=1e-5)  # worked by hand
    # Coverage over repeated binomial draws: a 95 % interval contains the true rate in ~95 % of them.
    rate, count = 0.3, 40
    intervals = (wilson_interval(k / count, count) for k in RNG.binomial(count, rate, 4000))
    hits = [low <= rate <= high for low, high in intervals]
    assert 0.93 <= np.mean(hits) <= 0.97
    with pytest.raises(ValueError, match="at least one trial"):
        wilson_interval(0.5, 0)


def test_mode_collapse_index_is_one_for_identical_clips_and_low_for_real_ones():
    clips = make_clips(10, SEED, "a yellow square moving right")
    frames = torch.stack([c.frames for c in clips])
    assert mode_collapse_index(frames[:1].expand(5, -1, -1, -1, -1)) == 1.0
    assert mode_collapse_index(frames) < 0.1
    shifted = torch.roll(frames[0], shifts=1, dims=2)  # one pixel to the right
    assert (shifted - frames[0]).pow(2).mean().sqrt() > DUPLICATE_RMS
    noisy = frames[0] + 0.01 * torch.randn_like(frames[0])
    assert mode_collapse_index(torch.stack([frames[0], noisy])) == 1.0


def test_start_spread_and_real_versus_shifted_features():
    clips = make_clips(40, SEED, "a green square moving left")
    detections = [detect(c.frames) for c in clips]
    assert start_spread([detections[0]] * 5) == pytest.approx(0.0, abs=1e-9) and start_spread(detections) > 1.0
    held_out = [detect(c.frames) for c in make_clips(40, SEED + 1, "a green square moving left")]
    other = [detect(c.frames) for c in make_clips(40, SEED + 2, "a blue circle moving up")]
    assert feature_frechet(detections, held_out) < feature_frechet(other, held_out) / 10


def test_temporal_consistency_is_steady_for_real_clips_and_not_for_shuffled_ones():
    clips = make_clips(10, SEED)
    real = mean_temporal_consistency([detect(c.frames) for c in clips])
    shuffled = mean_temporal_consistency([detect(c.frames[[0, 2, 1, 3]]) for c in clips])
    assert real["area_change"] < 0.1 and real["colour_change"] < 0.1 and real["motion_jitter"] < 0.15
    assert shuffled["motion_jitter"] > 2 * real["motion_jitter"]



def test_speckle_is_zero_for_real_clips_and_counts_off_background_pixels_away_from_the_shape():
    clips = make_clips(12, SEED, "a red circle moving up")
    assert all(speckle(c.frames, detect(c.frames)) == 0.0 for c in clips)
    frames = torch.full((4, 16, 16, 3), 0.15, dtype=torch.float64)
    frames[:, 2:6, 2:6] = torch.tensor([0.9, 0.15, 0.15], dtype=torch.float64)  # a 4 × 4 square
    away = 4 * (16 * 16 - 6 * 6)  # pixels more than one pixel from the square, over 4 frames
    spots = RNG.choice(range(8, 16), size=(9, 2))
    for t, (y, x) in enumerate(spots):  # nine speckles of 0.2 in green, each far from the square
        frames[t % 4, y, x, 1] += 0.2
    unique = len({(t % 4, y, x) for t, (y, x) in enumerate(spots)})
    assert speckle(frames, detect(frames)) == pytest.approx(unique / away, rel=1e-12)
    frames[0, 12, 1] += 0.05  # below SPECKLE_CONTRAST: not a speckle
    assert speckle(frames, detect(frames)) == pytest.approx(unique / away, rel=1e-12)
