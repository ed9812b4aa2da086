# SPDX-License-Identifier: Apache-2.0
"""Quality metrics of toy clips, computed from decoded frames through the analytic detector.

- prompt adherence: fraction of clips whose detected colour / shape / direction equals the caption's,
  per attribute and all three at once, with a 95 % Wilson score interval (where two rows' intervals
  overlap, the table does not establish a difference);
- temporal consistency (lower is steadier), means over clips of
  area_change   = mean_t |mass_{t+1} − mass_t| / mean mass (the shape should keep its size),
  colour_change = mean_t ‖colour_{t+1} − colour_t‖ in RGB (the shape should keep its colour),
  motion_jitter = std_t ‖step_t‖ / mean_t ‖step_t‖ (real clips move at constant speed);
- Fréchet distance between per-clip feature statistics of generated and held-out real clips
  (features below, each divided by the real clips' std, floored at FEATURE_STD_FLOOR, so no unit
  dominates), ‖μ₁ − μ₂‖² + Tr(Σ₁ + Σ₂ − 2 (Σ₁^½ Σ₂ Σ₁^½)^½), square roots by eigendecomposition;
- diversity, per prompt across seeds: start_spread = √(var x₀ + var y₀) of the detected frame-0
  centroid in pixels, and the mode-collapse index = fraction of clip pairs that are near-duplicates
  (RMS pixel difference below DUPLICATE_RMS): 1 when every seed gives the same clip;
- speckle: the share of background pixels (more than one pixel away from the shape, whose pixels are
  those at least half as far from the background as the farthest one, the detector's rule) that differ
  from the frame's background by more than SPECKLE_CONTRAST in RGB; 0 for real clips, whose background
  is flat, and the residual noise a sampler leaves outside the shape otherwise.
"""
from __future__ import annotations

import itertools

import numpy as np
import torch

from .detector import MIN_CONTRAST, MIN_MASS, MIN_STEP, Detection
from .world import parse_caption

ATTRIBUTES = ("colour", "shape", "direction")
FEATURE_NAMES = ("colour_r", "colour_g", "colour_b", "background_r", "background_g", "background_b", "mass", "fill",
                 "skew", "start_x", "start_y", "velocity_x", "velocity_y")
FEATURE_STD_FLOOR = 0.05
# A one-pixel shift of the smallest shape changes a clip by an RMS of about 0.1; sampling noise that
# leaves the content in place stays well below 0.03.
DUPLICATE_RMS = 0.03
SPECKLE_CONTRAST = 0.1  # RGB distance from the background; the palette's nearest colour is 0.6 away


def adherence(detections: list[Detection], captions: list[str]) -> dict[str, float]:
    """Fraction of clips matching their caption, per attribute and for all three."""
    matches = np.array([[getattr(d, name) == wanted
                         for name, wanted in zip(ATTRIBUTES, parse_caption(caption), strict=True)]
                        for d, caption in zip(detections, captions, strict=True)])  # [clips, 3]
    per_attribute = {name: float(matches[:, i].mean()) for i, name in enumerate(ATTRIBUTES)}
    return {**per_attribute, "all": float(matches.all(1).mean())}


def wilson_interval(rate: float, count: int, z: float = 1.96) -> tuple[float, float]:
    """Wilson score interval of a success fraction `rate` over `count` trials (95 % for z = 1.96).

    Unlike rate ± z·√(rate(1 − rate)/count) it stays inside [0, 1] and is not empty at rate 0 or 1.
    """
    if count < 1:
        raise ValueError(f"a confidence interval needs at least one trial, got {count}.")
    centre = (rate + z * z / (2 * count)) / (1 + z * z / count)
    half = z / (1 + z * z / count) * np.sqrt(rate * (1 - rate) / count + z * z / (4 * count * count))
    return float(max(centre - half, 0.0)), float(min(centre + half, 1.0))


def temporal_consistency(detection: Detection) -> dict[str, float]:
    stats = detection.stats
    steps = np.linalg.norm(np.diff(stats.centroid, axis=0), axis=1)  # [T-1]
    return {
        "area_change": float(np.abs(np.diff(stats.mass)).mean() / max(stats.mass.mean(), MIN_MASS)),
        "colour_change": float(np.linalg.norm(np.diff(stats.colour, axis=0), axis=1).mean()),
        "motion_jitter": float(steps.std() / max(steps.mean(), MIN_STEP)),
    }


def mean_temporal_consistency(detections: list[Detection]) -> dict[str, float]:
    per_clip = [temporal_consistency(d) for d in detections]
    return {name: float(np.mean([c[name] for c in per_clip])) for name in per_clip[0]}


def clip_features(detection: Detection) -> np.ndarray:
    """The clip's hand-crafted features, in FEATURE_NAMES order: [13]."""
    stats = detection.stats
    velocity = (stats.centroid[-1] - stats.centroid[0]) / max(len(stats.centroid) - 1, 1)
    return np.concatenate([stats.colour.mean(0), stats.background.mean(0), [stats.mass.mean(), np.median(stats.fill),
                           np.median(stats.skew)], stats.centroid[0], velocity])


def sqrt_psd(matrix: np.ndarray) -> np.ndarray:
    """Square root of a symmetric positive semi-definite matrix (negative rounding eigenvalues clipped to 0)."""
    values, vectors = np.linalg.eigh((matrix + matrix.T) / 2)
    return (vectors * np.sqrt(np.clip(values, 0.0, None))) @ vectors.T


def frechet_distance(a: np.ndarray, b: np.ndarray) -> float:
    """Fréchet distance between Gaussians fitted to feature sets a [N, D] and b [M, D] (N, M ≥ 2)."""
    if len(a) < 2 or len(b) < 2:
        raise ValueError(f"Fréchet distance needs at least 2 samples per set, got {len(a)} and {len(b)}.")
    # [D, D], also for D = 1
    cov_a, cov_b = np.atleast_2d(np.cov(a, rowvar=False)), np.atleast_2d(np.cov(b, rowvar=False))
    root_a = sqrt_psd(cov_a)
    cross = np.trace(sqrt_psd(root_a @ cov_b @ root_a))
    return float(((a.mean(0) - b.mean(0)) ** 2).sum() + np.trace(cov_a) + np.trace(cov_b) - 2 * cross)


def feature_frechet(generated: list[Detection], real: list[Detection]) -> float:
    """Fréchet distance of the clips' features, each feature in units of the real clips' std."""
    gen = np.stack([clip_features(d) for d in generated])
    ref = np.stack([clip_features(d) for d in real])
    scale = np.maximum(ref.std(0), FEATURE_STD_FLOOR)
    return frechet_distance(gen / scale, ref / scale)


def start_spread(detections: list[Detection]) -> float:
    """√(var x₀ + var y₀) of the frame-0 centroids of clips of one prompt, in pixels."""
    starts = np.stack([d.track[0] for d in detections])  # [K, 2]
    return float(np.sqrt(starts.var(0).sum()))


def mode_collapse_index(frames: torch.Tensor) -> float:
    """Fraction of near-duplicate pairs among clips of one prompt: frames [K, T, H, W, 3], K ≥ 2."""
    if len(frames) < 2:
        raise ValueError(f"the mode-collapse index compares clips in pairs; got {len(frames)} clip.")
    pairs = list(itertools.combinations(range(len(frames)), 2))
    rms = [float((frames[i].double() - frames[j].double()).pow(2).mean().sqrt()) for i, j in pairs]
    return float(np.mean([value < DUPLICATE_RMS for value in rms]))


def speckle(frames: torch.Tensor, detection: Detection) -> float:
    """Share of a clip's background pixels (frames [T, H, W, 3]) that are off the background colour."""
    x = frames.detach().to(torch.float64).cpu()
    background = torch.from_numpy(detection.stats.background)[:, None, None, :]  # [T, 1, 1, 3]
    distance = (x - background).norm(dim=-1)  # [T, H, W]
    peak = distance.flatten(1).max(dim=1).values[:, None, None]  # [T, 1, 1]
    shape = (distance >= peak / 2) & (peak >= MIN_CONTRAST)
    near_shape = torch.nn.functional.max_pool2d(shape[:, None].double(), 3, stride=1, padding=1)[:, 0] > 0
    away = ~near_shape
    return int(((distance > SPECKLE_CONTRAST) & away).sum()) / max(int(away.sum()), 1)
