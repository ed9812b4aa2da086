# SPDX-License-Identifier: Apache-2.0
"""Train the toy world's checkpoints end to end with the real training code (docs/method.md §8).

    python -m comfyui_tmd.training.toy_world --out runs/toy [--scale 1.0] [--install]

1. data: real toy clips (every caption, random positions, sizes, speeds), encoded with the toy latent
   format and the toy text encoder, written as training shards;
2. `fm`: the flow-matching teacher (a random tiny Wan trained on those clips with condition dropout);
3. `1` then `2`: the TMD student — TM-MeanFlow from the teacher, then DMD2-v with flow-head rollout;
4. `dmd2v`: the plain DMD2-v baseline (no flow head, M steps) from the same teacher.
Each stage resumes from its own checkpoints when run again, so a killed run loses at most one checkpoint
interval. `--install` copies the exports, in float16, to toy/checkpoints/ under the names the CLI, the
quality benchmark and the toy workflow use. `--scale` multiplies every stage's iterations (smoke runs).
"""
from __future__ import annotations

import argparse
import time
from pathlib import Path

import torch

from ..tmd_core.checkpoint import load_student, save_student
from ..tmd_core.command_line import argument_parser, run_command
from ..tmd_core.wan_loading import load_wan, save_wan
from ..toy import checkpoints
from ..toy.clips import make_clips
from ..toy.latent import encode
from ..toy.text import NEGATIVE_PROMPT, encode_caption, encode_captions
from .config import PLAN_KEY, TrainConfig, load_config, read_yaml
from .errors import TrainingConfigError
from .models import HEAD_FILE, STUDENT_FILE
from .shards import write_shard
from .trainer import Trainer

CONFIG = Path(__file__).resolve().parent / "configs" / "toy.yaml"
CLIPS, CLIPS_PER_SHARD, DATA_SEED = 8192, 256, 1234


def load_plan(path: Path) -> dict[str, dict]:
    """The config's `plan`: stage -> {iterations, init_from}, in the order the stages run."""
    plan = read_yaml(path).get(PLAN_KEY)
    if not isinstance(plan, dict) or not plan:
        raise TrainingConfigError(f"{path} has no `{PLAN_KEY}` mapping of the toy world's stages.")
    for stage, step in plan.items():
        if not isinstance(step, dict) or not isinstance(step.get("iterations"), int) or step["iterations"] < 1:
            raise TrainingConfigError(f"{path}: {PLAN_KEY}.{stage} needs a whole number of iterations ≥ 1, "
                                      f"got {step!r}.")
        if step.get("init_from") not in (None, *plan):
            raise TrainingConfigError(f"{path}: {PLAN_KEY}.{stage} starts from {step['init_from']!r}, "
                                      f"which is not a planned stage.")
    return plan


def make_data(folder: Path, count: int = CLIPS) -> list[str]:
    """Shards of `count` encoded real clips; written once (a finished shard set is reused)."""
    done = folder / "complete"
    if not done.exists():
        folder.mkdir(parents=True, exist_ok=True)
        negative = encode_caption(NEGATIVE_PROMPT)[None].half()  # [1, 16, 4096]
        for first in range(0, count, CLIPS_PER_SHARD):
            clips = make_clips(min(CLIPS_PER_SHARD, count - first), seed=DATA_SEED + first)
            latents = encode(torch.stack([clip.frames for clip in clips]))  # [n, 16, 1, 16, 16]
            captions = [clip.caption for clip in clips]
            write_shard(folder / f"clips_{first // CLIPS_PER_SHARD:03d}.safetensors", latents,
                        encode_captions(captions).half(), negative, captions, source="toy clips")
        done.write_text("ok\n")
    return [str(folder / "clips_*.safetensors")]


def stage_overrides(stage: str, shards: list[str], scale: float) -> dict:
    """What the pipeline sets for `stage` over the config: its data, the plan's iterations × `scale`, and a
    checkpoint interval scaled alike."""
    step = load_plan(CONFIG)[stage]
    return {"data.shards": shards, "run.iterations": max(1, round(step["iterations"] * scale)),
            "run.checkpoint_every": max(1, round(100 * scale))}


def train_stage(config: TrainConfig, stage: str, folder: Path) -> Path:
    """Train `stage` in `folder`, continuing from its newest checkpoint; returns its export folder."""
    trainer = Trainer(config, stage=stage, out=folder)
    trainer.resume()
    began = time.perf_counter()
    export = trainer.run()
    seconds = time.perf_counter() - began
    print(f"stage {stage}: {trainer.iteration} iterations, {seconds:.0f} s this session -> {export}")
    return export


def run_stage(stage: str, out: Path, shards: list[str], scale: float) -> Path:
    overrides = stage_overrides(stage, shards, scale)
    if stage != "fm":
        overrides["model.teacher"] = str(out / "fm" / "export" / STUDENT_FILE)
    init_from = load_plan(CONFIG)[stage].get("init_from")
    if init_from is not None:
        overrides["model.init_student"] = str(out / init_from / "export")
    return train_stage(load_config(CONFIG, overrides), stage, out / stage)


def install(out: Path, target: Path = checkpoints.CHECKPOINT_DIR) -> None:
    """The exports in float16 under the names of toy/checkpoints/ (the repository ships these files)."""
    target.mkdir(parents=True, exist_ok=True)
    save_wan(load_wan(out / "fm" / "export" / STUDENT_FILE, dtype=torch.float16), target / checkpoints.TEACHER.name)
    save_wan(load_wan(out / "dmd2v" / "export" / STUDENT_FILE, dtype=torch.float16),
             target / checkpoints.DMD2V_STUDENT.name)
    student, meta = load_student(out / "2" / "export" / STUDENT_FILE, out / "2" / "export" / HEAD_FILE,
                                 dtype=torch.float16)
    save_student(student, target / checkpoints.TMD_STUDENT.name, target / checkpoints.TMD_HEAD.name, meta)


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argument_parser(__doc__.split("\n\n")[0])
    parser.add_argument("--out", type=Path, default=Path("runs/toy"), help="folder for data, runs and exports")
    parser.add_argument("--scale", type=float, default=1.0, help="multiplies every stage's iterations")
    plan = load_plan(CONFIG)
    parser.add_argument("--stages", default=",".join(plan),
                        help="comma-separated stages to run, in order (the plan in training/configs/toy.yaml)")
    parser.add_argument("--clips", type=int, default=CLIPS, help="real clips in the training data")
    parser.add_argument("--install", nargs="?", const=checkpoints.CHECKPOINT_DIR, type=Path, metavar="FOLDER",
                        help="write the exports in float16 under the toy checkpoint names (default: toy/checkpoints/)")
    args = parser.parse_args(argv)
    args.stages = args.stages.split(",")
    unknown = [stage for stage in args.stages if stage not in plan]
    if unknown:  # checked before the data (hundreds of MB) is made
        raise TrainingConfigError(f"--stages {','.join(args.stages)} names unknown stage {unknown[0]!r}; the stages "
                                  f"are {', '.join(plan)}.")
    if not args.scale > 0:
        raise TrainingConfigError(f"--scale {args.scale:g} must be above 0 (it multiplies every stage's iterations).")
    if args.clips < 1:
        raise TrainingConfigError(f"--clips {args.clips} must be at least 1.")
    return args


def main(argv: list[str] | None = None) -> None:
    args = parse_args(argv)
    shards = make_data(args.out / "data", args.clips)
    for stage in args.stages:
        run_stage(stage, args.out, shards, args.scale)
    if args.install:
        install(args.out, args.install)
        print(f"installed the toy checkpoints in {args.install}")


if __name__ == "__main__":
    raise SystemExit(run_command(main))
