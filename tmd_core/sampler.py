# SPDX-License-Identifier: Apache-2.0
"""Sampling: the TMD outer/inner loops (the paper's Algorithm 1, with the flow map's sign corrected).

Samplers follow k-diffusion: `sampler(model, x, sigmas, extra_args, callback, disable)` where `model`
is a denoiser returning x0. A TMD outer step is an Euler step whose velocity is the inner flow's
output ŷ: the `TMDDenoiser` runs the backbone once, the flow head N times, and returns x − σ·ŷ,
so `sample_euler` over it is exactly `x ← x − (t_i − t_{i−1})·ŷ` (Eq. 4). The same Euler loop over
a `CFGDenoiser` is the teacher's sampler.
"""
from __future__ import annotations

import functools
import sys
from typing import Callable

import torch
from torch import nn

from .broadcast import broadcast
from .errors import NonFiniteError
from .graphed_inner import GraphedInnerRollout
from .grids import check_step_count, teacher_sigmas, tmd_grid, tmd_sigmas
from .guidance import guided
from .inner_form import DEFAULT_INNER_FORM, check_inner_form, flow_map_step
from .student import BackboneFeatures, HeadTime, TMDStudent
from .wan_model import pad_context, rope_for

Callback = Callable[[dict], None]


def _denoised(x: torch.Tensor, sigma: torch.Tensor, velocity: torch.Tensor) -> torch.Tensor:
    """x − σ·v with σ [B] kept in (at least) float32."""
    sigma = broadcast(sigma, x, torch.promote_types(x.dtype, torch.float32))
    return (x - sigma * velocity).to(x.dtype)


@torch.no_grad()
def sample_euler(model: Callable, x: torch.Tensor, sigmas: torch.Tensor, extra_args: dict | None = None,
                 callback: Callback | None = None, disable: bool | None = None) -> torch.Tensor:
    """Euler over a denoiser on a descending σ grid; checks for NaN/inf once per step (not per inner step)."""
    extra_args = extra_args or {}
    s_in = x.new_ones([x.shape[0]], dtype=torch.promote_types(x.dtype, torch.float32))  # σ stays fp32 in a bf16 run
    steps = len(sigmas) - 1
    for i in range(steps):
        sigma, sigma_next = sigmas[i], sigmas[i + 1]
        denoised = model(x, sigma * s_in, **extra_args)
        velocity = (x - denoised) / sigma
        x = x + velocity * (sigma_next - sigma)
        if not torch.isfinite(x).all():
            raise NonFiniteError(f"sampling produced NaN or inf values at step {i + 1} of {steps} "
                                 f"(σ = {float(sigma):.4f}).")
        if callback is not None:
            callback({"x": x, "i": i, "sigma": sigma, "sigma_hat": sigma, "denoised": denoised})
        if not disable and sys.stderr.isatty():
            sys.stderr.write(f"\rsampling step {i + 1}/{steps}" + ("\n" if i + 1 == steps else ""))
    return x


def inner_rollout(student: TMDStudent, features: BackboneFeatures, y1: torch.Tensor, times: list[HeadTime],
                  grid: list[float], callback: Callback | None = None, interrupt: Callable[[], None] | None = None,
                  transformer_options: dict | None = None, inner_form: str = DEFAULT_INNER_FORM) -> torch.Tensor:
    """The inner flow: N flow-head steps from y1 on the inner grid [s_N, ..., 0] (times[j] conditions the step
    grid[j] -> grid[j + 1]); returns ŷ ≈ x1 − x. No host synchronisation."""
    y = y1.clone()
    steps = len(grid) - 1
    for j, (time, s, r) in enumerate(zip(times, grid[:-1], grid[1:], strict=True)):
        if interrupt is not None:
            interrupt()
        y = flow_map_step(y, student.head(features, y, time, transformer_options), y1, s, r, inner_form)
        if callback is not None:
            callback({"inner_step": j, "inner_steps": steps, "y": y})
    return y


class InnerFlow:
    """TMD's velocity for one sampling run: one backbone pass and an N-step inner flow per call.

    Work that is constant across outer steps is done once and kept on the device: the RoPE table and
    the head's time conditioning of every inner step (per latent shape). Inner noise y1 is drawn per
    outer step from `generator` on the CPU, so a seed gives the same video on any device. ComfyUI's
    diffusion-model wrapper calls `velocity` directly; the core's sampler goes through `TMDDenoiser`.

    `cuda_graph=True` (CUDA, inference only) replays the N head steps from one CUDA graph per latent
    shape; `interrupt` is then checked once per outer step, and an `inner_callback` is refused.
    `inner_form` is how the head's output becomes the inner velocity (inner_form.py); callers pass the
    flow-head file's `meta.inner_form`.
    """

    def __init__(self, student: TMDStudent, inner_steps: int = 2, inner_gamma: float = 10.0,
                 generator: torch.Generator | None = None, inner_callback: Callback | None = None,
                 interrupt: Callable[[], None] | None = None, cuda_graph: bool = False,
                 inner_form: str = DEFAULT_INNER_FORM):
        grid = tmd_grid(check_step_count("inner steps N", inner_steps), inner_gamma)
        if cuda_graph and inner_callback is not None:
            raise ValueError("inner_callback needs the host between inner steps; it cannot run with cuda_graph=True.")
        self.student = student
        self.inner_grid = grid
        self.inner_form = check_inner_form(inner_form)
        self.generator, self.inner_callback, self.interrupt = generator, inner_callback, interrupt
        self.cuda_graph = cuda_graph
        self._cache: dict[tuple, tuple] = {}
        self._graph: GraphedInnerRollout | None = None

    def prepare(self, x: torch.Tensor) -> tuple[torch.Tensor, list[HeadTime]]:
        """(RoPE table, per-inner-step head times) for latents like x; computed once, then cached."""
        key = (tuple(x.shape), x.device, x.dtype)
        if key not in self._cache:
            batch, grid = x.shape[0], self.inner_grid
            times = [self.student.head_time(torch.full((batch,), s, device=x.device, dtype=torch.float32),
                                            torch.full((batch,), r, device=x.device, dtype=torch.float32), x.dtype)
                     for s, r in zip(grid[:-1], grid[1:], strict=True)]
            self._cache = {key: (rope_for(self.student.wan, x), times)}
            self._graph = None  # it reads the replaced RoPE table and times
        return self._cache[key]

    def velocity(self, x: torch.Tensor, sigma: torch.Tensor, context: torch.Tensor,
                 embedded_context: torch.Tensor | None = None, transformer_options: dict | None = None) -> torch.Tensor:
        """x_t [B, C, T, H, W] at t = sigma [B] (float32, never the latent's dtype) -> ŷ ≈ noise − data, the outer
        step's velocity."""
        freqs, times = self.prepare(x)
        # Drawn before the backbone is queued, so the host-to-device copy does not stall a busy GPU.
        y1 = torch.randn(x.shape, generator=self.generator, dtype=torch.float32).to(x.device, x.dtype)
        features = self.student.backbone(x, sigma, context, embedded_context=embedded_context, freqs=freqs,
                                         transformer_options=transformer_options)
        if not self.cuda_graph:
            return inner_rollout(self.student, features, y1, times, self.inner_grid, self.inner_callback,
                                 self.interrupt, transformer_options, self.inner_form)
        if self.interrupt is not None:
            self.interrupt()
        if self._graph is None or not self._graph.fits(features, y1):
            rollout = functools.partial(inner_rollout, inner_form=self.inner_form)
            self._graph = GraphedInnerRollout(self.student, features, y1, times, self.inner_grid, rollout,
                                              transformer_options)
        return self._graph(features, y1)


class TMDDenoiser(InnerFlow):
    """k-diffusion denoiser of a TMD student for one text context: returns x − t·ŷ.

    The embedded text is computed once per device and dtype and reused by every outer step.
    """

    def __init__(self, student: TMDStudent, context: torch.Tensor, inner_steps: int = 2, inner_gamma: float = 10.0,
                 generator: torch.Generator | None = None, inner_callback: Callback | None = None,
                 interrupt: Callable[[], None] | None = None, cuda_graph: bool = False,
                 inner_form: str = DEFAULT_INNER_FORM):
        super().__init__(student, inner_steps, inner_gamma, generator, inner_callback, interrupt, cuda_graph,
                         inner_form)
        self.context = pad_context(context, getattr(student.wan, "text_len", None))  # [B, text_len, 4096]
        self._embedded: dict[tuple, torch.Tensor] = {}

    def embedded_context(self, x: torch.Tensor) -> torch.Tensor:
        key = (x.device, x.dtype)
        if key not in self._embedded:
            self._embedded = {key: self.student.embed_context(self.context.to(x.device, x.dtype))}  # [B, S, dim]
        return self._embedded[key]

    def __call__(self, x: torch.Tensor, sigma: torch.Tensor, **_) -> torch.Tensor:
        """x_t [B, C, T, H, W], sigma = t [B] -> denoised x − t·ŷ. Other k-diffusion extra_args are ignored."""
        context = self.context.to(x.device, x.dtype)
        y_hat = self.velocity(x, sigma, context, self.embedded_context(x))
        return _denoised(x, sigma, y_hat)


class CFGDenoiser:
    """k-diffusion denoiser of a Wan velocity model with classifier-free guidance.

    `batch_cfg=True` runs cond and uncond as one batch (as ComfyUI does); False runs two passes (as
    official Wan does, halving peak activation memory). `skip_blocks` makes it skip-layer guidance: the
    unconditional pass leaves those blocks out (this pack's WanDiT only), so it takes two passes.
    """

    def __init__(self, wan: nn.Module, context: torch.Tensor, negative_context: torch.Tensor | None, cfg: float = 5.0,
                 batch_cfg: bool = True, skip_blocks: tuple[int, ...] = ()):
        text_len = getattr(wan, "text_len", None)
        self.wan, self.cfg = wan, cfg
        self.context = pad_context(context, text_len)  # [B, text_len, 4096], as Wan's encoder pads
        self.negative_context = None if negative_context is None else pad_context(negative_context, text_len)
        self.batch_cfg, self.skip_blocks = batch_cfg and not skip_blocks, tuple(skip_blocks)

    def __call__(self, x: torch.Tensor, sigma: torch.Tensor, **_) -> torch.Tensor:
        t = 1000.0 * sigma
        if self.negative_context is None or self.cfg == 1.0:
            velocity = self.wan(x, t, self.context)
        else:
            if self.batch_cfg:
                cond, uncond = self.wan(torch.cat([x, x]), torch.cat([t, t]),
                                        torch.cat([self.context, self.negative_context])).chunk(2)
            else:
                # the keyword only when set: ComfyUI's WanModel has no such argument
                uncond_kwargs = {"skip_blocks": self.skip_blocks} if self.skip_blocks else {}
                cond, uncond = self.wan(x, t, self.context), self.wan(x, t, self.negative_context, **uncond_kwargs)
            velocity = guided(cond, uncond, self.cfg)
        return _denoised(x, sigma, velocity)


def seeded_noise(shape: tuple[int, ...], seed: int) -> tuple[torch.Tensor, torch.Generator]:
    """Initial noise from a CPU generator, and the generator itself for the draws that follow."""
    generator = torch.Generator().manual_seed(seed)
    return torch.randn(shape, generator=generator), generator


def generate_tmd(student: TMDStudent, context: torch.Tensor, latent_shape: tuple[int, ...], seed: int,
                 outer_steps: int = 2, inner_steps: int = 2, outer_gamma: float = 10.0, inner_gamma: float = 10.0,
                 callback: Callback | None = None, inner_callback: Callback | None = None,
                 interrupt: Callable[[], None] | None = None, disable: bool | None = None,
                 inner_form: str = DEFAULT_INNER_FORM) -> torch.Tensor:
    """A TMD sample: latent of `latent_shape` ([B, C, T, H, W]) on the context's device and dtype.
    Pass the flow-head file's `meta.inner_form` as `inner_form`."""
    sigmas = tmd_sigmas(check_step_count("outer steps M", outer_steps), outer_gamma).to(context.device)
    noise, generator = seeded_noise(latent_shape, seed)
    x = sigmas[0] * noise.to(context.device, context.dtype)
    denoiser = TMDDenoiser(student, context, inner_steps, inner_gamma, generator, inner_callback, interrupt,
                           inner_form=inner_form)
    return sample_euler(denoiser, x, sigmas, callback=callback, disable=disable)


def generate_teacher(wan: nn.Module, context: torch.Tensor, negative_context: torch.Tensor | None,
                     latent_shape: tuple[int, ...], seed: int, steps: int = 50, cfg: float = 5.0, shift: float = 5.0,
                     batch_cfg: bool = True, callback: Callback | None = None, disable: bool | None = None,
                     skip_blocks: tuple[int, ...] = ()) -> torch.Tensor:
    """The teacher's Euler sampler with CFG on Wan's shifted schedule (skip-layer guidance with `skip_blocks`)."""
    sigmas = teacher_sigmas(steps, shift).to(context.device)
    noise, _ = seeded_noise(latent_shape, seed)
    x = noise.to(context.device, context.dtype)
    denoiser = CFGDenoiser(wan, context, negative_context, cfg, batch_cfg, skip_blocks)
    return sample_euler(denoiser, x, sigmas, callback=callback, disable=disable)


def generate_plain(wan: nn.Module, context: torch.Tensor, latent_shape: tuple[int, ...], seed: int, steps: int = 2,
                   gamma: float = 10.0, disable: bool | None = None) -> torch.Tensor:
    """A plain few-step Wan student (the DMD2-v baseline): Euler without CFG on the TMD outer grid
    tmd_sigmas(steps, γ), starting from σ_0 · noise as the TMD sampler does; latent of `latent_shape`."""
    sigmas = tmd_sigmas(check_step_count("outer steps M", steps), gamma).to(context.device)
    noise, _ = seeded_noise(latent_shape, seed)
    x = sigmas[0] * noise.to(context.device, context.dtype)
    return sample_euler(CFGDenoiser(wan, context, None, cfg=1.0), x, sigmas, disable=disable)
