# SPDX-License-Identifier: Apache-2.0
"""The one module that reaches into ComfyUI's internals: it runs the TMD core on ComfyUI's own WanModel.

How it plugs in (the pattern of ComfyUI's EasyCache, no monkeypatching):
- `apply_flow_head` clones the ModelPatcher and registers the flow-head extras as an *additional model*,
  the only place a module lives: ComfyUI loads, offloads and casts it with Wan, and every later clone
  (LoRA, ModelSamplingSD3, TorchCompileModel, ...) shares that one module. `model_options` holds only
  `TMDPatch`, plain settings that `ModelPatcher.clone()` may deep-copy freely.
- An OUTER_SAMPLE wrapper makes a `TMDRun` per sampling run, in the run's own copy of the options
  (`CFGGuider.sample` copies them per run): the head ComfyUI loaded for *this* model, the inner-noise
  generator seeded from the run's seed, and the inner flow. Two queued prompts, or two TMD branches of
  one graph, never share one.
- A DIFFUSION_MODEL wrapper replaces Wan's forward with backbone once + N flow-head steps and returns ŷ
  as the velocity, so every sampler's step on the TMD grid is a TMD outer step.
- `sample_tmd` is a KSAMPLER function: the outer Euler loop plus per-inner-step progress and the run's
  N/γ overrides, set on the run.
Imported only inside ComfyUI (nodes/ and tier-2 tests).
"""
from __future__ import annotations

import dataclasses
import os
from pathlib import Path

import comfy.model_management
import comfy.model_patcher
import comfy.patcher_extension
import comfy.utils
import torch

from ..tmd_core.checkpoint import FlowHeadMeta, build_extras, read_flow_head
from ..tmd_core.errors import TMDError
from ..tmd_core.flow_head import FlowHeadExtras
from ..tmd_core.sampler import InnerFlow, sample_euler
from ..tmd_core.student import TMDStudent

HEAD_KEY = "tmd_flow_head"  # additional-models key of the managed flow head
PATCH_KEY = "tmd"  # transformer_options: the patch's TMDPatch (settings only)
RUN_KEY = "tmd_run"  # transformer_options of one sampling run: its TMDRun
WRAPPER_KEY = "tmd"


@dataclasses.dataclass
class FlowHeadFile:
    """What travels on a TMD_HEAD socket: the extras tensors and their validated metadata (no model yet)."""

    name: str
    tensors: dict[str, torch.Tensor]
    meta: FlowHeadMeta


def read_head_file(path: str | os.PathLike) -> FlowHeadFile:
    tensors, meta = read_flow_head(path)
    return FlowHeadFile(Path(path).name, tensors, meta)


@dataclasses.dataclass(frozen=True)
class TMDPatch:
    """What a patched model's options say about TMD: the head's file name and metadata. No tensors, no modules."""

    head_name: str
    meta: FlowHeadMeta


class TMDRun:
    """State of one sampling run: the managed head, the inner-noise generator, the run's N and γ, the inner flow."""

    def __init__(self, extras: FlowHeadExtras, patch: TMDPatch, seed: int, noise_shape: torch.Size):
        self.extras, self.meta = extras, patch.meta
        self.inner_steps, self.inner_gamma = patch.meta.inner_steps, patch.meta.inner_gamma
        self.inner_callback = None
        # Continue the seed's CPU stream after the initial noise ComfyUI drew from it, so a seed gives
        # the same video here as in the core's `generate_tmd`.
        self.generator = torch.Generator().manual_seed(seed)
        torch.randn(noise_shape, generator=self.generator)
        self._flow: InnerFlow | None = None

    def configure(self, inner_steps: int | None, inner_gamma: float | None, inner_callback) -> None:
        """The TMD sampler's overrides for this run (None keeps what the head was trained with)."""
        self.inner_steps = inner_steps or self.meta.inner_steps
        self.inner_gamma = inner_gamma or self.meta.inner_gamma
        self.inner_callback, self._flow = inner_callback, None

    def inner_flow(self, wan: torch.nn.Module) -> InnerFlow:
        if self._flow is None or self._flow.student.wan is not wan:
            self._flow = InnerFlow(TMDStudent(wan, self.extras), inner_steps=self.inner_steps,
                                   inner_gamma=self.inner_gamma, inner_form=self.meta.inner_form,
                                   generator=self.generator, inner_callback=self.inner_callback,
                                   interrupt=comfy.model_management.throw_exception_if_processing_interrupted)
        return self._flow


def _is_wan(module: torch.nn.Module) -> bool:
    parts = ("blocks", "head", "patch_embedding", "time_projection", "text_embedding")
    return all(hasattr(module, name) for name in parts)


def apply_flow_head(model: comfy.model_patcher.ModelPatcher, head: FlowHeadFile) -> comfy.model_patcher.ModelPatcher:
    """A clone of `model` that samples as the TMD student made of its Wan weights and `head`.

    Applying a head to a model that already has one replaces it (one head, one set of wrappers)."""
    wan = model.get_model_object("diffusion_model")
    if not _is_wan(wan) or getattr(wan, "model_type", "t2v") != "t2v":
        raise TMDError(f"TMD needs a Wan2.1 text-to-video model, got {type(wan).__name__} "
                       f"({getattr(wan, 'model_type', 'unknown type')}).")
    compute_dtype = model.model.manual_cast_dtype or model.model.get_dtype()
    extras = build_extras(wan, head.tensors, head.meta, head.name, dtype=compute_dtype).to(model.offload_device)
    extras_patcher = comfy.model_patcher.ModelPatcher(extras, load_device=model.load_device,
                                                      offload_device=model.offload_device)
    patched = model.clone()
    patched.set_additional_models(HEAD_KEY, [extras_patcher])
    patched.model_options["transformer_options"][PATCH_KEY] = TMDPatch(head.name, head.meta)
    for kind, wrapper in ((comfy.patcher_extension.WrappersMP.OUTER_SAMPLE, _outer_sample_wrapper),
                          (comfy.patcher_extension.WrappersMP.DIFFUSION_MODEL, _diffusion_wrapper)):
        patched.remove_wrappers_with_key(kind, WRAPPER_KEY)
        patched.add_wrapper_with_key(kind, WRAPPER_KEY, wrapper)
    return patched


def tmd_patch(model: comfy.model_patcher.ModelPatcher, node: str) -> TMDPatch:
    """The TMD settings of a model patched by `apply_flow_head` (its head's name and metadata), for `node`."""
    patch = getattr(model, "model_options", {}).get("transformer_options", {}).get(PATCH_KEY)
    if not isinstance(patch, TMDPatch):
        raise TMDError(f"{node} needs a model with a TMD flow head: connect its model input after "
                       "'TMD Apply Flow Head'.")
    return patch


def managed_head(model: comfy.model_patcher.ModelPatcher) -> FlowHeadExtras:
    """The flow-head module ComfyUI manages for `model` (loaded with it for the run, offloaded after)."""
    heads = model.get_additional_models_with_key(HEAD_KEY)
    if len(heads) != 1:
        raise TMDError(f"the TMD-patched model carries {len(heads)} flow heads, expected 1: connect the model through "
                       "'TMD Apply Flow Head' once.")
    return heads[0].model


def _outer_sample_wrapper(executor, noise, latent_image, sampler, sigmas, denoise_mask=None, callback=None,
                          disable_pbar=False, seed=None, *args, **kwargs):
    guider = executor.class_obj
    options = guider.model_options["transformer_options"]  # this run's copy, made by CFGGuider.sample
    options[RUN_KEY] = TMDRun(managed_head(guider.model_patcher), options[PATCH_KEY], 0 if seed is None else seed,
                              noise.shape)
    try:
        return executor(noise, latent_image, sampler, sigmas, denoise_mask, callback, disable_pbar, seed,
                        *args, **kwargs)
    finally:
        del options[RUN_KEY]  # the run's state (and its reference to the head) ends with the run


def _diffusion_wrapper(executor, x, timestep, context, clip_fea=None, time_dim_concat=None,
                       transformer_options=None, **kwargs):
    options = transformer_options if transformer_options is not None else {}
    run: TMDRun | None = options.get(RUN_KEY)
    if run is None:
        raise TMDError("the TMD-patched model ran outside a ComfyUI sampling run: sample it with SamplerCustom, "
                       "SamplerCustomAdvanced or KSampler.")
    if 1 in options.get("cond_or_uncond", []):
        raise TMDError("TMD students sample without CFG (the teacher's guidance is distilled in): set cfg to 1 "
                       "or use BasicGuider.")
    image_inputs = ("reference_latent", "context_latents")  # the second: newer ComfyUI's in-context references
    if clip_fea is not None or time_dim_concat is not None or any(kwargs.get(k) is not None for k in image_inputs):
        raise TMDError("TMD supports Wan2.1 text-to-video only: image, time-concat and reference inputs are not "
                       "supported.")
    sigma = timestep.float().flatten() / 1000.0  # ComfyUI feeds the DiT 1000·σ whatever the model's shift; kept fp32
    # The context is taken as ComfyUI's WanModel takes it: ComfyUI's umT5 encoder already pads to 512 zeroed tokens.
    return run.inner_flow(executor.class_obj).velocity(x, sigma, context, transformer_options=options)


@torch.no_grad()
def sample_tmd(model, x, sigmas, extra_args=None, callback=None, disable=None, inner_steps=None, inner_gamma=None):
    """KSAMPLER function: Euler on the TMD grid over a model patched by `apply_flow_head`.

    Sets the run's inner steps and γ (None = what the head was trained with) and advances a ComfyUI
    progress bar per inner step; previews come from `callback` once per outer step.
    """
    extra_args = extra_args or {}
    run: TMDRun | None = extra_args.get("model_options", {}).get("transformer_options", {}).get(RUN_KEY)
    if run is None:
        raise TMDError("the TMD sampler needs a model patched with a flow head: connect the model through "
                       "'TMD Apply Flow Head' first.")
    total = (len(sigmas) - 1) * (inner_steps or run.meta.inner_steps)
    progress = comfy.utils.ProgressBar(total)
    done = [0]

    def advance(_):
        done[0] += 1
        progress.update_absolute(done[0], total)

    run.configure(inner_steps, inner_gamma, advance)
    return sample_euler(model, x, sigmas, extra_args=extra_args, callback=callback, disable=disable)
