# SPDX-License-Identifier: Apache-2.0
"""Reading and writing files safely: never unpickle, detect truncated or damaged safetensors, write atomically."""
from __future__ import annotations

import json
import os
import secrets
import struct
from contextlib import contextmanager
from pathlib import Path
from typing import Iterator, Mapping

import torch
from safetensors import SafetensorError, safe_open
from safetensors.torch import load_file, save_file

from .errors import CheckpointError

_MAX_HEADER_BYTES = 100 * 1024 * 1024


def _looks_pickled(start: bytes) -> bool:
    """pickle protocol 2-5 opens with 0x80 and the protocol number; torch.save writes a zip container."""
    return start.startswith(b"PK\x03\x04") or (len(start) > 1 and start[0] == 0x80 and 2 <= start[1] <= 5)


def _read_header(path: Path) -> dict:
    size = path.stat().st_size
    with path.open("rb") as f:
        start = f.read(9)  # u64 header length, then the header's opening brace
        if len(start) < 9:
            raise CheckpointError(f"{path.name} is {size} bytes long, too short to be a safetensors file.")
        if start[8:9] != b"{":
            if _looks_pickled(start):
                raise CheckpointError(
                    f"{path.name} is a pickle/PyTorch file, not safetensors; it was not opened because unpickling can "
                    "run arbitrary code (convert it to .safetensors first)."
                )
            raise CheckpointError(
                f"{path.name} is not a safetensors file (it does not start with a safetensors header).")
        (header_len,) = struct.unpack("<Q", start[:8])
        if header_len > min(size - 8, _MAX_HEADER_BYTES):
            raise CheckpointError(
                f"{path.name} is truncated or damaged: its header says {header_len} bytes, the file has {size}.")
        f.seek(8)
        try:
            header = json.loads(f.read(header_len))
        except (UnicodeDecodeError, json.JSONDecodeError) as err:
            raise CheckpointError(f"{path.name} is not a safetensors file: its header is not JSON ({err}).") from err
    if not isinstance(header, dict):
        raise CheckpointError(f"{path.name} is not a safetensors file: its header is not a JSON object.")
    data_end = max((entry["data_offsets"][1] for key, entry in header.items() if key != "__metadata__"), default=0)
    if 8 + header_len + data_end > size:
        raise CheckpointError(
            f"{path.name} is truncated: it should hold {8 + header_len + data_end} bytes but has {size} "
            "(an interrupted download or copy?)."
        )
    return header


def read_header(path: str | os.PathLike) -> tuple[dict, dict[str, str]]:
    """The validated header (one entry per tensor: dtype, shape, offsets) and metadata, reading no tensor data."""
    path = Path(path)
    if not path.is_file():
        raise CheckpointError(f"no file at {path}.")
    header = _read_header(path)
    metadata = dict(header.pop("__metadata__", None) or {})
    return header, metadata


def read_safetensors(path: str | os.PathLike, device: str = "cpu") -> tuple[dict[str, torch.Tensor], dict[str, str]]:
    """Load every tensor and the string metadata of a safetensors file, with one-sentence errors for bad files."""
    path = Path(path)
    if not path.is_file():
        raise CheckpointError(f"no file at {path}.")
    header = _read_header(path)
    try:
        tensors = load_file(path, device=device)
    except SafetensorError as err:
        raise CheckpointError(f"{path.name} is a damaged safetensors file ({err}).") from err
    _check_finite(tensors, path)
    return tensors, dict(header.get("__metadata__") or {})


def read_tensors(path: str | os.PathLike, keys: list[str]) -> Iterator[tuple[str, torch.Tensor]]:
    """The named tensors of a safetensors file, one at a time on the CPU (the caller keeps what it needs), each
    checked as `read_safetensors` checks a whole file. Validate the file with `read_header` first."""
    path = Path(path)
    try:
        with safe_open(path, framework="pt", device="cpu") as f:
            for key in keys:
                tensor = f.get_tensor(key)
                _check_finite({key: tensor}, path)
                yield key, tensor
    except SafetensorError as err:
        raise CheckpointError(f"{path.name} is a damaged safetensors file ({err}).") from err


def _check_finite(tensors: Mapping[str, torch.Tensor], path: Path) -> None:
    """Damaged bytes in a float tensor tend to decode as NaN or inf (an all-ones exponent): name the file now
    rather than let the first sampling step turn NaN."""
    for key, tensor in tensors.items():
        if not tensor.is_floating_point():
            continue
        values = tensor.half() if tensor.element_size() == 1 else tensor  # torch has no isfinite for some float8s
        if not torch.isfinite(values).all():
            raise CheckpointError(f"{path.name} is damaged: its tensor {key} holds NaN or inf values (copy or "
                                  "download the file again).")


@contextmanager
def atomic_path(path: str | os.PathLike) -> Iterator[Path]:
    """A temporary path beside `path` to write to; it replaces `path` only when the block ends without an
    exception, so a crash or Ctrl-C mid-write leaves the old file (or none), never half a file."""
    path = Path(path)
    tmp = path.with_name(f".{path.name}.{secrets.token_hex(4)}.tmp")
    tmp.open("xb").close()  # made as `path` would be, with the user's umask (mkstemp would make it private)
    try:
        yield tmp
        with open(tmp, "rb") as f:
            os.fsync(f.fileno())
        os.replace(tmp, path)
    finally:
        if os.path.exists(tmp):
            os.unlink(tmp)


def write_safetensors(tensors: Mapping[str, torch.Tensor], path: str | os.PathLike,
                      metadata: Mapping[str, str] | None = None) -> Path:
    """Write tensors to path atomically (see `atomic_path`), making its folder if needed."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    with atomic_path(path) as tmp:
        save_file({k: v.detach().contiguous().cpu() for k, v in tensors.items()}, tmp, metadata=dict(metadata or {}))
    return path
