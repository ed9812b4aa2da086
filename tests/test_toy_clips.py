# SPDX-License-Identifier: Apache-2.0
"""The toy clip generator: seeded, captioned, attributes in range, the shape wholly in frame."""
import numpy as np
import pytest
import torch

from comfyui_tmd.toy.clips import alpha_masks, make_clips
from comfyui_tmd.toy.world import (COLOURS, DIRECTIONS, FRAMES, SHAPES, SIDE, SIZE_RANGE, SPEED_RANGE, CaptionError,
                                   parse_caption)

AREA = {"square": lambda s: s**2, "circle": lambda s: np.pi * s**2 / 4, "triangle": lambda s: s**2 / 2}
SEED = int(np.random.default_rng().integers(1 << 30))  # fresh each run; printed by pytest in the test ids below


def test_same_seed_same_clips_other_seed_other_clips():
    first, again, other = make_clips(6, SEED), make_clips(6, SEED), make_clips(6, SEED + 1)
    assert [c.spec for c in first] == [c.spec for c in again]
    assert all(torch.equal(a.frames, b.frames) for a, b in zip(first, again, strict=True))
    assert [c.spec for c in first] != [c.spec for c in other]


def test_attributes_are_in_range_and_the_caption_states_them():
    clips = make_clips(60, SEED)
    for clip in clips:
        s = clip.spec
        assert parse_caption(clip.caption) == (s.colour, s.shape, s.direction)
        assert SIZE_RANGE[0] <= s.size <= SIZE_RANGE[1] and SPEED_RANGE[0] <= s.speed <= SPEED_RANGE[1]
        assert clip.frames.shape == (FRAMES, SIDE, SIDE, 3) and clip.frames.dtype == torch.float32
        assert 0 <= clip.frames.min() and clip.frames.max() <= 1
        centres = s.centres()
        assert (centres >= s.size / 2 - 1e-9).all() and (centres <= SIDE - s.size / 2 + 1e-9).all()
        mass = alpha_masks(s).sum(axis=(1, 2))  # a shape wholly inside shows its whole area in every frame
        assert np.allclose(mass, AREA[s.shape](s.size), rtol=0.12)  # 4 × 4 supersampling is within ±10 %
    # random captions cover the world, and start positions vary
    assert {c.spec.colour for c in clips} == set(COLOURS) and {c.spec.shape for c in clips} == set(SHAPES)
    assert {c.spec.direction for c in clips} == set(DIRECTIONS)
    assert np.std([c.spec.start_x for c in clips]) > 1.0


def test_clips_of_one_caption_move_as_stated():
    clips = make_clips(8, SEED, "a green triangle moving up")
    for clip in clips:
        assert clip.caption == "a green triangle moving up"
        steps = np.diff(clip.spec.centres(), axis=0)
        assert np.allclose(steps, [0.0, -clip.spec.speed])


@pytest.mark.parametrize("caption", ["a purple square moving left", "a red square moving sideways", "red square left"])
def test_a_caption_outside_the_world_is_refused_by_name(caption):
    with pytest.raises(CaptionError, match="caption"):
        make_clips(1, SEED, caption)
