# SPDX-License-Identifier: Apache-2.0
"""Command line of the trainer.

    python -m comfyui_tmd.training.train --config training/configs/tiny.yaml --stage 1 --out runs/s1
    python -m comfyui_tmd.training.train --config ... --stage 2 --out runs/s2 --set model.init_student=runs/s1/export
    torchrun --nproc_per_node 8 -m comfyui_tmd.training.train --config training/configs/wan21_1_3b.yaml --stage 1 ...

Stages: 1 (TM-MeanFlow), 2 (DMD2-v with flow-head rollout), dmd2v (plain DMD2-v baseline), fm (flow-matching
teacher), kd (the one-step baseline's KD warm-up before dmd2v, on `make_data --pairs` shards). `--resume`
continues the newest checkpoint in --out; without it an --out that already holds checkpoints is refused, so a
typo never overwrites a run. `--set key=value` overrides a config entry
(the value is read as YAML: numbers, lists, null).
"""
from __future__ import annotations


from ..tmd_core.command_line import argument_parser, run_command
from .config import STAGES, load_config
from .distributed import shutdown
from .errors import TrainingConfigError
from .trainer import Trainer


def parse_overrides(items: list[str]) -> dict:
    import yaml

    overrides = {}
    for item in items:
        key, sep, value = item.partition("=")
        if not sep or "." not in key:
            raise TrainingConfigError(f"--set {item!r} is not of the form section.key=value.")
        overrides[key] = yaml.safe_load(value)
    return overrides


def main(argv: list[str] | None = None) -> None:
    parser = argument_parser("Train a TMD student (stage 1, 2), a DMD2-v baseline or a teacher.")
    parser.add_argument("--config", required=True, help="YAML config (training/configs/*.yaml)")
    parser.add_argument("--stage", required=True, choices=STAGES,
                        help="1 TM-MeanFlow, 2 TMD distillation, dmd2v the DMD2-v baseline, fm a flow-matching teacher")
    parser.add_argument("--out", required=True, help="output folder: checkpoints/, log.csv, loss_curve.png, export/")
    parser.add_argument("--resume", action="store_true", help="continue from the newest checkpoint in --out")
    parser.add_argument("--set", action="append", default=[], metavar="KEY=VALUE",
                        help="override a config entry, e.g. model.teacher=Wan2.1-T2V-14B/ (a Wan file, index JSON or "
                        "folder)")
    args = parser.parse_args(argv)
    config = load_config(args.config, parse_overrides(args.set))
    trainer = Trainer(config, args.stage, args.out)
    try:
        if trainer.has_checkpoints() and not args.resume:
            raise TrainingConfigError(f"{args.out} already holds checkpoints; pass --resume to continue it or choose "
                                      "another --out.")
        if args.resume:
            trainer.resume()
        folder = trainer.run()
        if trainer.env.is_main:
            print(f"done: exported to {folder}")
    finally:
        shutdown(trainer.env)


if __name__ == "__main__":
    raise SystemExit(run_command(main))
