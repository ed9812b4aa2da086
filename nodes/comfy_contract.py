# SPDX-License-Identifier: Apache-2.0
"""The ComfyUI internals the bridge relies on, checked against the running ComfyUI.

The pack was written against ComfyUI 0.3.64 (and read against newer releases). ComfyUI's internals are not a
public API, so a release may move them; `contract_breaks()` names each one that moved, in one sentence,
instead of letting the first sampling run fail deep inside a wrapper. The entry point logs them at start-up.
"""
from __future__ import annotations

import inspect
import comfy.ldm.wan.model
import comfy.model_management
import comfy.model_patcher
import comfy.ops
import comfy.patcher_extension
import comfy.samplers

# (what, owner, attribute, the leading parameters the bridge passes or receives, in order)
SIGNATURES: list[tuple[str, object, str, tuple[str, ...]]] = [
    ("CFGGuider.outer_sample (the OUTER_SAMPLE wrapper's call)", comfy.samplers.CFGGuider, "outer_sample",
     ("self", "noise", "latent_image", "sampler", "sigmas", "denoise_mask", "callback", "disable_pbar", "seed")),
    ("WanModel._forward (the DIFFUSION_MODEL wrapper's call)", comfy.ldm.wan.model.WanModel, "_forward",
     ("self", "x", "timestep", "context", "clip_fea", "time_dim_concat", "transformer_options")),
    ("WanAttentionBlock.forward (the block call)", comfy.ldm.wan.model.WanAttentionBlock, "forward",
     ("self", "x", "e", "freqs", "context", "context_img_len", "transformer_options")),
    ("WanModel.unpatchify", comfy.ldm.wan.model.WanModel, "unpatchify", ("self", "x", "grid_sizes")),
    ("comfy.model_management.cast_to", comfy.model_management, "cast_to",
     ("weight", "dtype", "device", "non_blocking", "copy", "stream")),
]
ATTRIBUTES: list[tuple[object, str]] = [
    (comfy.patcher_extension.WrappersMP, "OUTER_SAMPLE"),
    (comfy.patcher_extension.WrappersMP, "DIFFUSION_MODEL"),
    (comfy.model_patcher.ModelPatcher, "set_additional_models"),
    (comfy.model_patcher.ModelPatcher, "get_additional_models_with_key"),
    (comfy.model_patcher.ModelPatcher, "get_nested_additional_models"),
    (comfy.model_patcher.ModelPatcher, "add_wrapper_with_key"),
    (comfy.model_patcher.ModelPatcher, "remove_wrappers_with_key"),
    (comfy.ops.disable_weight_init, "Linear"),
    (comfy.model_management, "throw_exception_if_processing_interrupted"),
    (comfy.samplers, "KSAMPLER"),
]
# Parts of ComfyUI's WanModel the core runs directly (see tmd_core/student.py).
WAN_PARTS = ("blocks", "head", "patch_embedding", "time_embedding", "time_projection", "text_embedding",
             "rope_embedder", "freq_dim", "dim", "patch_size", "model_type")


def signature_break(what: str, owner: object, name: str, expected: tuple[str, ...]) -> str | None:
    function = getattr(owner, name, None)
    if function is None:
        return f"ComfyUI no longer has {what}, which the TMD bridge calls."
    found = tuple(inspect.signature(function).parameters)[: len(expected)]
    if found == expected:
        return None
    return f"{what} now takes ({', '.join(found)}), the pack expects ({', '.join(expected)})."


def wan_part_breaks(wan: object) -> list[str]:
    """Sentences for each WanModel part the core uses that `wan` (a built ComfyUI WanModel) lacks."""
    missing = [name for name in WAN_PARTS if not hasattr(wan, name)]
    return [f"ComfyUI's WanModel has no '{name}' any more, which the TMD core runs directly." for name in missing]


def contract_breaks() -> list[str]:
    """One sentence per internal that differs from what the bridge was written against; empty when all hold."""
    breaks = [b for entry in SIGNATURES if (b := signature_break(*entry))]
    breaks += [f"ComfyUI no longer has {getattr(owner, '__name__', owner)}.{name}, which the TMD bridge uses."
               for owner, name in ATTRIBUTES if not hasattr(owner, name)]
    return breaks
