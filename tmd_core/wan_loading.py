# SPDX-License-Identifier: Apache-2.0
"""Loading and saving Wan2.1 diffusion models, in every layout users hold them: official single files and sharded
releases, ComfyUI's repackaged files (bf16, fp16, fp8, fp8 scaled; with or without a wrapper prefix), diffusers
transformer folders, and this pack's students. `wan_layouts` finds the tensors, this module names and loads them."""
from __future__ import annotations

import dataclasses
import os
from pathlib import Path
from typing import Mapping

import torch

from .diffusers_keys import diffusers_wan_config, is_diffusers, official_key, read_diffusers_config
from .errors import CheckpointError
from .safe_files import read_tensors, write_safetensors
from .scaled_fp8 import check_scale, dequantize, split_scales
from .wan_config import WanConfig, config_metadata, detect_wan_config, key_prefix
from .wan_layouts import StoredWan, find_wan
from .wan_model import WanDiT


def _describe_keys(keys: list[str], limit: int = 3) -> str:
    shown = ", ".join(sorted(keys)[:limit])
    return shown + (f" and {len(keys) - limit} more" if len(keys) > limit else "")


def check_wan_keys(model: WanDiT, state_dict: Mapping[str, torch.Tensor], source: str = "the state dict") -> None:
    """Every key present, none extra, every shape equal (values may be meta tensors); one sentence naming what
    differs."""
    expected = model.state_dict()
    missing = [k for k in expected if k not in state_dict]
    unexpected = [k for k in state_dict if k not in expected]
    if missing:
        raise CheckpointError(f"{source} is missing {len(missing)} Wan keys ({_describe_keys(missing)}).")
    if unexpected:
        raise CheckpointError(f"{source} has {len(unexpected)} keys a Wan2.1 T2V model does not have "
                              f"({_describe_keys(unexpected)}).")
    for key, tensor in expected.items():
        if state_dict[key].shape != tensor.shape:
            raise CheckpointError(
                f"{source} has {key} of shape {tuple(state_dict[key].shape)}, the model expects {tuple(tensor.shape)}."
            )
        if not state_dict[key].is_floating_point():
            raise CheckpointError(f"{source} stores {key} as {state_dict[key].dtype}; Wan weights are floats.")


def _official_names(stored: StoredWan) -> tuple[dict[str, str], dict[str, str], bool]:
    """(official name → stored name of each model tensor, weight name → stored name of its fp8 scale, whether the
    files use diffusers' names)."""
    prefix = key_prefix(stored.tensors)
    names = {key[len(prefix):]: key for key in stored.tensors if key.startswith(prefix)}
    diffusers = is_diffusers(names)
    if diffusers:
        names = {official_key(name): key for name, key in names.items()}
    tensors, scales = split_scales(names)
    return tensors, scales, diffusers


def _config(stored: StoredWan, shapes: dict[str, torch.Tensor], diffusers: bool) -> WanConfig:
    """The architecture: from a diffusers config.json where there is one (checked against the shapes), else from
    the shapes and the files' metadata."""
    settings = read_diffusers_config(stored.folder) if diffusers else None
    configured = None if settings is None else diffusers_wan_config(settings, stored.name)
    detected = detect_wan_config(shapes, stored.metadata, stored.name)
    if configured is None:
        return detected
    # heads and eps leave no trace in the shapes: config.json's win
    detected = dataclasses.replace(detected, num_heads=configured.num_heads, eps=configured.eps)
    if detected != configured:
        differ = [f"{f.name} {getattr(configured, f.name)} vs {getattr(detected, f.name)}"
                  for f in dataclasses.fields(WanConfig) if getattr(configured, f.name) != getattr(detected, f.name)]
        raise CheckpointError(f"{stored.name}'s config.json disagrees with its weights ({', '.join(differ)}).")
    return configured


def _by_file(stored: StoredWan, names: dict[str, str]) -> dict[Path, dict[str, str]]:
    """Stored name → official name, grouped by the file holding it, so each file is opened once."""
    groups: dict[Path, dict[str, str]] = {}
    for name, key in names.items():
        groups.setdefault(stored.tensors[key].file, {})[key] = name
    return groups


def _fill(model: WanDiT, stored: StoredWan, names: dict[str, str], scales: dict[str, str]) -> None:
    """Copy every tensor into the model as it is read, cast to the model's dtype (fp8 scaled ones dequantized), so
    no more than one stored tensor is in memory beside the model."""
    scale_values = {scaled[key]: value for file, scaled in _by_file(stored, scales).items()
                    for key, value in read_tensors(file, list(scaled))}
    targets = model.state_dict()  # shares storage with the parameters
    with torch.no_grad():
        for file, wanted in _by_file(stored, names).items():
            for key, tensor in read_tensors(file, list(wanted)):
                name = wanted[key]
                targets[name].copy_(dequantize(tensor, scale_values[name]) if name in scale_values else tensor)


def load_wan(path: str | os.PathLike, dtype: torch.dtype | None = None, device: str = "cpu",
             expect: WanConfig | None = None) -> WanDiT:
    """Build a WanDiT from a Wan2.1 T2V model in any layout `wan_layouts.find_wan` finds (a file, an index JSON or
    a folder), its size read from tensor shapes (and a diffusers config.json). The weights take `dtype`, by default
    the stored dtype of head.modulation, which fp8 files keep wide (bfloat16 where even it is float8)."""
    stored = find_wan(path)
    names, scales, diffusers = _official_names(stored)
    shapes = {name: stored.tensors[key].meta for name, key in names.items()}
    for name, key in scales.items():
        check_scale(shapes.get(name), stored.tensors[key].meta, name, stored.name)
    config = _config(stored, shapes, diffusers)
    if expect is not None and config != expect:
        raise CheckpointError(f"{stored.name} holds a {config.describe()}, expected a {expect.describe()}.")
    if dtype is None:
        dtype = shapes["head.modulation"].dtype
        dtype = torch.bfloat16 if dtype.itemsize == 1 else dtype
    with torch.device("meta"):  # no memory until the weights arrive
        model = WanDiT(config).to(dtype)
    model = model.to_empty(device=device)
    check_wan_keys(model, shapes, stored.name)
    _fill(model, stored, names, scales)
    return model


def save_wan(model: WanDiT, path: str | os.PathLike, metadata: dict[str, str] | None = None) -> Path:
    """Save in the bare official key layout that UNETLoader and `load_wan` read."""
    return write_safetensors(model.state_dict(), path, {**config_metadata(model.config), **(metadata or {})})
