# SPDX-License-Identifier: Apache-2.0
"""Writing toy clips and images with no dependency beyond numpy: animated GIF (own LZW encoder) and PNG
(zlib + struct); MP4 when PyAV is installed."""
from __future__ import annotations

import importlib.util
import struct
import zlib
from pathlib import Path

import numpy as np
import torch

from ..tmd_core.errors import TMDError
from ..tmd_core.safe_files import atomic_path

GIF_LEVELS = 6  # the palette is the 6 × 6 × 6 colour cube (216 of 256 entries)
LZW_MIN_CODE_SIZE = 8
LZW_MAX_CODE = 4095  # GIF codes are at most 12 bits


class VideoFormatError(TMDError, ValueError):
    """An output suffix this module cannot write, or one whose encoder is not installed."""


def to_uint8(frames: torch.Tensor, scale: int = 1) -> np.ndarray:
    """Frames [T, H, W, 3] in [0, 1] -> uint8 [T, H·scale, W·scale, 3], enlarged by repeating pixels."""
    pixels = (frames.detach().float().clamp(0, 1) * 255).round().to(torch.uint8).cpu().numpy()
    return pixels.repeat(scale, axis=1).repeat(scale, axis=2)


def lzw_encode(indices: bytes) -> bytes:
    """GIF's variable-width LZW of palette indices (minimum code size 8), as one code stream."""
    clear, end = 1 << LZW_MIN_CODE_SIZE, (1 << LZW_MIN_CODE_SIZE) + 1
    out, bits, bit_count, width = bytearray(), 0, 0, LZW_MIN_CODE_SIZE + 1

    def emit(code: int) -> None:
        nonlocal bits, bit_count
        bits |= code << bit_count
        bit_count += width
        while bit_count >= 8:
            out.append(bits & 0xFF)
            bits >>= 8
            bit_count -= 8

    def fresh_table() -> dict[bytes, int]:
        return {bytes([i]): i for i in range(clear)}

    table, next_code = fresh_table(), end + 1
    emit(clear)
    prefix = indices[:1]
    for i in range(1, len(indices)):
        candidate = prefix + indices[i:i + 1]
        if candidate in table:
            prefix = candidate
            continue
        emit(table[prefix])
        if next_code <= LZW_MAX_CODE:
            table[candidate] = next_code
            next_code += 1
            if next_code > (1 << width) and width < 12:  # the decoder widens once its table reaches 2**width
                width += 1
        else:  # table full: start over, as every GIF decoder expects
            emit(clear)
            table, next_code, width = fresh_table(), end + 1, LZW_MIN_CODE_SIZE + 1
        prefix = indices[i:i + 1]
    emit(table[prefix])
    emit(end)
    if bit_count:
        out.append(bits & 0xFF)
    return bytes(out)


def _sub_blocks(data: bytes) -> bytes:
    return b"".join(bytes([len(data[i:i + 255])]) + data[i:i + 255] for i in range(0, len(data), 255)) + b"\x00"


def gif_bytes(pixels: np.ndarray, fps: float) -> bytes:
    """uint8 frames [T, H, W, 3] -> an endlessly looping animated GIF on the 6 × 6 × 6 colour cube."""
    count, height, width, _ = pixels.shape
    levels = np.linspace(0, 255, GIF_LEVELS).round().astype(np.uint8)
    palette = np.zeros((256, 3), dtype=np.uint8)
    palette[: GIF_LEVELS**3] = np.stack(np.meshgrid(levels, levels, levels, indexing="ij"), -1).reshape(-1, 3)
    quantised = np.rint(pixels.astype(np.float64) * (GIF_LEVELS - 1) / 255).astype(np.int64)  # [T, H, W, 3]
    indices = (quantised @ np.array([GIF_LEVELS**2, GIF_LEVELS, 1])).astype(np.uint8)  # [T, H, W]
    delay = max(1, round(100 / fps))  # centiseconds
    parts = [b"GIF89a", struct.pack("<HHBBB", width, height, 0xF7, 0, 0), palette.tobytes(),
             b"\x21\xff\x0bNETSCAPE2.0\x03\x01\x00\x00\x00"]  # loop forever
    for frame in indices:
        parts += [struct.pack("<BBBBHBB", 0x21, 0xF9, 4, 0, delay, 0, 0),
                  struct.pack("<BHHHHB", 0x2C, 0, 0, width, height, 0),
                  bytes([LZW_MIN_CODE_SIZE]), _sub_blocks(lzw_encode(frame.tobytes()))]
    return b"".join(parts) + b"\x3b"


def png_bytes(pixels: np.ndarray) -> bytes:
    """uint8 image [H, W, 3] -> PNG (8-bit RGB, no filtering)."""
    height, width, _ = pixels.shape

    def chunk(kind: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))

    rows = b"".join(b"\x00" + row.tobytes() for row in np.ascontiguousarray(pixels))
    return (b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0))
            + chunk(b"IDAT", zlib.compress(rows, 9)) + chunk(b"IEND", b""))


def write_mp4(pixels: np.ndarray, path: Path, fps: float) -> None:
    import av

    with av.open(str(path), mode="w", format="mp4") as container:  # format given: the path may be a temporary name
        stream = container.add_stream("libx264", rate=round(fps))
        stream.width, stream.height, stream.pix_fmt = pixels.shape[2], pixels.shape[1], "yuv420p"
        for frame in pixels:
            container.mux(stream.encode(av.VideoFrame.from_ndarray(frame, format="rgb24")))
        container.mux(stream.encode())


def mp4_available() -> bool:
    return importlib.util.find_spec("av") is not None


def clip_format(path: Path) -> str:
    """"gif" or "mp4" from the suffix; one sentence if the suffix is neither or PyAV is missing for mp4."""
    suffix = path.suffix.lower()
    if suffix == ".mp4" and not mp4_available():
        raise VideoFormatError(f"writing {path.name} needs PyAV (pip install av), which is not installed; "
                               f"ask for a .gif instead (--out {path.with_suffix('.gif').name}).")
    if suffix not in (".gif", ".mp4"):
        raise VideoFormatError(f"cannot write {path.name}: the suffix must be .gif or .mp4.")
    return suffix[1:]


def write_clip(frames: torch.Tensor, path: str | Path, fps: float = 4.0, scale: int = 8) -> Path:
    """Frames [T, H, W, 3] in [0, 1] -> a .gif (always possible) or .mp4 (needs PyAV) file, enlarged `scale` times."""
    path = Path(path)
    pixels = to_uint8(frames, scale)
    with atomic_path(path) as tmp:  # Ctrl-C while writing leaves no half a clip
        if clip_format(path) == "gif":
            tmp.write_bytes(gif_bytes(pixels, fps))
        else:
            write_mp4(pixels, tmp, fps)
    return path


def write_png(image: torch.Tensor, path: str | Path, scale: int = 1) -> Path:
    """Image [H, W, 3] in [0, 1] -> PNG file, enlarged `scale` times."""
    path = Path(path)
    with atomic_path(path) as tmp:
        tmp.write_bytes(png_bytes(to_uint8(image[None], scale)[0]))
    return path
