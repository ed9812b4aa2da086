# SPDX-License-Identifier: Apache-2.0
"""The one core module that imports ComfyUI: it runs the TMD core on ComfyUI's own WanModel.

How it plugs in (the EasyCache pattern, no monkeypatching):
- `apply_flow_head` clones the ModelPatcher, registers the flow-head extras as an additional model
  (so ComfyUI loads and offloads them with Wan), and installs two wrappers:
  an OUTER_SAMPLE wrapper that seeds the run's inner noise from the sampling seed, and a
  DIFFUSION_MODEL wrapper that replaces Wan's forward with backbone once + N flow-head steps and
  returns ŷ as the velocity, so every sampler's step on the TMD grid is a TMD outer step.
- `sample_tmd` is a KSAMPLER function: the outer Euler loop plus per-inner-step progress and N/γ
  overrides for the run, passed to the wrapper through transformer_options.
Only imported from nodes/ (and tier-2 tests), never at package import.
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

from .checkpoint import FlowHeadMeta, build_extras, read_flow_head
from .errors import TMDError
from .flow_head import FlowHeadExtras
from .sampler import InnerFlow, sample_euler
from .student import TMDStudent

HOLDER_KEY = "tmd"  # transformer_options entry holding the patched model's TMDHolder
SAMPLER_KEY = "tmd_sampler"  # transformer_options entry the TMD sampler sets for one run
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


class TMDHolder:
    """Per patched model: the extras, their metadata, and the state of the sampling run in progress."""

    def __init__(self, extras: FlowHeadExtras, meta: FlowHeadMeta):
        self.extras, self.meta = extras, meta
        self.generator: torch.Generator | None = None
        self.flow: InnerFlow | None = None

    def start_run(self, seed: int, noise_shape: torch.Size) -> None:
        # Continue the seed's CPU stream after the initial noise ComfyUI drew from it, so a seed gives
        # the same video here as in the core's `generate_tmd`.
        self.generator = torch.Generator().manual_seed(seed)
        torch.randn(noise_shape, generator=self.generator)
        self.flow = None

    def end_run(self) -> None:
        self.generator, self.flow = None, None

    def inner_flow(self, wan: torch.nn.Module, options: dict) -> InnerFlow:
        if self.flow is None or self.flow.student.wan is not wan:
            overrides = options.get(SAMPLER_KEY, {})
            self.flow = InnerFlow(
                TMDStudent(wan, self.extras),
                inner_steps=overrides.get("inner_steps", self.meta.inner_steps),
                inner_gamma=overrides.get("inner_gamma", self.meta.inner_gamma),
                generator=self.generator if self.generator is not None else torch.Generator().manual_seed(0),
                inner_callback=overrides.get("inner_callback"),
                interrupt=comfy.model_management.throw_exception_if_processing_interrupted,
            )
        return self.flow


def _is_wan(module: torch.nn.Module) -> bool:
    return all(hasattr(module, name) for name in ("blocks", "head", "patch_embedding", "time_projection", "text_embedding"))


def apply_flow_head(model: comfy.model_patcher.ModelPatcher, head: FlowHeadFile) -> comfy.model_patcher.ModelPatcher:
    """A clone of `model` that samples as the TMD student made of its Wan weights and `head`."""
    wan = model.get_model_object("diffusion_model")
    if not _is_wan(wan) or getattr(wan, "model_type", "t2v") != "t2v":
        raise TMDError(f"TMD needs a Wan2.1 text-to-video model, got {type(wan).__name__} "
                       f"({getattr(wan, 'model_type', 'unknown type')}).")
    dtype = model.model.manual_cast_dtype or model.model.get_dtype()
    extras = build_extras(wan, head.tensors, head.meta, head.name).to(device=model.offload_device, dtype=dtype)
    extras_patcher = comfy.model_patcher.ModelPatcher(extras, load_device=model.load_device,
                                                      offload_device=model.offload_device)
    patched = model.clone()
    patched.set_additional_models("tmd_flow_head", [extras_patcher])
    patched.model_options["transformer_options"][HOLDER_KEY] = TMDHolder(extras, head.meta)
    patched.add_wrapper_with_key(comfy.patcher_extension.WrappersMP.OUTER_SAMPLE, WRAPPER_KEY, _outer_sample_wrapper)
    patched.add_wrapper_with_key(comfy.patcher_extension.WrappersMP.DIFFUSION_MODEL, WRAPPER_KEY, _diffusion_wrapper)
    return patched


def _outer_sample_wrapper(executor, noise, latent_image, sampler, sigmas, denoise_mask=None, callback=None,
                          disable_pbar=False, seed=None, *args, **kwargs):
    holder: TMDHolder = executor.class_obj.model_options["transformer_options"][HOLDER_KEY]
    holder.start_run(0 if seed is None else seed, noise.shape)
    try:
        return executor(noise, latent_image, sampler, sigmas, denoise_mask, callback, disable_pbar, seed, *args, **kwargs)
    finally:
        holder.end_run()


def _diffusion_wrapper(executor, x, timestep, context, clip_fea=None, time_dim_concat=None,
                       transformer_options=None, **kwargs):
    options = transformer_options if transformer_options is not None else {}
    holder: TMDHolder | None = options.get(HOLDER_KEY)
    if holder is None:
        return executor(x, timestep, context, clip_fea, time_dim_concat, options, **kwargs)
    if 1 in options.get("cond_or_uncond", []):
        raise TMDError("TMD students sample without CFG (the teacher's guidance is distilled in): set cfg to 1 "
                       "or use BasicGuider.")
    if clip_fea is not None or time_dim_concat is not None or kwargs.get("reference_latent") is not None:
        raise TMDError("TMD supports Wan2.1 text-to-video only: image, time-concat and reference inputs are not supported.")
    sigma = timestep.float().flatten() / 1000.0  # ComfyUI feeds the DiT 1000·σ whatever the model's shift
    flow = holder.inner_flow(executor.class_obj, options)
    return flow.velocity(x, sigma.to(x.dtype), context, transformer_options=options)


@torch.no_grad()
def sample_tmd(model, x, sigmas, extra_args=None, callback=None, disable=None, inner_steps=None, inner_gamma=None):
    """KSAMPLER function: Euler on the TMD grid over a model patched by `apply_flow_head`.

    Sets the run's inner steps and γ (None = what the head was trained with) and advances a ComfyUI
    progress bar per inner step; previews come from `callback` once per outer step.
    """
    extra_args = dict(extra_args or {})
    model_options = dict(extra_args.get("model_options", {}))
    options = dict(model_options.get("transformer_options", {}))
    holder: TMDHolder | None = options.get(HOLDER_KEY)
    if holder is None:
        raise TMDError("the TMD sampler needs a model patched with a flow head: connect the model through "
                       "'TMD Apply Flow Head' first.")
    inner_steps = inner_steps or holder.meta.inner_steps
    total = (len(sigmas) - 1) * inner_steps
    progress = comfy.utils.ProgressBar(total)
    done = [0]

    def advance(_):
        done[0] += 1
        progress.update_absolute(done[0], total)

    options[SAMPLER_KEY] = {"inner_steps": inner_steps, "inner_gamma": inner_gamma or holder.meta.inner_gamma,
                            "inner_callback": advance}
    model_options["transformer_options"] = options
    extra_args["model_options"] = model_options
    return sample_euler(model, x, sigmas, extra_args=extra_args, callback=callback, disable=disable)
