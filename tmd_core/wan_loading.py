# SPDX-License-Identifier: Apache-2.0
"""Loading and saving Wan2.1 diffusion-model files (official, ComfyUI-repackaged, or this pack's students)."""
from __future__ import annotations

import os
from pathlib import Path

import torch

from .errors import CheckpointError
from .safe_files import read_safetensors, write_safetensors
from .wan_config import WanConfig, config_metadata, detect_wan_config, strip_key_prefix
from .wan_model import WanDiT


def _describe_keys(keys: list[str], limit: int = 3) -> str:
    shown = ", ".join(sorted(keys)[:limit])
    return shown + (f" and {len(keys) - limit} more" if len(keys) > limit else "")


def load_wan_state_dict(model: WanDiT, state_dict: dict[str, torch.Tensor], source: str = "the state dict") -> WanDiT:
    """Strict load: every key present, none extra, every shape equal; one sentence naming what differs."""
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
    model.load_state_dict(state_dict, strict=True)
    return model


def load_wan(path: str | os.PathLike, dtype: torch.dtype | None = None, device: str = "cpu",
             expect: WanConfig | None = None) -> WanDiT:
    """Build a WanDiT from a Wan2.1 T2V safetensors file, detecting its size from tensor shapes."""
    tensors, metadata = read_safetensors(path)
    state_dict = strip_key_prefix(tensors)
    config = detect_wan_config(state_dict, metadata)
    if expect is not None and config != expect:
        raise CheckpointError(f"{Path(path).name} holds a {config.describe()}, expected a {expect.describe()}.")
    with torch.device("meta"):  # no memory until the weights arrive, in the file's dtype unless told otherwise
        model = WanDiT(config).to(dtype or state_dict["head.modulation"].dtype)
    return load_wan_state_dict(model.to_empty(device=device), state_dict, source=Path(path).name)


def save_wan(model: WanDiT, path: str | os.PathLike, metadata: dict[str, str] | None = None) -> Path:
    """Save in the bare official key layout that UNETLoader and `load_wan` read."""
    return write_safetensors(model.state_dict(), path, {**config_metadata(model.config), **(metadata or {})})
