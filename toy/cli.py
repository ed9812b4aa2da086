# SPDX-License-Identifier: Apache-2.0
"""The main command: `python -m comfyui_tmd generate "a red square moving left" --out clip.gif`.

Samples with the toy TMD student by default (toy/checkpoints/), or the toy teacher (--teacher: Euler
with CFG, 50 steps), or any Wan files given with --wan / --head. Files that are not the toy world's need
their text embedding from --context-file (a safetensors file with `context` [L, 4096] or [1, L, 4096],
and `negative_context` for --teacher), since umT5 is not shipped; --out *.safetensors then writes the
raw latent for Wan's own VAE. Prints the time taken and the effective NFE.
"""
from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import torch

from ..tmd_core import effective_nfe, generate_teacher, generate_tmd, load_student, load_wan
from ..tmd_core.errors import LatentShapeError, TMDError
from ..tmd_core.safe_files import read_safetensors, write_safetensors
from . import checkpoints
from .latent import LATENT_CHANNELS, decode, latent_shape
from .text import NEGATIVE_PROMPT, encode_caption
from .video_io import clip_format, write_clip
from .world import FRAMES, SIDE


def read_context(path: str, key: str) -> torch.Tensor:
    """`key` of a safetensors file as context [1, L, 4096]."""
    tensors, _ = read_safetensors(checkpoints.require(path))
    if key not in tensors:
        raise LatentShapeError(f"{path} has no '{key}' tensor (it has {', '.join(sorted(tensors))}).")
    context = tensors[key].float()
    context = context[None] if context.ndim == 2 else context
    if context.ndim != 3 or context.shape[0] != 1 or context.shape[-1] != 4096:
        raise LatentShapeError(f"'{key}' in {path} has shape {tuple(tensors[key].shape)}, "
                               "expected [L, 4096] or [1, L, 4096].")
    return context


def contexts(args: argparse.Namespace) -> tuple[torch.Tensor, torch.Tensor]:
    """(positive, negative) context [1, L, 4096] from --context-file or the toy text encoder."""
    if args.context_file:
        negative = read_context(args.context_file, "negative_context") if args.teacher else None
        return read_context(args.context_file, "context"), negative
    return encode_caption(args.caption)[None], encode_caption(NEGATIVE_PROMPT)[None]


def sample(args: argparse.Namespace) -> tuple[torch.Tensor, str, float]:
    """(latent [1, 16, T, H, W], what sampled it, effective NFE)."""
    context, negative = contexts(args)
    shape = (1, LATENT_CHANNELS, *args.latent) if args.latent else latent_shape(1, args.frames, args.size)
    if args.teacher:
        wan = load_wan(checkpoints.require(args.wan or checkpoints.TEACHER), dtype=torch.float32)
        with torch.no_grad():
            latent = generate_teacher(wan, context, negative, shape, args.seed, steps=args.teacher_steps, cfg=args.cfg,
                                      shift=args.shift)
        passes = 1 if args.cfg == 1.0 else 2
        return latent, f"teacher, {args.teacher_steps} Euler steps, CFG {args.cfg}", float(args.teacher_steps * passes)
    head = checkpoints.require(args.head or checkpoints.TMD_HEAD)
    student, meta = load_student(checkpoints.require(args.wan or checkpoints.TMD_STUDENT), head, dtype=torch.float32)
    outer, inner = args.outer_steps or meta.outer_steps, args.inner_steps or meta.inner_steps
    with torch.no_grad():
        latent = generate_tmd(student, context, shape, args.seed, outer_steps=outer, inner_steps=inner,
                              outer_gamma=meta.outer_gamma, inner_gamma=meta.inner_gamma, inner_form=meta.inner_form)
    nfe = effective_nfe(outer, inner, student.head_blocks, len(student.wan.blocks))
    return latent, f"TMD student, M = {outer}, N = {inner}", nfe


def parser() -> argparse.ArgumentParser:
    top = argparse.ArgumentParser(prog="python -m comfyui_tmd",
                                  description="Sample a clip of the toy world (or a Wan latent).")
    commands = top.add_subparsers(dest="command", required=True)
    gen = commands.add_parser("generate", help="sample one clip from a caption")
    gen.add_argument("caption", help='e.g. "a red square moving left" (colours red/green/blue/yellow, '
                                     "shapes square/circle/triangle, directions left/right/up/down)")
    gen.add_argument("--out", required=True, help="clip.gif, clip.mp4 (needs PyAV) or latent.safetensors")
    gen.add_argument("--seed", type=int, default=0)
    gen.add_argument("--outer-steps", type=int, default=0,
                     help="outer steps M (default: what the student was trained for)")
    gen.add_argument("--inner-steps", type=int, default=0,
                     help="inner steps N (default: what the student was trained for)")
    gen.add_argument("--teacher", action="store_true",
                     help="sample with the teacher (Euler with CFG) instead of the student")
    gen.add_argument("--teacher-steps", type=int, default=50)
    gen.add_argument("--cfg", type=float, default=5.0, help="teacher's classifier-free guidance scale")
    gen.add_argument("--shift", type=float, default=5.0, help="teacher's schedule shift")
    gen.add_argument("--wan", help=f"Wan diffusion-model file (default {checkpoints.TMD_STUDENT.name}, "
                                   f"or {checkpoints.TEACHER.name} with --teacher, in toy/checkpoints/)")
    gen.add_argument("--head", help=f"flow-head file of the student (default {checkpoints.TMD_HEAD.name})")
    gen.add_argument("--context-file", help="safetensors with 'context' (and 'negative_context') for non-toy models")
    gen.add_argument("--frames", type=int, default=FRAMES,
                     help="frames of the toy clip (a multiple of 4: one latent frame each)")
    gen.add_argument("--size", type=int, default=SIDE,
                     help="side of the toy clip in pixels (even: the DiT's patches are 2 × 2)")
    gen.add_argument("--latent", type=int, nargs=3, metavar=("T", "H", "W"),
                     help="latent frames/height/width (non-toy models)")
    gen.add_argument("--fps", type=float, default=4.0)
    gen.add_argument("--scale", type=int, default=8, help="enlarge the clip's pixels this many times in the file")
    return top


def generate(args: argparse.Namespace) -> None:
    out = Path(args.out)
    raw_latent = out.suffix.lower() == ".safetensors"
    if not raw_latent:
        clip_format(out)  # refuse an unwritable --out before sampling
    start = time.perf_counter()
    latent, what, nfe = sample(args)
    seconds = time.perf_counter() - start
    if raw_latent:
        write_safetensors({"latent": latent[0].contiguous()}, out)
    else:
        write_clip(decode(latent)[0], out, fps=args.fps, scale=args.scale)
    print(f"wrote {out} ({args.caption!r}, seed {args.seed}): {what}; effective NFE {nfe:.2f}; "
          f"sampled in {seconds:.2f} s")


def main(argv: list[str] | None = None) -> int:
    args = parser().parse_args(argv)
    try:
        generate(args)
    except TMDError as err:
        print(f"error: {err}", file=sys.stderr)
        return 2
    return 0
