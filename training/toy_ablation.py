# SPDX-License-Identifier: Apache-2.0
"""The paper's ablations in miniature on the toy world, trained and measured by one resumable command.

    python -m comfyui_tmd.training.toy_ablation --out runs/ablation [--teacher toy/checkpoints/toy_teacher.safetensors]
        [--clips 256] [--rows tmd,n1,...] [--budget-scale 1.0] [--docs [--force]]

Rows (training/ablation_rows.py): the toy TMD student (M = 2, N2H1) and one change each (N = 1 or 4, H = 2,
inner form ys, no stage 1, gradients through the last inner step only, GAN weight 0, concat fusion, EMA),
plain DMD2-v trained for 1, 2 and 4 steps, and the teacher's Euler with CFG at 1 and 2 steps (NFE 2 and 4,
no training). Every row starts from the same teacher and trains each stage for the toy plan's iterations
(training/configs/toy.yaml) × --budget-scale; a stage several rows agree on is trained once
(training/ablation_runs.py). A killed run loses at most one checkpoint interval: run the same command
again and it reuses finished stages and evaluations and continues the rest. Each row is measured on
--clips clips (--prompts captions × seeds) with benchmarks/toy_quality.py's detector and metrics, rates
with 95 % Wilson intervals. Writes ablation.md (table), ablation.json and ablation.png (adherence with its
intervals per row) into --out; --docs also writes docs/toy-ablation.{md,json,png}, replacing committed
ones only with --force.
"""
from __future__ import annotations

import argparse
import dataclasses
import hashlib
import json
import shlex
import sys
from pathlib import Path

import torch

from ..benchmarks.output import check_output
from ..benchmarks.toy_quality import (Method, evaluate, held_out_detections, pick_captions, plain_method, real_method,
                                      teacher_method, tmd_method)
from ..tmd_core.checkpoint import load_student
from ..tmd_core.command_line import argument_parser, run_command
from ..tmd_core.safe_files import atomic_path
from ..tmd_core.wan_loading import load_wan
from ..toy import checkpoints
from ..toy.cli import TEACHER_CFG
from . import toy_world
from .ablation_report import SUFFIXES, write_report
from .ablation_rows import ROWS, Row, select_rows
from .ablation_runs import Setting, StageRun, file_digest, plan_runs, train_runs
from .errors import TrainingConfigError
from .models import HEAD_FILE, STUDENT_FILE

DOCS = Path(__file__).resolve().parents[1] / "docs"
DOCS_STEM, OUT_STEM = "toy-ablation", "ablation"


def row_method(row: Row, run: StageRun | None, teacher: Path, args: argparse.Namespace) -> Method:
    """The sampler a row is measured with: its trained export at the M it was trained for, or the teacher."""
    if row.kind == "teacher":
        method = teacher_method(load_wan(teacher, dtype=torch.float32), row.steps, args.cfg, args.shift)
    elif row.kind == "dmd2v":
        method = plain_method(load_wan(run.export / STUDENT_FILE, dtype=torch.float32), run.config.model.outer_steps)
    else:
        student, meta = load_student(run.export / STUDENT_FILE, run.export / HEAD_FILE, dtype=torch.float32)
        method = tmd_method(student, meta, meta.outer_steps)
    return dataclasses.replace(method, name=row.title)


def measured(name: str, key: dict, make_method, captions: list[str], seeds: int, held_out: list,
             folder: Path) -> dict:
    """The metrics of one row, from <folder>/<name>.json when an earlier run measured the same thing."""
    digest = hashlib.sha256(json.dumps(key, sort_keys=True).encode()).hexdigest()[:12]
    path = folder / f"{name}.json"
    if path.is_file():
        saved = json.loads(path.read_text())
        if saved.get("key") == digest:
            print(f"{name}: measured earlier, reusing {path}")
            return saved["result"]
    print(f"{name}: measuring {len(captions) * seeds} clips")
    result, _ = evaluate(make_method(), captions, seeds, held_out)
    folder.mkdir(parents=True, exist_ok=True)
    with atomic_path(path) as tmp:
        tmp.write_text(json.dumps({"key": digest, "result": result}) + "\n")
    return result


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argument_parser(__doc__.split("\n\n")[0])
    parser.add_argument("--out", type=Path, default=Path("runs/ablation"), help="folder for data, runs and results")
    parser.add_argument("--teacher", type=Path, default=checkpoints.TEACHER, help="the teacher every row starts from")
    parser.add_argument("--clips", type=int, default=256, help="clips measured per row (--prompts × seeds)")
    parser.add_argument("--prompts", type=int, default=16, help="captions cycling colour, shape and direction")
    parser.add_argument("--rows", help=f"comma-separated rows to run (default: all): {', '.join(r.name for r in ROWS)}")
    parser.add_argument("--budget-scale", type=float, default=1.0, help="multiplies every stage's planned iterations")
    parser.add_argument("--train-clips", type=int, default=toy_world.CLIPS, help="real clips in the training data")
    parser.add_argument("--stop-after", type=int, help="train at most this many runs, then stop (rerun to continue)")
    parser.add_argument("--cfg", type=float, default=TEACHER_CFG, help="the teacher rows' CFG scale")
    parser.add_argument("--shift", type=float, default=5.0, help="the teacher rows' schedule shift")
    parser.add_argument("--docs", action="store_true", help=f"also write docs/{DOCS_STEM}.md, .json and .png")
    parser.add_argument("--force", action="store_true", help="allow replacing the committed docs/ results")
    args = parser.parse_args(argv)
    args.command = shlex.join(sys.argv[1:] if argv is None else argv)
    args.rows = None if args.rows is None else args.rows.split(",")
    select_rows(args.rows)  # refuses an unknown row before any work
    if not args.budget_scale > 0:
        raise TrainingConfigError(f"--budget-scale {args.budget_scale:g} must be above 0 (it multiplies iterations).")
    if not 1 <= args.prompts <= 48:
        raise TrainingConfigError(f"--prompts {args.prompts} must lie in 1..48 (the toy world has 48 captions).")
    if args.clips % args.prompts or args.clips // args.prompts < 2:
        raise TrainingConfigError(f"--clips {args.clips} must be a multiple of --prompts {args.prompts} with at least "
                                  "2 seeds a prompt (the mode-collapse index compares clips in pairs).")
    if args.train_clips < 1:
        raise TrainingConfigError(f"--train-clips {args.train_clips} must be at least 1.")
    if args.stop_after is not None and args.stop_after < 0:
        raise TrainingConfigError(f"--stop-after {args.stop_after} must be at least 0 (training runs this session).")
    check_output([args.out / f"{OUT_STEM}{suffix}" for suffix in SUFFIXES], args.force)
    if args.docs:
        check_output([DOCS / f"{DOCS_STEM}{suffix}" for suffix in SUFFIXES], args.force, published=DOCS)
    return args


def main(argv: list[str] | None = None) -> dict | None:
    """Train what is missing, measure every row, write the report; None when --stop-after stopped the training."""
    args = parse_args(argv)
    rows = select_rows(args.rows)
    teacher = checkpoints.require(args.teacher)
    trains = any(row.kind != "teacher" for row in rows)
    shards = toy_world.make_data(args.out / f"data-{args.train_clips}", args.train_clips) if trains else []
    setting = Setting(teacher, file_digest(teacher), shards, args.train_clips, args.budget_scale, args.out / "runs")
    runs, chains = plan_runs(rows, setting)
    counts = ", ".join(f"{sum(run.stage == stage for run in runs)} {name}"
                       for stage, name in (("1", "stage 1"), ("2", "stage 2"), ("dmd2v", "DMD2-v")))
    print(f"{len(rows)} rows, {len(runs)} training runs ({counts}), "
          f"{sum(run.done for run in runs)} finished earlier")
    if not train_runs(runs, args.stop_after):
        return None

    captions, seeds = pick_captions(args.prompts), args.clips // args.prompts
    held_out = held_out_detections(captions)
    folder = args.out / "measured"
    results = [measured("real", {"prompts": args.prompts, "seeds": seeds}, real_method, captions, seeds, held_out,
                        folder)]
    for row in rows:
        chain = chains[row.name]
        source = chain[-1].key if chain else {"teacher": setting.teacher_digest, "steps": row.steps, "cfg": args.cfg,
                                              "shift": args.shift}
        key = {"source": source, "prompts": args.prompts, "seeds": seeds}
        result = measured(row.name, key, lambda row=row, chain=chain: row_method(
            row, chain[-1] if chain else None, teacher, args), captions, seeds, held_out, folder)
        results.append({**result, "row": row.name, "runs": [run.key for run in chain]})

    report = {"setting": {"command": args.command, "teacher": str(teacher), "teacher_sha256": setting.teacher_digest,
                          "budget_scale": args.budget_scale, "train_clips": args.train_clips, "clips": args.clips,
                          "prompts": args.prompts, "cfg": args.cfg, "shift": args.shift,
                          "rows": [dataclasses.asdict(row) for row in rows]},
              "captions": captions, "results": results, "runs": [run.record() for run in runs]}
    written = write_report(report, args.out, OUT_STEM)
    if args.docs:
        written += write_report(report, DOCS, DOCS_STEM)
    print((args.out / f"{OUT_STEM}.md").read_text(encoding="utf-8"))
    print("wrote " + ", ".join(str(path) for path in written))
    return report


if __name__ == "__main__":
    raise SystemExit(run_command(main))
