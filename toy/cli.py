# SPDX-License-Identifier: Apache-2.0
"""The main command: `python -m comfyui_tmd generate "a red square moving left" --out clip.gif`.

Samples with the toy TMD student by default (toy/checkpoints/), or the toy teacher (--teacher: Euler
with CFG, 50 steps), or any Wan files given with --wan / --head. Files that are not the toy world's need
their text embedding from --context-file (a safetensors file with `context` [L, 4096] or [1, L, 4096],
and `negative_context` for --teacher), since umT5 is not shipped; --out *.safetensors then writes the
raw latent for Wan's own VAE. Every argument is checked before anything is loaded (toy/cli_checks.py).
Prints the loading time, then the sampling time alone and the effective NFE.
"""
from __future__ import annotations

import argparse
import time
from pathlib import Path

import torch

from ..tmd_core import FlowHeadMeta, effective_nfe, generate_teacher, generate_tmd, load_student, load_wan
from ..tmd_core.command_line import HelpFormatter, argument_parser, run_command
from ..tmd_core.errors import LatentShapeError, NonFiniteError
from ..tmd_core.safe_files import read_safetensors, write_safetensors
from . import checkpoints
from .cli_checks import check_arguments
from .latent import LATENT_CHANNELS, decode, latent_shape
from .text import NEGATIVE_PROMPT, encode_caption
from .video_io import write_clip
from .world import FRAMES, SIDE

# CFG 2: the shipped teacher's best guidance; at Wan's 5 it over-saturates (speckle, narrow starts; docs/toy-world.md)
TEACHER_STEPS, TEACHER_CFG, TEACHER_SHIFT = 50, 2.0, 5.0


def read_context(path: str, key: str) -> torch.Tensor:
    """`key` of a safetensors file as context [1, L, 4096]."""
    tensors, _ = read_safetensors(checkpoints.require(path))
    if key not in tensors:
        raise LatentShapeError(f"{path} has no '{key}' tensor (it has {', '.join(sorted(tensors))}).")
    context = tensors[key].float()
    context = context[None] if context.ndim == 2 else context
    if context.ndim != 3 or context.shape[0] != 1 or context.shape[-1] != 4096:
        raise LatentShapeError(
            f"'{key}' in {path} has shape {tuple(tensors[key].shape)}, expected [L, 4096] or [1, L, 4096].")
    return context


def contexts(args: argparse.Namespace) -> tuple[torch.Tensor, torch.Tensor]:
    """(positive, negative) context [1, L, 4096] from --context-file or the toy text encoder."""
    if args.context_file:
        negative = read_context(args.context_file, "negative_context") if args.teacher else None
        return read_context(args.context_file, "context"), negative
    return encode_caption(args.caption)[None], encode_caption(NEGATIVE_PROMPT)[None]


def model_files(args: argparse.Namespace) -> list[Path]:
    """The files to load, each known to exist: the teacher's Wan, or the student's Wan and flow head."""
    if args.teacher:
        return [checkpoints.require(args.wan or checkpoints.TEACHER)]
    return [checkpoints.require(args.wan or checkpoints.TMD_STUDENT),
            checkpoints.require(args.head or checkpoints.TMD_HEAD)]


def load(files: list[Path]) -> tuple[torch.nn.Module, FlowHeadMeta | None]:
    """(the teacher's Wan, None) from one file, or (the TMD student, its flow-head metadata) from two."""
    if len(files) == 1:
        return load_wan(files[0], dtype=torch.float32), None
    return load_student(*files, dtype=torch.float32)


def sample(args: argparse.Namespace, model: torch.nn.Module, meta: FlowHeadMeta | None,
           context: tuple[torch.Tensor, torch.Tensor]) -> tuple[torch.Tensor, str, float]:
    """(latent [1, 16, T, H, W], what sampled it, effective NFE)."""
    shape = (1, LATENT_CHANNELS, *args.latent) if args.latent else latent_shape(1, args.frames, args.size)
    if args.teacher:
        steps, cfg = args.teacher_steps or TEACHER_STEPS, TEACHER_CFG if args.cfg is None else args.cfg
        with torch.no_grad():
            latent = generate_teacher(model, *context, shape, args.seed, steps=steps, cfg=cfg,
                                      shift=args.shift or TEACHER_SHIFT)
        passes = 1 if cfg == 1.0 else 2
        return latent, f"teacher, {steps} Euler steps, CFG {cfg}", float(steps * passes)
    outer, inner = args.outer_steps or meta.outer_steps, args.inner_steps or meta.inner_steps
    with torch.no_grad():
        latent = generate_tmd(model, context[0], shape, args.seed, outer_steps=outer, inner_steps=inner,
                              outer_gamma=meta.outer_gamma, inner_gamma=meta.inner_gamma,
                              inner_form=meta.inner_form)
    nfe = effective_nfe(outer, inner, model.head_blocks, len(model.wan.blocks))
    return latent, f"TMD student, M = {outer}, N = {inner}", nfe


def parser() -> argparse.ArgumentParser:
    top = argument_parser("Sample a clip of the toy world (or a Wan latent).", prog="python -m comfyui_tmd")
    commands = top.add_subparsers(dest="command", required=True)
    gen = commands.add_parser("generate", help="sample one clip from a caption", formatter_class=HelpFormatter,
                              description="Sample one clip from a caption; every value is checked before loading.")
    gen.add_argument("caption", help='e.g. "a red square moving left" (colours red/green/blue/yellow, '
                                     "shapes square/circle/triangle, directions left/right/up/down)")
    gen.add_argument("--out", required=True, help="clip.gif, clip.mp4 (needs PyAV) or latent.safetensors, in a "
                                                  "folder that exists")
    gen.add_argument("--seed", type=int, default=0, help="noise seed, 0 to 2**64 - 1; one seed, one clip")
    gen.add_argument("--outer-steps", type=int, help="student's outer steps M (default: what it was trained for)")
    gen.add_argument("--inner-steps", type=int, help="student's inner steps N (default: what it was trained for)")
    gen.add_argument("--teacher", action="store_true",
                     help="sample with the teacher (Euler with CFG) instead of the student")
    gen.add_argument("--teacher-steps", type=int, help=f"teacher's Euler steps (default: {TEACHER_STEPS})")
    gen.add_argument("--cfg", type=float, help=f"teacher's classifier-free guidance scale; the student takes none "
                                               f"(default: {TEACHER_CFG:g})")
    gen.add_argument("--shift", type=float, help=f"teacher's schedule shift (default: {TEACHER_SHIFT:g})")
    gen.add_argument("--wan", help=f"Wan2.1 diffusion model: a .safetensors file, a sharded release's index JSON "
                                   f"or folder, or a diffusers transformer folder (default: "
                                   f"{checkpoints.TMD_STUDENT.name}, or {checkpoints.TEACHER.name} with --teacher, "
                                   "in toy/checkpoints/)")
    gen.add_argument("--head", help=f"flow-head file of the student (default: {checkpoints.TMD_HEAD.name})")
    gen.add_argument("--context-file", help="safetensors with 'context' (and 'negative_context') for non-toy models")
    gen.add_argument("--frames", type=int, default=FRAMES,
                     help="frames of the toy clip (a multiple of 4: one latent frame each)")
    gen.add_argument("--size", type=int, default=SIDE,
                     help="side of the toy clip in pixels (even: the DiT's patches are 2 × 2)")
    gen.add_argument("--latent", type=int, nargs=3, metavar=("T", "H", "W"),
                     help="latent frames/height/width (non-toy models)")
    gen.add_argument("--fps", type=float, default=4.0, help="frames per second of the clip file")
    gen.add_argument("--scale", type=int, default=8, help="enlarge the clip's pixels this many times in the file")
    return top


def generate(args: argparse.Namespace) -> None:
    out = Path(args.out)
    context = contexts(args)
    files = model_files(args)
    start = time.perf_counter()
    model, meta = load(files)
    loaded = time.perf_counter()
    print(f"loaded {'the teacher' if args.teacher else 'the TMD student'} in {loaded - start:.2f} s; sampling",
          flush=True)  # flushed: a reader (or a test) knows sampling has begun
    try:
        latent, what, nfe = sample(args, model, meta, context)
    except NonFiniteError as err:  # finite but damaged weights get this far: say which files were used
        raise NonFiniteError(f"{str(err).rstrip('.')} with {' and '.join(map(str, files))}; a damaged file is the "
                             "likely cause (copy or download it again).") from err
    seconds = time.perf_counter() - loaded
    if out.suffix.lower() == ".safetensors":
        write_safetensors({"latent": latent[0].contiguous()}, out)
    else:
        write_clip(decode(latent)[0], out, fps=args.fps, scale=args.scale)
    print(f"wrote {out} ({args.caption!r}, seed {args.seed}): {what}; effective NFE {nfe:.2f}; "
          f"sampled in {seconds:.2f} s")


def run(argv: list[str] | None = None) -> None:
    args = parser().parse_args(argv)
    check_arguments(args)
    generate(args)


def main(argv: list[str] | None = None) -> int:
    """The exit status: 0, 2 after a one-sentence error, 130 after Ctrl-C (tmd_core/command_line.py)."""
    return run_command(run, argv)
