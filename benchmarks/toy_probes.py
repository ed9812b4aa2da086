# SPDX-License-Identifier: Apache-2.0
"""What the toy-model probes share (toy_word_sensitivity, toy_motion_steering): seeded noised real clips, the
model's velocity under a caption, their command line, and their report files."""
from __future__ import annotations

import argparse
import json
from pathlib import Path

import torch

from ..tmd_core import load_wan
from ..tmd_core.command_line import argument_parser
from ..toy import checkpoints
from ..toy.clips import make_clips
from ..toy.latent import encode
from ..toy.text import encode_caption
from .output import add_output_options, check_output
from .toy_quality import pick_captions


def noised_real_clips(caption: str, clips: int, seed: int, t: float, generator: torch.Generator) -> torch.Tensor:
    """`clips` real clips of `caption` (seeded by `seed`) noised to time t: x_t [K, 16, T, H, W]."""
    x = encode(torch.stack([clip.frames for clip in make_clips(clips, seed, caption)]))
    return (1 - t) * x + t * torch.randn(x.shape, generator=generator)


def velocity(wan: torch.nn.Module, x_t: torch.Tensor, t: float, caption: str) -> torch.Tensor:
    """v(x_t, t, caption) for the batch x_t [K, 16, T, H, W]."""
    timestep = torch.full((x_t.shape[0],), 1000.0 * t)
    return wan(x_t, timestep, encode_caption(caption)[None].expand(x_t.shape[0], -1, -1))


def parse_probe_args(description: str, argv: list[str] | None, clips: int, name: str) -> argparse.Namespace:
    """--wan (default: the toy teacher), --captions, --clips (default `clips`), --out and --force (output.py);
    refuses now, before any work, to replace the published <name>.md and .json."""
    parser = argument_parser(description)
    parser.add_argument("--wan", default=str(checkpoints.TEACHER), help="a toy Wan file")
    parser.add_argument("--captions", type=int, default=8,
                        help="captions, cycling colour, shape and direction (toy_quality.pick_captions)")
    parser.add_argument("--clips", type=int, default=clips, help="real clips per caption")
    add_output_options(parser, name)
    args = parser.parse_args(argv)
    check_output(report_paths(args.out, name), args.force)
    return args


def load_probe_inputs(args: argparse.Namespace) -> tuple[torch.nn.Module, list[str]]:
    """The --wan model in float32 (one-sentence error if missing) and the --captions captions."""
    return load_wan(checkpoints.require(args.wan), dtype=torch.float32), pick_captions(args.captions)


def report_paths(out: str, name: str) -> tuple[Path, Path]:
    """<out>/<name>.md and <out>/<name>.json."""
    return Path(out) / f"{name}.md", Path(out) / f"{name}.json"


def write_report(out: str, name: str, table: str, payload: dict) -> None:
    """Print the markdown table and write it as <out>/<name>.md, the payload as <out>/<name>.json."""
    print(table, end="")
    markdown, data = report_paths(out, name)
    markdown.parent.mkdir(parents=True, exist_ok=True)
    markdown.write_text(table)
    data.write_text(json.dumps(payload, indent=2) + "\n")
