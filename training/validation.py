# SPDX-License-Identifier: Apache-2.0
"""Validation during training: every `validation.every` iterations (and after the last one) the current model
samples fixed prompts and seeds, and the main process writes what it made under <out>/validation/step-<k>/:

    latents.safetensors   the sampled latents [R, C, T, H, W] (always, also without a decoder); metadata: the
                          stage's sampler and, per row, the prompt, seed and clip name
    <row>.gif | .mp4 | /  one clip per prompt × seed: GIF for the toy decoder, MP4 for a real one when PyAV is
                          installed, else a folder of PNG frames
    contact_sheet.png     one row per prompt × seed, `sheet_frames` frames across
and, when TensorBoard logging is on (training/run_log.py), the clips as animated images and the contact sheet
under the tag `validation/`, encoded by toy/video_io.py (no Pillow or moviepy needed).

Samplers: TMD students (stages 1, 2) the core's TMD sampler (M outer, N inner steps), the DMD2-v baseline
and the KD stage plain Euler on the M-step TMD grid, the flow-matching teacher Euler with CFG on Wan's shifted
schedule (`teacher_steps`). The model is the exported role's full weights, its EMA where the stage keeps one,
copied into a separate module (gathered from every process under FSDP2), so the training modules, their
modes and every RNG of the run are untouched: a run with validation trains bit for bit as one without.
"""
from __future__ import annotations

import json
from pathlib import Path

import torch
import torch.nn.functional as F
from torch import nn
from torch.distributed.checkpoint.state_dict import StateDictOptions, get_model_state_dict

from ..tmd_core.safe_files import read_safetensors, write_safetensors
from ..tmd_core.sampler import generate_plain, generate_teacher, generate_tmd
from ..toy.text import NEGATIVE_PROMPT, encode_caption, encode_captions
from ..toy.video_io import gif_bytes, mp4_available, png_bytes, to_uint8, write_clip, write_png
from .algorithm import Algorithm
from .config import TrainConfig
from .decoders import make_decoder
from .distributed import Env
from .errors import TrainingConfigError
from .export import exported_module

PREVIEW_HEIGHT = 128  # pixels of a frame in the contact sheet and the TensorBoard clips
SHEET_GAP = 2  # pixels between the contact sheet's frames


def load_prompts(prompts: str | list[str]) -> tuple[list[str], torch.Tensor, torch.Tensor]:
    """(names, context [P, L, 4096], negative context [1, L, 4096]) of toy captions or of a prompt-embedding file
    in make_data's format."""
    if isinstance(prompts, list):
        return list(prompts), encode_captions(prompts), encode_caption(NEGATIVE_PROMPT)[None]
    tensors, metadata = read_safetensors(prompts)
    if "context" not in tensors or "negative_context" not in tensors:
        raise TrainingConfigError(f"validation.prompts {prompts} needs tensors 'context' [P, L, 4096] and "
                                  f"'negative_context' [1, L, 4096], it has {sorted(tensors)}.")
    context = tensors["context"].float()
    names = json.loads(metadata["prompts"]) if "prompts" in metadata else [f"prompt {i}" for i in range(len(context))]
    return names, context, tensors["negative_context"].float()


def validation_model(algo: Algorithm) -> nn.Module | None:
    """A copy of the exported role with its full weights (the EMA where the stage keeps one), in eval mode on the
    main process's device; None on the other processes. Collective: every process must call it."""
    weights = get_model_state_dict(algo.module(algo.exported_role),
                                   options=StateDictOptions(full_state_dict=True, cpu_offload=True))
    if algo.ema is not None:
        weights.update(algo.ema.state_dict())
    if not algo.env.is_main:
        return None
    module = exported_module(algo.stage, algo.wan_config, algo.config.model, weights)
    return module.to(algo.env.device, torch.bfloat16 if algo.env.bf16 else torch.float32).eval()


def sample_one(module: nn.Module, stage: str, config: TrainConfig, context: torch.Tensor, negative: torch.Tensor,
               shape: tuple[int, ...], seed: int) -> torch.Tensor:
    """One latent [1, C, T, H, W] of `shape` from context [1, L, 4096] with the stage's sampler."""
    v, m = config.validation, config.model
    outer = v.outer_steps or m.outer_steps
    if stage in ("1", "2"):
        return generate_tmd(module, context, shape, seed, outer, v.inner_steps or m.inner_steps, m.outer_gamma,
                            m.inner_gamma, disable=True, inner_form=m.inner_form)
    if stage == "fm":
        return generate_teacher(module, context, negative, shape, seed, steps=v.teacher_steps, cfg=v.teacher_cfg,
                                disable=True)
    return generate_plain(module, context, shape, seed, outer, m.outer_gamma, disable=True)


def sampler_name(stage: str, config: TrainConfig) -> str:
    v, m = config.validation, config.model
    outer = v.outer_steps or m.outer_steps
    if stage in ("1", "2"):
        return f"TMD sampler, M = {outer}, N = {v.inner_steps or m.inner_steps}"
    if stage == "fm":
        return f"Euler with CFG {v.teacher_cfg}, {v.teacher_steps} steps"
    return f"Euler without CFG, {outer} steps"


def preview(frames: torch.Tensor, height: int = PREVIEW_HEIGHT) -> torch.Tensor:
    """Frames [F, H, W, 3] scaled to `height` rows: averaged down when larger, pixels repeated when smaller."""
    if frames.shape[1] >= height:
        width = max(1, round(frames.shape[2] * height / frames.shape[1]))
        scaled = F.interpolate(frames.permute(0, 3, 1, 2).float(), size=(height, width), mode="area")
        return scaled.permute(0, 2, 3, 1)
    factor = max(1, height // frames.shape[1])
    return frames.repeat_interleave(factor, dim=1).repeat_interleave(factor, dim=2)


def contact_sheet(clips: list[torch.Tensor], columns: int) -> torch.Tensor:
    """One row per clip [F, H, W, 3] (all of one size), `columns` frames spread over each clip -> image [H', W', 3]."""
    count, height, width, _ = clips[0].shape
    columns = min(columns, count)
    picks = torch.linspace(0, count - 1, columns).round().long()
    sheet = torch.ones(len(clips) * (height + SHEET_GAP) - SHEET_GAP, columns * (width + SHEET_GAP) - SHEET_GAP, 3)
    for row, clip in enumerate(clips):
        for column, frame in enumerate(picks.tolist()):
            top, left = row * (height + SHEET_GAP), column * (width + SHEET_GAP)
            sheet[top:top + height, left:left + width] = clip[frame]
    return sheet


def image_summary(tag: str, encoded: bytes, height: int, width: int):
    """A TensorBoard image summary of an encoded PNG or GIF (animated GIFs play as videos, as add_video's do)."""
    from tensorboard.compat.proto.summary_pb2 import Summary

    image = Summary.Image(height=height, width=width, colorspace=3, encoded_image_string=encoded)
    return Summary(value=[Summary.Value(tag=tag, image=image)])


class Validation:
    """The validation of one run; `run` is called by every process (the weights gather is collective), only the
    main process samples and writes."""

    def __init__(self, config: TrainConfig, out: Path, env: Env, tensorboard=None):
        self.config, self.env, self.tensorboard = config, env, tensorboard
        self.folder = Path(out) / "validation"
        v = config.validation
        self.enabled = v.every > 0
        if not (self.enabled and env.is_main):
            return
        self.names, self.context, self.negative = load_prompts(v.prompts)  # read now: a bad file fails at start
        self.decoder = make_decoder(v.decoder, env.device)

    def due(self, iteration: int) -> bool:
        every = self.config.validation.every
        return self.enabled and (iteration % every == 0 or iteration == self.config.run.iterations)

    def run(self, algo: Algorithm, iteration: int) -> Path | None:
        """Sample, decode and write the validation of `iteration`; returns its folder on the main process."""
        model = validation_model(algo)
        folder = None
        if self.env.is_main:
            with torch.random.fork_rng(devices=[self.env.device] if self.env.device.type == "cuda" else []):
                latents = self.sample(model, algo.stage)
            del model
            folder = self.write(latents, algo.stage, iteration)
        self.env.barrier()
        return folder

    @torch.no_grad()
    def sample(self, model: nn.Module, stage: str) -> torch.Tensor:
        """Latents [P·S, C, T, H, W] (float32, CPU), prompt-major: every seed of prompt 0, then of prompt 1, ..."""
        v = self.config.validation
        shape = (1, *(v.latent_shape or self.config.data.latent_shape))
        device, dtype = self.env.device, next(model.parameters()).dtype
        negative = self.negative.to(device, dtype)
        rows = []
        with self.env.autocast():
            for p in range(len(self.names)):
                context = self.context[p:p + 1].to(device, dtype)
                rows += [sample_one(model, stage, self.config, context, negative, shape, seed).float().cpu()
                         for seed in v.seeds]
        return torch.cat(rows)

    def write(self, latents: torch.Tensor, stage: str, iteration: int) -> Path:
        """The latents, and with a decoder the clips, the contact sheet and their TensorBoard images."""
        v = self.config.validation
        folder = self.folder / f"step-{iteration:08d}"
        rows = [{"prompt": name, "seed": seed, "clip": f"p{p:02d}_seed{seed}"}
                for p, name in enumerate(self.names) for seed in v.seeds]
        metadata = {"sampler": sampler_name(stage, self.config), "iteration": str(iteration), "rows": json.dumps(rows)}
        write_safetensors({"latents": latents}, folder / "latents.safetensors", metadata)
        if self.decoder is None:
            return folder
        previews = []
        for row, latent in zip(rows, latents.split(1), strict=True):
            frames = self.decoder(latent)[0]  # [F, H, W, 3] in [0, 1]
            self.write_clip(frames, folder / row["clip"])
            previews.append(preview(frames))
            self.log_image(f"validation/{row['clip']}", gif_bytes(to_uint8(previews[-1]), v.fps),
                           previews[-1].shape[1:3], iteration)
        sheet = contact_sheet(previews, v.sheet_frames)
        write_png(sheet, folder / "contact_sheet.png")
        self.log_image("validation/contact_sheet", png_bytes(to_uint8(sheet[None])[0]), sheet.shape[:2], iteration)
        return folder

    def write_clip(self, frames: torch.Tensor, stem: Path) -> None:
        """GIF for the toy decoder, MP4 for a real one when PyAV is installed, else a folder of PNG frames."""
        fps = self.config.validation.fps
        if self.config.validation.decoder == "toy":
            write_clip(frames, stem.with_suffix(".gif"), fps, scale=PREVIEW_HEIGHT // frames.shape[1] or 1)
        elif mp4_available():
            write_clip(frames, stem.with_suffix(".mp4"), fps, scale=1)
        else:
            stem.mkdir(parents=True, exist_ok=True)
            for index, frame in enumerate(frames):
                write_png(frame, stem / f"frame_{index:04d}.png")

    def log_image(self, tag: str, encoded: bytes, size: tuple[int, int], iteration: int) -> None:
        """An encoded image or GIF of `size` (height, width) in TensorBoard, when it is on."""
        if self.tensorboard is not None:
            summary = image_summary(tag, encoded, *size)
            self.tensorboard.file_writer.add_summary(summary, iteration)
