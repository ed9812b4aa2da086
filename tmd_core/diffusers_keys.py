# SPDX-License-Identifier: Apache-2.0
"""diffusers' WanTransformer3DModel in official Wan2.1 terms: its tensor names, and its config.json as a WanConfig.

The names are facts of diffusers' Wan conversion (official → diffusers), read backwards. Two of them are easy to
get wrong: diffusers orders a block's norms self-attention, cross-attention, FFN (norm1, norm2, norm3), official
Wan names the cross-attention norm norm3 and the FFN's norm2; and both `modulation` tables are `scale_shift_table`.
"""
from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from .errors import CheckpointError
from .wan_config import UMT5_TOKENS, WanConfig
from .wan_variants import WAN22_LATENT_CHANNELS, text_to_video_only

DIFFUSERS_MARKER_KEY = "proj_out.weight"  # official Wan calls it head.head.weight
CONFIG_FILE = "config.json"
TRANSFORMER_CLASS = "WanTransformer3DModel"

# Module (or parameter) names outside the blocks, diffusers → official.
_TOP_LEVEL = {
    "condition_embedder.time_embedder.linear_1": "time_embedding.0",
    "condition_embedder.time_embedder.linear_2": "time_embedding.2",
    "condition_embedder.time_proj": "time_projection.1",
    "condition_embedder.text_embedder.linear_1": "text_embedding.0",
    "condition_embedder.text_embedder.linear_2": "text_embedding.2",
    "scale_shift_table": "head.modulation",
    "proj_out": "head.head",
}
# Inside blocks.<i>, diffusers → official.
_IN_BLOCK = {
    "scale_shift_table": "modulation",
    "norm2": "norm3",
    "ffn.net.0.proj": "ffn.0",
    "ffn.net.2": "ffn.2",
    **{f"{attn}.{theirs}": f"{ours}.{mine}"
       for attn, ours in (("attn1", "self_attn"), ("attn2", "cross_attn"))
       for theirs, mine in (("to_q", "q"), ("to_k", "k"), ("to_v", "v"), ("to_out.0", "o"),
                            ("norm_q", "norm_q"), ("norm_k", "norm_k"))},
}


def is_diffusers(keys) -> bool:
    """Whether bare keys are diffusers' names (the output projection is the one tensor each side names uniquely)."""
    return DIFFUSERS_MARKER_KEY in keys


def _rename(name: str, table: dict[str, str]) -> str | None:
    for theirs, ours in table.items():
        if name == theirs or name.startswith(theirs + "."):
            return ours + name[len(theirs):]
    return None


def official_key(key: str) -> str:
    """The official name of a diffusers tensor name; names without one come back unchanged, so a strict load
    can name them."""
    if key.startswith("blocks."):
        index, _, rest = key[len("blocks."):].partition(".")
        renamed = _rename(rest, _IN_BLOCK)
        return key if renamed is None else f"blocks.{index}.{renamed}"
    return _rename(key, _TOP_LEVEL) or key


def read_diffusers_config(folder: Path) -> dict[str, Any] | None:
    """The transformer's config.json beside its weights, or None when there is none."""
    path = folder / CONFIG_FILE
    if not path.is_file():
        return None
    try:
        config = json.loads(path.read_text())
    except (UnicodeDecodeError, json.JSONDecodeError) as err:
        raise CheckpointError(f"{path} is not valid JSON ({err}).") from err
    if not isinstance(config, dict):
        raise CheckpointError(f"{path} is not a JSON object, so it is not a diffusers model config.")
    return config


def diffusers_wan_config(config: dict[str, Any], source: str) -> WanConfig:
    """The WanConfig of a WanTransformer3DModel config.json (absent entries take diffusers' defaults, as diffusers
    reads them); image-to-video and Wan2.2 configs are refused in one sentence."""
    class_name = config.get("_class_name", TRANSFORMER_CLASS)
    if class_name != TRANSFORMER_CLASS:
        raise text_to_video_only(f"a diffusers {class_name}, not a {TRANSFORMER_CLASS}", source)
    if config.get("image_dim") is not None or config.get("added_kv_proj_dim") is not None:
        raise text_to_video_only("a Wan2.1 image-to-video model (its config has image_dim / added_kv_proj_dim)",
                                 source)
    if config.get("pos_embed_seq_len") is not None:
        raise text_to_video_only("a Wan2.1 first-last-frame-to-video model (its config has pos_embed_seq_len)",
                                 source)
    in_dim, out_dim = config.get("in_channels", 16), config.get("out_channels", 16) or config.get("in_channels", 16)
    if in_dim == WAN22_LATENT_CHANNELS:
        raise text_to_video_only(f"a Wan2.2 TI2V-5B model ({in_dim}-channel latent)", source)
    if in_dim != out_dim:
        raise text_to_video_only(f"an image-conditioned Wan model ({in_dim} input channels, {out_dim} output)",
                                 source)
    if config.get("qk_norm", "rms_norm_across_heads") != "rms_norm_across_heads" or not config.get(
            "cross_attn_norm", True):
        raise CheckpointError(f"{source}'s config has qk_norm {config.get('qk_norm')!r} and cross_attn_norm "
                              f"{config.get('cross_attn_norm')!r}; Wan2.1 uses 'rms_norm_across_heads' and true.")
    heads, head_dim = config.get("num_attention_heads", 40), config.get("attention_head_dim", 128)
    try:
        return WanConfig(dim=heads * head_dim, ffn_dim=config.get("ffn_dim", 13824), num_heads=heads,
                         num_layers=config.get("num_layers", 40), in_dim=in_dim, out_dim=out_dim,
                         text_dim=config.get("text_dim", 4096), freq_dim=config.get("freq_dim", 256),
                         patch_size=tuple(config.get("patch_size", (1, 2, 2))), eps=config.get("eps", 1e-6),
                         text_len=UMT5_TOKENS)  # diffusers' pipeline pads prompts to 512 umT5 tokens, as Wan does
    except (TypeError, ValueError) as err:
        raise CheckpointError(f"{source}'s config.json does not describe a Wan transformer ({err}).") from err
