# SPDX-License-Identifier: Apache-2.0
"""GIF and PNG files written without Pillow read back with Pillow; MP4 only with PyAV, else one sentence."""
import numpy as np
import pytest
import torch

from comfyui_tmd.toy.video_io import VideoFormatError, mp4_available, to_uint8, write_clip, write_png

Image = pytest.importorskip("PIL.Image", reason="Pillow (in .[dev]) reads the files back")
HALF_STEP = 255 / 5 / 2  # the GIF palette has 6 levels per channel


def read_gif(path) -> np.ndarray:
    frames = []
    with Image.open(path) as image:
        for i in range(image.n_frames):
            image.seek(i)
            frames.append(np.array(image.convert("RGB")))
    return np.stack(frames)


@pytest.mark.parametrize("frames, scale", [((4, 16, 16), 8), ((3, 90, 120), 1)])  # the second refills the LZW table
def test_gif_reads_back(tmp_path, frames, scale):
    clip = torch.rand(*frames, 3)
    path = write_clip(clip, tmp_path / "clip.gif", scale=scale)
    pixels = read_gif(path)
    assert pixels.shape == (frames[0], frames[1] * scale, frames[2] * scale, 3)
    assert np.abs(pixels.astype(int) - to_uint8(clip, scale).astype(int)).max() <= HALF_STEP + 0.5


def test_png_reads_back_exactly(tmp_path):
    image = torch.rand(7, 11, 3)
    with Image.open(write_png(image, tmp_path / "grid.png", scale=2)) as png:
        assert np.array_equal(np.array(png), to_uint8(image[None], 2)[0])


@pytest.mark.skipif(mp4_available(), reason="PyAV is installed, so .mp4 is written")
def test_mp4_without_pyav_says_to_use_gif(tmp_path):
    with pytest.raises(VideoFormatError, match=r"PyAV.*clip\.gif"):
        write_clip(torch.rand(2, 4, 4, 3), tmp_path / "clip.mp4")


def test_unknown_suffix_is_refused(tmp_path):
    with pytest.raises(VideoFormatError, match="clip.avi"):
        write_clip(torch.rand(2, 4, 4, 3), tmp_path / "clip.avi")


@pytest.mark.skipif(not mp4_available(), reason="PyAV is not installed (pip install av) to write .mp4")
def test_mp4_with_pyav_has_every_frame(tmp_path):
    import av
    path = write_clip(torch.rand(4, 16, 16, 3), tmp_path / "clip.mp4")
    with av.open(str(path)) as container:
        frames = [f.to_ndarray(format="rgb24") for f in container.decode(video=0)]
    assert len(frames) == 4 and frames[0].shape == (128, 128, 3)
