# SPDX-License-Identifier: Apache-2.0
"""The main command's arguments, checked before anything is loaded or sampled: one sentence per bad value.

Sizes are bounded so a typo cannot run for minutes and fill the memory: the toy DiT's time and memory grow
with its token count (frames/4 × (size/2)², 64 for the default clip), the GIF encoder's memory with the
pixels of the file it writes (frames × (size·scale)²). At both limits (1,024 frames of 16 px, enlarged 8
times) the command takes about 26 s and 1.4 GB of memory on a 2-core CPU.
"""
from __future__ import annotations

import argparse
import math
from pathlib import Path

from ..tmd_core.errors import TMDError
from ..tmd_core.grids import check_gamma, check_step_count
from .latent import FRAMES_PER_LATENT
from .video_io import clip_format

MAX_TOKENS = 16_384  # 1,024 frames at 16 px
MAX_FILE_PIXELS = 16_777_216  # 1,024 frames at 16 px, enlarged 8 times
MAX_FPS = 100.0  # a GIF's frame delay is a whole number of hundredths of a second
SEED_LIMIT = 2**64  # torch's generators take 64-bit seeds
TEACHER_ONLY = ("cfg", "shift", "teacher_steps")
STUDENT_ONLY = ("outer_steps", "inner_steps", "head")


class ArgumentError(TMDError, ValueError):
    """A command-line value the main command cannot use."""


def _option(name: str) -> str:
    return "--" + name.replace("_", "-")


def check_out(out: Path) -> None:
    """A suffix the command writes, in a folder that exists (found now, not after sampling)."""
    if out.suffix.lower() != ".safetensors":
        clip_format(out)
    if not out.parent.is_dir():
        raise ArgumentError(f"--out {out}: the folder {out.parent} does not exist; create it or choose another path.")
    if out.is_dir():
        raise ArgumentError(f"--out {out} is a folder; give a file name such as {out / 'clip.gif'}.")


def check_roles(args: argparse.Namespace) -> None:
    """Options of the sampler not in use are refused rather than silently ignored."""
    unused = STUDENT_ONLY if args.teacher else TEACHER_ONLY
    given = [_option(name) for name in unused if getattr(args, name) is not None]
    if not given:
        return
    verb = "is" if len(given) == 1 else "are"
    if args.teacher:
        raise ArgumentError(f"{', '.join(given)} {verb} for the TMD student only; the teacher (--teacher) takes "
                            "--teacher-steps, --cfg and --shift.")
    raise ArgumentError(f"{', '.join(given)} {verb} for the teacher only (--teacher); the TMD student samples "
                        "without classifier-free guidance, which is distilled into it.")


def check_numbers(args: argparse.Namespace) -> None:
    if not args.caption.strip():
        raise ArgumentError("the caption is empty; describe the clip, e.g. \"a red square moving left\".")
    if not 0 <= args.seed < SEED_LIMIT:
        raise ArgumentError(f"--seed {args.seed} is out of range; a seed is a whole number from 0 to {SEED_LIMIT - 1}.")
    if args.frames < FRAMES_PER_LATENT or args.frames % FRAMES_PER_LATENT:
        raise ArgumentError(f"--frames {args.frames}: a toy clip has a positive multiple of {FRAMES_PER_LATENT} "
                            "frames (one latent frame each), e.g. 4 or 8.")
    if args.size < 2 or args.size % 2:
        raise ArgumentError(f"--size {args.size}: the side must be a positive even number of pixels (the DiT's "
                            "patches are 2 × 2), e.g. 16.")
    if args.scale < 1:
        raise ArgumentError(f"--scale {args.scale}: the clip is enlarged a whole number of times ≥ 1, e.g. 8.")
    if not (math.isfinite(args.fps) and 0 < args.fps <= MAX_FPS):
        raise ArgumentError(f"--fps {args.fps:g}: frames per second must be above 0 and at most {MAX_FPS:g}.")
    if args.latent and (min(args.latent) < 1 or args.latent[1] % 2 or args.latent[2] % 2):
        raise ArgumentError(f"--latent {' '.join(map(str, args.latent))}: T, H and W must be positive, H and W even.")
    for name in ("outer_steps", "inner_steps", "teacher_steps"):
        if getattr(args, name) is not None:
            check_step_count(_option(name), getattr(args, name))
    if args.shift is not None:
        check_gamma("--shift", args.shift)
    if args.cfg is not None and not math.isfinite(args.cfg):
        raise ArgumentError(f"--cfg {args.cfg}: the guidance scale must be a finite number, e.g. 5.")


def check_size(args: argparse.Namespace) -> None:
    """The toy clip's token and pixel counts against MAX_TOKENS and MAX_FILE_PIXELS."""
    if args.latent:
        return  # a Wan latent for Wan's own VAE: its size is the user's model's business
    tokens = args.frames // FRAMES_PER_LATENT * (args.size // 2) ** 2
    if tokens > MAX_TOKENS:
        most = MAX_TOKENS // (args.size // 2) ** 2 * FRAMES_PER_LATENT
        hint = f"at most {most:,} frames at --size {args.size}" if most else "a smaller --size"
        raise ArgumentError(f"--frames {args.frames} at --size {args.size} is {tokens:,} DiT tokens, above the toy "
                            f"world's limit of {MAX_TOKENS:,} (time and memory grow with it); ask for {hint}.")
    pixels = args.frames * (args.size * args.scale) ** 2
    if pixels > MAX_FILE_PIXELS and Path(args.out).suffix.lower() != ".safetensors":
        most = math.isqrt(MAX_FILE_PIXELS // args.frames) // args.size
        raise ArgumentError(f"--scale {args.scale} makes a clip of {pixels:,} pixels ({args.frames} frames of "
                            f"{args.size * args.scale} × {args.size * args.scale}), above the limit of "
                            f"{MAX_FILE_PIXELS:,}; use --scale {most} or less.")


def check_arguments(args: argparse.Namespace) -> None:
    """Every check of the main command's arguments, cheapest first; raises ArgumentError (or a core error)."""
    check_numbers(args)
    check_roles(args)
    check_size(args)
    check_out(Path(args.out))
