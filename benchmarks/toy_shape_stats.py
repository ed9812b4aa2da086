# SPDX-License-Identifier: Apache-2.0
"""Where a toy teacher's shapes go wrong: the detector's shape confusion and per-shape statistics.

    python -m comfyui_tmd.benchmarks.toy_shape_stats [--teacher T] [--cfg 2] [--shift 5] [--clips 4] [--out DIR]
    python -m comfyui_tmd.benchmarks.toy_shape_stats --real            # the same statistics of real clips

For each asked shape: how often the detector reads each shape (or none), how often the template reader
(toy/shape_templates.py, an independent check of the detector's rule) does and on how many clips the two
readers agree, and the means over clips of the
per-clip medians over frames of the fill ratio, the rows' skewness and the alpha mass (toy/detector.py), the
quantities the detector's shape rule thresholds. docs/toy-world.md reads them. Writes toy_shape_stats.json into --out.
"""
from __future__ import annotations

import argparse
import collections
import json
from pathlib import Path

import numpy as np
import torch

from ..tmd_core import load_wan
from ..tmd_core.command_line import argument_parser, run_command
from ..toy import checkpoints
from ..toy.cli import TEACHER_CFG
from ..toy.detector import NONE, Detection, detect
from ..toy.shape_templates import read_shape
from ..toy.world import SHAPES, parse_caption
from .output import add_output_options, check_output
from .toy_quality import Method, pick_captions, real_method, teacher_method


def shape_stats(detections: dict[str, list[Detection]]) -> dict[str, dict]:
    """Asked shape -> {"read": {detected shape: count}, "fill", "skew", "mass": means of per-clip medians}."""
    report = {}
    for shape, found in detections.items():
        medians = np.array([[np.median(d.stats.fill), np.median(d.stats.skew), np.median(d.stats.mass)]
                            for d in found])  # [clips, 3]
        read = collections.Counter(d.shape for d in found)
        by_template = [read_shape(d.stats)[0] for d in found]
        agree = sum(d.shape == other for d, other in zip(found, by_template, strict=True))
        by_template = collections.Counter(by_template)
        fill, skew, mass = (float(value) for value in medians.mean(axis=0))
        report[shape] = {"clips": len(found), "read": {name: read[name] for name in (*SHAPES, NONE)},
                         "template_read": {name: by_template[name] for name in (*SHAPES, NONE)},
                         "readers_agree": agree,
                         "fill": fill, "skew": skew, "mass": mass}
    return report


def detections_by_shape(method: Method, captions: list[str], clips: int) -> dict[str, list[Detection]]:
    found: dict[str, list[Detection]] = collections.defaultdict(list)
    with torch.no_grad():
        for caption in captions:
            found[parse_caption(caption)[1]] += [detect(method.sample(caption, seed)) for seed in range(clips)]
    return dict(found)


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argument_parser(__doc__.split("\n")[0])
    parser.add_argument("--teacher", default=str(checkpoints.TEACHER), help="the teacher's Wan file")
    parser.add_argument("--real", action="store_true", help="measure real clips instead of a teacher")
    parser.add_argument("--cfg", type=float, default=TEACHER_CFG, help="the teacher's classifier-free guidance scale")
    parser.add_argument("--shift", type=float, default=5.0, help="the teacher's schedule shift")
    parser.add_argument("--steps", type=int, default=50, help="the teacher's Euler steps")
    parser.add_argument("--prompts", type=int, default=16, help="captions cycling colour, shape and direction")
    parser.add_argument("--clips", type=int, default=4, help="clips (seeds) per prompt")
    add_output_options(parser, "toy_shape_stats")
    args = parser.parse_args(argv)
    check_output([Path(args.out) / "toy_shape_stats.json"], args.force)
    return args


def main(argv: list[str] | None = None) -> dict:
    args = parse_args(argv)
    method = real_method() if args.real else teacher_method(
        load_wan(checkpoints.require(args.teacher), dtype=torch.float32), args.steps, args.cfg, args.shift)
    stats = shape_stats(detections_by_shape(method, pick_captions(args.prompts), args.clips))
    for shape, row in stats.items():
        read, by_template = (", ".join(f"{name} {count}" for name, count in row[key].items() if count)
                             for key in ("read", "template_read"))
        print(f"{shape:9s} read as: {read:34s} by template: {by_template:34s} same {row['readers_agree']:3d}  "
              f"fill {row['fill']:.3f}  skew {row['skew']:+.2f}  mass {row['mass']:.1f}")
    report = {"config": vars(args), "method": method.name, "shapes": stats}
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    (out / "toy_shape_stats.json").write_text(json.dumps(report, indent=2), encoding="utf-8")
    return report


if __name__ == "__main__":
    raise SystemExit(run_command(main))
