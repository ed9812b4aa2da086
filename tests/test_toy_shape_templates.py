# SPDX-License-Identifier: Apache-2.0
"""toy/shape_templates.py: templates have the asked area and centroid, real clips read as their own shapes with
a wide margin, a stray pixel does not change the reading, and decoded noise holds no shape."""
import numpy as np
import pytest
import torch

from comfyui_tmd.toy.clips import make_clips
from comfyui_tmd.toy.detector import NONE, frame_stats
from comfyui_tmd.toy.latent import decode
from comfyui_tmd.toy.shape_templates import read_shape, template
from comfyui_tmd.toy.world import COLOURS, SHAPES, SIDE, all_captions

SEED = int(np.random.default_rng().integers(1 << 30))


@pytest.mark.parametrize("shape", SHAPES)
def test_template_has_the_asked_area_and_centroid(shape):
    rng = np.random.default_rng(SEED)
    for _ in range(5):
        centroid, mass = rng.uniform(6.0, 10.0, size=2), rng.uniform(20.0, 60.0)
        drawn = template(shape, centroid, mass, SIDE, SIDE)
        ys, xs = np.mgrid[0:SIDE, 0:SIDE] + 0.5
        assert drawn.sum() == pytest.approx(mass, rel=0.02)  # edges placed to a sixteenth of a pixel
        found = np.array([(drawn * xs).sum(), (drawn * ys).sum()]) / drawn.sum()
        np.testing.assert_allclose(found, centroid, atol=0.05)


def test_real_clips_read_as_their_shapes_with_a_margin():
    for i, caption in enumerate(all_captions()):
        for clip in make_clips(2, SEED + i, caption):
            shape, overlap = read_shape(frame_stats(clip.frames))
            assert shape == clip.spec.shape, clip.spec
            ranked = np.sort(overlap)
            assert ranked[-1] > 0.85 and ranked[-1] - ranked[-2] > 0.05, (clip.spec, overlap)


def test_a_stray_pixel_does_not_change_the_reading():
    colour = torch.tensor(COLOURS["red"])
    for clip in make_clips(6, SEED, "a red square moving left"):
        frames = clip.frames.clone()  # [T, H, W, 3]
        for t in range(len(frames)):
            covered = (frames[t] - colour).norm(dim=-1) < 0.05  # [H, W]
            rows, cols = covered.nonzero(as_tuple=True)
            row, col = int(rows.min()) - 1, int(cols[rows == rows.min()].float().mean())
            if row >= 0:
                frames[t, row, col] = colour  # one pixel standing out of the top side
        assert read_shape(frame_stats(frames))[0] == "square", clip.spec


def test_decoded_noise_holds_no_shape():
    noise = decode(torch.randn(16, 16, 1, SIDE, SIDE, generator=torch.Generator().manual_seed(SEED)))
    assert all(read_shape(frame_stats(frames)) == (NONE, None) for frames in noise)
