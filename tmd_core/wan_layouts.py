# SPDX-License-Identifier: Apache-2.0
"""Where a Wan diffusion model's tensors are, from the path a user gives: one safetensors file, a sharded release
(its `*.safetensors.index.json` or the folder holding it), or a diffusers transformer folder (or the pipeline
folder above it). Only headers are read here; one sentence says what is wrong with a path that fits none."""
from __future__ import annotations

import dataclasses
import json
import os
from pathlib import Path

import torch

from .errors import CheckpointError
from .safe_files import read_header
from .wan_variants import text_to_video_only

INDEX_SUFFIX = ".safetensors.index.json"
# safetensors' dtype names → torch's (the float8 pair is what ComfyUI's fp8 files store).
SAFETENSORS_DTYPES = {
    "F64": torch.float64, "F32": torch.float32, "F16": torch.float16, "BF16": torch.bfloat16,
    "F8_E4M3": torch.float8_e4m3fn, "F8_E5M2": torch.float8_e5m2,
    "I64": torch.int64, "I32": torch.int32, "I16": torch.int16, "I8": torch.int8, "U8": torch.uint8, "BOOL": torch.bool,
}
# Wan2.2 A14B's two experts have Wan2.1 14B's keys and shapes: only their folders tell them apart.
WAN22_EXPERT_FOLDERS = ("high_noise_model", "low_noise_model")
EXPECTED = ("a Wan2.1 diffusion model: a .safetensors file, a sharded release's *.safetensors.index.json or its "
            "folder, or a diffusers transformer folder")


@dataclasses.dataclass(frozen=True)
class StoredTensor:
    file: Path
    meta: torch.Tensor  # on the meta device: the stored shape and dtype, no data


@dataclasses.dataclass(frozen=True)
class StoredWan:
    """A model's tensors as stored: names (with whatever prefix and naming the files use) → file, shape, dtype."""

    name: str  # how errors name the model: the file or folder the user gave
    folder: Path  # where the weights (and a diffusers config.json) are
    tensors: dict[str, StoredTensor]
    metadata: dict[str, str]  # the files' safetensors metadata, merged


def _in_folder(folder: Path) -> Path:
    """The index or single file a folder holds (a diffusers pipeline folder: its transformer's)."""
    if all((folder / expert).is_dir() for expert in WAN22_EXPERT_FOLDERS):
        raise text_to_video_only("a Wan2.2 A14B release (high- and low-noise expert models)", str(folder))
    if (folder / "transformer_2").is_dir():
        raise text_to_video_only("a Wan2.2 A14B diffusers pipeline (two expert transformers)", str(folder))
    if (folder / "transformer").is_dir():
        folder = folder / "transformer"
    indexes = sorted(folder.glob("*" + INDEX_SUFFIX))
    if len(indexes) > 1:
        raise CheckpointError(f"{folder} holds {len(indexes)} shard indexes ({', '.join(p.name for p in indexes)}); "
                              "give the one to load.")
    if indexes:
        return indexes[0]
    files = sorted(folder.glob("*.safetensors"))
    if len(files) == 1:
        return files[0]
    if files:
        raise CheckpointError(f"{folder} holds {len(files)} .safetensors files ({files[0].name}, ...) and no "
                              f"*{INDEX_SUFFIX} naming them as shards; give one file or the index.")
    raise CheckpointError(f"{folder} holds no .safetensors file or *{INDEX_SUFFIX}; expected {EXPECTED}.")


def _read_index(path: Path) -> dict[str, str]:
    """An index's weight_map (tensor name → shard file name), each shard checked to exist beside it."""
    try:
        index = json.loads(path.read_text())
    except (UnicodeDecodeError, json.JSONDecodeError) as err:
        raise CheckpointError(f"{path.name} is not JSON ({err}); expected {EXPECTED}.") from err
    weight_map = index.get("weight_map") if isinstance(index, dict) else None
    if not isinstance(weight_map, dict) or not weight_map or not all(
            isinstance(v, str) for v in weight_map.values()):
        raise CheckpointError(f"{path.name} is not a safetensors index: it has no 'weight_map' from tensor names to "
                              "shard files.")
    shards = sorted(set(weight_map.values()))
    for shard in shards:
        if Path(shard).name != shard:
            raise CheckpointError(f"{path.name} names the shard {shard!r}, which is not a file name beside it.")
        if not (path.parent / shard).is_file():
            raise CheckpointError(f"{path.name} names the shard {shard}, which is not in {path.parent} "
                                  "(download the missing shard).")
    return weight_map


def _read_headers(files: list[Path]) -> tuple[dict[str, StoredTensor], dict[str, str]]:
    tensors: dict[str, StoredTensor] = {}
    metadata: dict[str, str] = {}
    for file in files:
        header, file_metadata = read_header(file)
        metadata.update(file_metadata)
        for key, entry in header.items():
            if key in tensors:
                raise CheckpointError(f"the shards disagree: {key} is in both {tensors[key].file.name} and "
                                      f"{file.name}.")
            dtype = SAFETENSORS_DTYPES.get(entry["dtype"])
            if dtype is None:
                raise CheckpointError(f"{file.name} stores {key} as {entry['dtype']}, a type torch cannot load.")
            tensors[key] = StoredTensor(file, torch.empty(entry["shape"], dtype=dtype, device="meta"))
    return tensors, metadata


def _check_index(index: Path, weight_map: dict[str, str], tensors: dict[str, StoredTensor]) -> None:
    """The index and its shards must name the same tensors in the same places."""
    for key, shard in weight_map.items():
        if key not in tensors:
            raise CheckpointError(f"the shards disagree with {index.name}: it places {key} in {shard}, which does "
                                  "not hold it.")
        if tensors[key].file.name != shard:
            raise CheckpointError(f"the shards disagree with {index.name}: it places {key} in {shard}, but it is "
                                  f"in {tensors[key].file.name}.")
    unlisted = [key for key in tensors if key not in weight_map]
    if unlisted:
        raise CheckpointError(f"the shards disagree with {index.name}: {tensors[unlisted[0]].file.name} holds "
                              f"{unlisted[0]}, which the index does not list ({len(unlisted)} such tensors).")


def find_wan(path: str | os.PathLike) -> StoredWan:
    """The stored tensors of the Wan model at `path` (a file, an index JSON or a folder), from headers alone."""
    given = Path(path)
    if not given.exists():
        raise CheckpointError(f"no file or folder at {given}.")
    target = _in_folder(given) if given.is_dir() else given
    if target.parent.name in WAN22_EXPERT_FOLDERS:
        raise text_to_video_only(f"a Wan2.2 A14B expert ({target.parent.name})", given.name)
    if target.name.endswith(".json"):
        weight_map = _read_index(target)
        tensors, metadata = _read_headers([target.parent / shard for shard in sorted(set(weight_map.values()))])
        _check_index(target, weight_map, tensors)
    else:
        tensors, metadata = _read_headers([target])
    return StoredWan(given.name, target.parent, tensors, metadata)
