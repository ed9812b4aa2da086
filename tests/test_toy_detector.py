# SPDX-License-Identifier: Apache-2.0
"""The analytic detector: recovers every caption's attributes from real clips, and refuses broken clips."""
import itertools

import numpy as np
import pytest
import torch

from comfyui_tmd.toy.clips import make_clips
from comfyui_tmd.toy.detector import NONE, detect
from comfyui_tmd.toy.latent import decode
from comfyui_tmd.toy.world import all_captions

SEED = int(np.random.default_rng().integers(1 << 30))


def test_every_combination_is_recognised():
    misses = []
    for i, caption in enumerate(all_captions()):
        for clip in make_clips(2, SEED + i, caption):
            d = detect(clip.frames)
            if (d.colour, d.shape, d.direction) != (clip.spec.colour, clip.spec.shape, clip.spec.direction):
                misses.append((clip.spec, d.colour, d.shape, d.direction))
    assert misses == []


def test_track_follows_the_shape():
    for clip in make_clips(10, SEED):
        s = clip.spec
        centroid_below_centre = s.size / 6 if s.shape == "triangle" else 0.0  # a triangle's centroid is at 2/3 height
        expected = s.centres() + [0.0, centroid_below_centre]
        assert np.abs(detect(clip.frames).track - expected).max() < 0.3  # pixels


@pytest.mark.parametrize("order", [p for p in itertools.permutations(range(4)) if p != (0, 1, 2, 3)][::3])
def test_shuffled_frames_lose_the_direction(order):
    for clip in make_clips(6, SEED):
        assert detect(clip.frames[list(order)]).direction != clip.spec.direction


def test_static_blank_and_noise_clips_detect_nothing():
    for clip in make_clips(6, SEED):
        static = detect(clip.frames[:1].expand(4, -1, -1, -1))
        assert static.direction == NONE and static.shape == clip.spec.shape
    blank = detect(torch.full((4, 16, 16, 3), 0.15))
    assert (blank.colour, blank.shape, blank.direction) == (NONE, NONE, NONE)
    for _ in range(5):
        noise = detect(decode(torch.randn(1, 16, 1, 16, 16))[0])
        assert (noise.shape, noise.direction) == (NONE, NONE)
