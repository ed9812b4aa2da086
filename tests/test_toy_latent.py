# SPDX-License-Identifier: Apache-2.0
"""The toy latent format: exact decoder, its documented example, every channel used, unit scale."""
import doctest

import pytest
import torch

from comfyui_tmd.toy import latent as toy_latent
from comfyui_tmd.toy.clips import make_clips
from comfyui_tmd.toy.latent import decode, encode, latent_shape


def test_decode_inverts_encode_exactly():
    frames = torch.rand(3, 8, 6, 10, 3, dtype=torch.float64)  # any frames in [0, 1], not just clips
    latent = encode(frames)
    assert latent.shape == (3, 16, 2, 6, 10)
    assert (decode(latent) - frames).abs().max() < 1e-12  # float64: rounding only
    assert (decode(encode(frames.float())) - frames.float()).abs().max() < 1e-6  # float32


def test_the_module_s_documented_example_holds():
    result = doctest.testmod(toy_latent)
    assert result.attempted >= 4 and result.failed == 0


def test_each_latent_frame_holds_four_video_frames_in_channel_groups():
    frames = torch.rand(1, 8, 3, 5, 3, dtype=torch.float64)
    latent = encode(frames)  # [1, 16, 2, 3, 5]
    for video_frame in range(8):
        group = latent[0, 4 * (video_frame % 4):4 * (video_frame % 4) + 4, video_frame // 4]  # [4, 3, 5]
        single = encode(frames[:, video_frame:video_frame + 1].expand(-1, 4, -1, -1, -1))[0, 0:4, 0]
        assert torch.equal(group, single)


def test_decode_ignores_only_the_direction_encode_never_makes():
    frames = torch.rand(1, 4, 2, 2, 3, dtype=torch.float64)
    null = torch.zeros(1, 16, 1, 2, 2, dtype=torch.float64)
    null[:, 4:8] = torch.randn(1, 1, 1, 2, 2, dtype=torch.float64)  # frame 1's features moved along (1, 1, 1, 1)
    assert torch.allclose(decode(encode(frames) + null), frames, atol=1e-12)
    moved = torch.zeros_like(null)
    moved[:, 4] = 0.5  # along one feature only: the picture changes
    assert not torch.allclose(decode(encode(frames) + moved), frames, atol=1e-3)


def test_every_channel_carries_signal_at_unit_scale():
    frames = torch.stack([c.frames for c in make_clips(32, int(torch.randint(1 << 30, ())))])
    latent = encode(frames)  # [32, 16, 1, 16, 16]
    per_channel_std = latent.std(dim=(0, 2, 3, 4))  # the picture's spread, as Wan's normalised latents
    assert (per_channel_std > 0.6).all() and (per_channel_std < 1.6).all()


def test_emptyhunyuanlatentvideo_128x128x1_is_the_toy_latent():
    width = height = 128
    length = 1
    comfy_shape = (1, 16, (length - 1) // 4 + 1, height // 8, width // 8)  # EmptyHunyuanLatentVideo's formula
    assert comfy_shape == latent_shape()
    assert decode(torch.zeros(comfy_shape)).shape == (1, 4, 16, 16, 3)


def test_decode_clamps_to_displayable_range_and_bad_shapes_are_refused():
    out = decode(10 * torch.randn(1, 16, 1, 3, 3))
    assert out.min() == 0 and out.max() == 1  # a latent this large saturates somewhere both ways
    with pytest.raises(ValueError, match="16"):
        decode(torch.randn(1, 12, 2, 3, 3))
    with pytest.raises(ValueError, match="multiple of 4 frames"):
        encode(torch.rand(1, 6, 4, 4, 3))
