# SPDX-License-Identifier: Apache-2.0
"""Quality of the toy world's samplers, measured on decoded clips with the analytic detector (toy/metrics.py).

    python -m comfyui_tmd.benchmarks.toy_quality [--clips 16] [--prompts 16] [--out runs/benchmarks/toy_quality]
    python -m comfyui_tmd.benchmarks.toy_quality --out benchmarks/results/toy_quality --force   # the README's table
    python -m comfyui_tmd.benchmarks.toy_quality --quick --teacher T --tmd S --tmd-head H --dmd2v D --out DIR

Rows: held-out real clips (the reference), the teacher at 50 Euler steps with CFG, the teacher's Euler at 2
and 4 steps (same CFG), the DMD2-v student at 1 and 2 steps, and the TMD student at M = 1 and 2 (its
trained N). The DMD2-v student is a plain Wan sampled without CFG by Euler on the TMD outer grid
(tmd_sigmas(M, γ = 10)), the time points TMD's outer steps use, so the two students are compared at the
same outer times. Clip k of every prompt uses seed k for every row (what `python -m comfyui_tmd generate
--seed k` samples). Writes toy_quality.md (table), toy_quality.json and toy_quality.png (per row, the
frames of clip 0 of the first prompts). --quick (2 prompts, 2 clips, 3 teacher steps) checks the mechanics
only; its numbers mean nothing.
"""
from __future__ import annotations

import argparse
import dataclasses
import json
import time
from pathlib import Path
from typing import Callable

import numpy as np
import torch

from ..tmd_core import (FlowHeadMeta, TMDStudent, effective_nfe, generate_teacher, generate_tmd,
                        load_student, load_wan)
from ..tmd_core.command_line import argument_parser, run_command
from ..tmd_core.sampler import generate_plain
from ..toy import checkpoints
from ..toy.cli import TEACHER_CFG
from ..toy.clips import make_clips
from ..toy.detector import detect
from ..toy.latent import decode, latent_shape
from ..toy.metrics import (adherence, feature_frechet, mean_temporal_consistency, mode_collapse_index, speckle,
                           start_spread, wilson_interval)
from ..toy.text import NEGATIVE_PROMPT, encode_caption
from ..toy.video_io import write_png
from ..toy.world import COLOURS, DIRECTIONS, SHAPES, caption_of
from .output import add_output_options, check_output

REAL_SEED, HELD_OUT_SEED = 10_000, 20_000  # real clips never share a seed with the reference set
HELD_OUT_PER_PROMPT = 16
GRID_PROMPTS = 2
Sampler = Callable[[str, int], torch.Tensor]  # (caption, seed) -> frames [T, H, W, 3]


@dataclasses.dataclass
class Method:
    name: str
    nfe: float
    sample: Sampler


def teacher_method(teacher: torch.nn.Module, steps: int, cfg: float, shift: float) -> Method:
    """The teacher's Euler with CFG (two model calls a step) on its shifted schedule."""
    shape, negative = latent_shape(), encode_caption(NEGATIVE_PROMPT)[None]
    return Method(f"teacher Euler {steps} steps, CFG {cfg}", 2.0 * steps, lambda caption, seed: decode(
        generate_teacher(teacher, encode_caption(caption)[None], negative, shape, seed, steps=steps, cfg=cfg,
                         shift=shift, disable=True))[0])


def plain_method(wan: torch.nn.Module, steps: int) -> Method:
    """A plain Wan student (DMD2-v) at `steps` Euler steps without CFG on the TMD outer grid."""
    return Method(f"DMD2-v {steps} step{'s' * (steps > 1)}", float(steps), lambda caption, seed: decode(
        generate_plain(wan, encode_caption(caption)[None], latent_shape(), seed, steps, disable=True))[0])


def tmd_method(student: TMDStudent, meta: FlowHeadMeta, outer: int) -> Method:
    """A TMD student at M = `outer`, with the N, grids and inner form its flow-head file was trained for."""
    nfe = effective_nfe(outer, meta.inner_steps, student.head_blocks, len(student.wan.blocks))
    return Method(f"TMD M = {outer}, N = {meta.inner_steps}", nfe, lambda caption, seed: decode(generate_tmd(
        student, encode_caption(caption)[None], latent_shape(), seed, outer_steps=outer, inner_steps=meta.inner_steps,
        outer_gamma=meta.outer_gamma, inner_gamma=meta.inner_gamma, inner_form=meta.inner_form, disable=True))[0])


def build_methods(args: argparse.Namespace) -> list[Method]:
    teacher = load_wan(checkpoints.require(args.teacher), dtype=torch.float32)
    student, meta = load_student(checkpoints.require(args.tmd), checkpoints.require(args.tmd_head), dtype=torch.float32)
    dmd2v = load_wan(checkpoints.require(args.dmd2v), dtype=torch.float32)
    return [teacher_method(teacher, steps, args.cfg, args.shift) for steps in (args.teacher_steps, 2, 4)] + [
        plain_method(dmd2v, 1), plain_method(dmd2v, 2), tmd_method(student, meta, 1), tmd_method(student, meta, 2)]


def real_method() -> Method:
    """Real clips of the caption (seeds disjoint from the held-out reference set)."""
    return Method("real clips (reference)", 0.0,
                  lambda caption, seed: make_clips(1, REAL_SEED + seed, caption)[0].frames)


def held_out_detections(captions: list[str]) -> list:
    """Detections of the held-out real clips (HELD_OUT_PER_PROMPT per caption) that Fréchet distances compare to."""
    return [detect(clip.frames) for i, c in enumerate(captions)
            for clip in make_clips(HELD_OUT_PER_PROMPT, HELD_OUT_SEED + i, c)]


def evaluate(method: Method, captions: list[str], clips: int, held_out: list) -> tuple[dict, list[torch.Tensor]]:
    """The method's metrics over `clips` seeds per caption, and clip 0's frames per caption."""
    start = time.perf_counter()
    with torch.no_grad():
        # caption -> [K, T, H, W, 3]
        frames = {c: torch.stack([method.sample(c, seed) for seed in range(clips)]) for c in captions}
    seconds = time.perf_counter() - start
    detections = {c: [detect(f) for f in frames[c]] for c in captions}
    flat = [d for c in captions for d in detections[c]]
    rates = adherence(flat, [c for c in captions for _ in range(clips)])
    result = {
        "method": method.name, "nfe": method.nfe, "clips": len(flat), "seconds_per_clip": seconds / len(flat),
        "adherence": rates, "adherence_95": {name: wilson_interval(rate, len(flat)) for name, rate in rates.items()},
        "temporal": mean_temporal_consistency(flat),
        "frechet": feature_frechet(flat, held_out),
        "start_spread": float(np.mean([start_spread(detections[c]) for c in captions])),
        "mode_collapse": float(np.mean([mode_collapse_index(frames[c]) for c in captions])),
        "speckle": float(np.mean([speckle(f, d) for c in captions
                                  for f, d in zip(frames[c], detections[c], strict=True)])),
    }
    return result, [frames[c][0] for c in captions]


def rate_with_interval(rate: float, interval: tuple[float, float]) -> str:
    return f"{rate:.3f} ({interval[0]:.2f}–{interval[1]:.2f})"


def markdown(results: list[dict]) -> str:
    head = ("| method | NFE | adherence (all) | colour | shape | direction | Fréchet ↓ | area change ↓ "
            "| colour change ↓ | motion jitter ↓ | start spread (px) | mode collapse ↓ | speckle ↓ | s / clip |")
    rows = [head, "|" + "---|" * head.count(" | ") + "---|"]
    for r in results:
        t = r["temporal"]
        a = {name: rate_with_interval(rate, r["adherence_95"][name]) for name, rate in r["adherence"].items()}
        rows.append(f"| {r['method']} | {r['nfe']:.2f} | {a['all']} | {a['colour']} | {a['shape']} | "
                    f"{a['direction']} | {r['frechet']:.3f} | {t['area_change']:.3f} | {t['colour_change']:.3f} | "
                    f"{t['motion_jitter']:.3f} | {r['start_spread']:.2f} | {r['mode_collapse']:.3f} | "
                    f"{r['speckle']:.3f} | {r['seconds_per_clip']:.3f} |")
    note = (f"\nAdherence: fraction of {results[0]['clips']} clips per row, in brackets its 95 % Wilson interval; "
            "the real clips' Fréchet distance to the held-out real clips is the metric's floor.\n")
    return "\n".join(rows) + "\n" + note


def frame_grid(rows: list[list[torch.Tensor]]) -> torch.Tensor:
    """Per row, the frames [T, H, W, 3] of its clips side by side -> one image [rows·H, clips·T·W, 3]."""
    return torch.cat([torch.cat([frame for clip in row for frame in clip], dim=1) for row in rows], dim=0)


def pick_captions(count: int) -> list[str]:
    """`count` distinct captions (at most 48) that cycle colour, shape and direction together: caption i is
    colour i mod 4, shape i mod 3, direction (i + ⌊i/4⌋) mod 4, so each block of 4 holds every colour and
    direction and any 3 in a row every shape (the ⌊i/4⌋ keeps i and i + 12 apart in direction)."""
    colours, directions = list(COLOURS), list(DIRECTIONS)
    return [caption_of(colours[i % 4], SHAPES[i % 3], directions[(i + i // 4) % 4]) for i in range(min(count, 48))]


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argument_parser(__doc__.split("\n")[0])
    parser.add_argument("--teacher", default=str(checkpoints.TEACHER), help="the teacher's Wan file")
    parser.add_argument("--tmd", default=str(checkpoints.TMD_STUDENT), help="the TMD student's Wan file")
    parser.add_argument("--tmd-head", default=str(checkpoints.TMD_HEAD), help="the TMD student's flow-head file")
    parser.add_argument("--dmd2v", default=str(checkpoints.DMD2V_STUDENT), help="the DMD2-v baseline's Wan file")
    parser.add_argument("--clips", type=int, default=16, help="clips (seeds) per prompt")
    parser.add_argument("--prompts", type=int, default=16, help="captions cycling colour, shape and direction; "
                                                                "16 × 16 = 256 clips give 95 %% intervals of "
                                                                "±0.02–0.06")
    parser.add_argument("--teacher-steps", type=int, default=50, help="the teacher's Euler steps")
    parser.add_argument("--cfg", type=float, default=TEACHER_CFG, help="the teacher's classifier-free guidance scale")
    parser.add_argument("--shift", type=float, default=5.0, help="the teacher's schedule shift")
    add_output_options(parser, "toy_quality")
    parser.add_argument("--quick", action="store_true", help="2 prompts, 2 clips, 3 teacher steps: mechanics only")
    args = parser.parse_args(argv)
    check_output([Path(args.out) / f"toy_quality{suffix}" for suffix in (".md", ".json", ".png")], args.force)
    if args.quick:
        args.prompts, args.clips, args.teacher_steps = 2, 2, 3
    return args


def main(argv: list[str] | None = None) -> dict:
    args = parse_args(argv)
    captions = pick_captions(args.prompts)
    held_out = held_out_detections(captions)
    results, grid_rows = [], []
    for method in [real_method(), *build_methods(args)]:
        result, firsts = evaluate(method, captions, args.clips, held_out)
        results.append(result)
        grid_rows.append(firsts[:GRID_PROMPTS])
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    table = markdown(results)
    (out / "toy_quality.md").write_text(table, encoding="utf-8")
    report = {"config": {k: v for k, v in vars(args).items()}, "captions": captions, "results": results}
    (out / "toy_quality.json").write_text(json.dumps(report, indent=2), encoding="utf-8")
    write_png(frame_grid(grid_rows), out / "toy_quality.png", scale=4)
    print(table)
    print(json.dumps(report))
    return report


if __name__ == "__main__":
    raise SystemExit(run_command(main))
