# SPDX-License-Identifier: Apache-2.0
"""Wan2.1 text-to-video DiT configurations, and their detection from a state dict's tensor shapes."""
from __future__ import annotations

import dataclasses
import json
from typing import Iterable, Mapping

import torch

from .errors import CheckpointError
from .wan_variants import check_text_to_video


UMT5_TOKENS = 512  # what Wan2.1's text encoder pads every prompt to


@dataclasses.dataclass(frozen=True)
class WanConfig:
    """Architecture of a Wan2.1 T2V DiT. Patch (1, 2, 2), 256-d frequency embedding and 4096-d umT5 text are fixed."""

    dim: int
    ffn_dim: int
    num_heads: int
    num_layers: int
    in_dim: int = 16
    out_dim: int = 16
    text_dim: int = 4096
    freq_dim: int = 256
    patch_size: tuple[int, int, int] = (1, 2, 2)
    eps: float = 1e-6
    # umT5 tokens a context is zero-padded to before the model sees it, as official Wan and ComfyUI pad (512 for
    # Wan2.1); None takes contexts as given (small test and toy models). Not part of the architecture: two configs
    # differing only here are equal.
    text_len: int | None = dataclasses.field(default=None, compare=False)

    def __post_init__(self):
        if self.dim % self.num_heads or (self.dim // self.num_heads) % 2:
            raise ValueError(f"dim {self.dim} must split into {self.num_heads} heads of even size.")

    @property
    def head_dim(self) -> int:
        return self.dim // self.num_heads

    def describe(self) -> str:
        return f"{self.num_layers}-layer dim-{self.dim} Wan"


WAN21_T2V_1_3B = WanConfig(dim=1536, ffn_dim=8960, num_heads=12, num_layers=30, text_len=UMT5_TOKENS)
WAN21_T2V_14B = WanConfig(dim=5120, ffn_dim=13824, num_heads=40, num_layers=40, text_len=UMT5_TOKENS)
# Smallest width ComfyUI still detects as Wan (heads = dim // 128); used by tests and the toy world.
WAN_TINY = WanConfig(dim=256, ffn_dim=512, num_heads=2, num_layers=4)

NAMED_CONFIGS: dict[str, WanConfig] = {
    "wan2.1-t2v-1.3b": WAN21_T2V_1_3B,
    "wan2.1-t2v-14b": WAN21_T2V_14B,
    "tiny": WAN_TINY,
}

# Prefixes official, ComfyUI and training-framework exports put in front of the bare Wan keys.
KNOWN_KEY_PREFIXES = ("model.diffusion_model.", "diffusion_model.", "model.", "net.")
# Keys every Wan2.1 diffusion model has: the official name, and diffusers' name of the same tensor.
WAN_MARKER_KEYS = ("head.modulation", "scale_shift_table")


def key_prefix(keys: Iterable[str]) -> str:
    """The wrapper prefix in front of the Wan keys (official or diffusers names), or "" when they are bare."""
    keys = set(keys)
    for prefix in KNOWN_KEY_PREFIXES:
        if any(f"{prefix}{marker}" in keys for marker in WAN_MARKER_KEYS):
            return prefix
    return ""


def strip_key_prefix(state_dict: Mapping[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """Return the state dict with a common wrapper prefix removed, if every Wan key carries it (keys without it,
    such as a full checkpoint's VAE or text encoder, are left out)."""
    prefix = key_prefix(state_dict)
    return {k[len(prefix):]: v for k, v in state_dict.items() if k.startswith(prefix)}


def detect_wan_config(state_dict: Mapping[str, torch.Tensor], metadata: Mapping[str, str] | None = None,
                      source: str = "the file") -> WanConfig:
    """Infer a WanConfig from bare Wan keys, the way ComfyUI does (heads = dim // 128 unless metadata says otherwise).

    A `config` metadata entry of the form {"transformer": {"num_heads": n}} (what newer ComfyUI reads) wins; this
    pack adds "text_len" there. Files without the entry (official Wan, ComfyUI's repackaging) pad to 512 tokens;
    files this pack wrote before "text_len" existed take contexts as given, as they were trained. The values may
    be meta tensors: only shapes are read. `source` names the model in errors.
    """
    wan_keys = ("head.modulation", "head.head.weight", "patch_embedding.weight")
    if any(key not in state_dict for key in wan_keys):
        raise CheckpointError(f"{source} is not a Wan diffusion model: it has no "
                              f"{' / '.join(repr(k) for k in wan_keys if k not in state_dict)} key.")

    def shape(key: str) -> torch.Size:
        if key not in state_dict:
            raise CheckpointError(f"{source} is missing the Wan key {key}.")
        return state_dict[key].shape

    patch = shape("patch_embedding.weight")
    out_dim = shape("head.head.weight")[0] // (patch[2] * patch[3] * patch[4])
    check_text_to_video(state_dict, patch[1], out_dim, source)
    dim = shape("head.modulation")[-1]
    num_layers = 0
    while f"blocks.{num_layers}.modulation" in state_dict:
        num_layers += 1
    if num_layers == 0:
        raise CheckpointError(f"{source} has no Wan 'blocks.0.*' keys, so its depth cannot be read.")
    num_heads, text_len = max(1, dim // 128), UMT5_TOKENS
    if metadata and "config" in metadata:
        try:
            transformer = json.loads(metadata["config"]).get("transformer", {})
            num_heads, text_len = int(transformer.get("num_heads", num_heads)), transformer.get("text_len")
        except (ValueError, AttributeError) as err:
            raise CheckpointError(f"{source}'s 'config' metadata is not valid JSON "
                                  f"with a transformer section ({err}).") from err
    return WanConfig(
        dim=dim,
        ffn_dim=shape("blocks.0.ffn.0.weight")[0],
        num_heads=num_heads,
        num_layers=num_layers,
        in_dim=patch[1],
        out_dim=out_dim,
        text_dim=shape("text_embedding.0.weight")[1],
        freq_dim=shape("time_embedding.0.weight")[1],
        patch_size=tuple(patch[2:]),
        text_len=text_len,
    )


def config_metadata(config: WanConfig) -> dict[str, str]:
    """Metadata that lets ComfyUI (which guesses heads = dim // 128) and this loader rebuild the exact config."""
    return {"config": json.dumps({"transformer": {"num_heads": config.num_heads, "text_len": config.text_len}})}
