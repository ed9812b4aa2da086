# SPDX-License-Identifier: Apache-2.0
"""The toy ablation's training runs: the stages every row needs, keyed by a hash of what affects them, so rows
that agree on a stage share one run, and each run trains once, resumably, in its own folder:

    <out>/runs/<stage>-<key>/   the trainer's folder (checkpoints/, log.csv, export/), and done.json once finished

A key covers the stage, the config sections its algorithm reads (model, data, its own stage section, the
run's length, seed and precision), the teacher file's content, the amount of training data and, for
stage 2, the key of the stage-1 run it starts from; no paths. Stage 1 reads model.inner_steps (its
discrete (s, r) scheme), so each N trains its own stage 1, while rows that change stage 2 only (rollout
gradients, GAN weight, EMA) share the default's. Each stage is trained by toy_world.train_stage, which
continues from the run's newest checkpoint.
"""
from __future__ import annotations

import dataclasses
import hashlib
import json
import time
from pathlib import Path

from ..tmd_core.safe_files import atomic_path
from . import toy_world
from .ablation_rows import Row
from .checkpoints import latest_checkpoint
from .config import TrainConfig, load_config

SECTION = {"1": "stage1", "2": "stage2", "dmd2v": "stage2"}  # the stage's own config section
FOLDER = {"1": "stage1", "2": "stage2", "dmd2v": "dmd2v"}
DESCRIPTION = {"1": "stage 1 (TM-MeanFlow)", "2": "stage 2 (DMD2-v with rollout)", "dmd2v": "plain DMD2-v"}
RUN_KEYS = ("iterations", "seed", "precision")  # the `run` settings that change the trained weights
DONE = "done.json"


@dataclasses.dataclass(frozen=True)
class Setting:
    """What every run of one ablation shares."""

    teacher: Path
    teacher_digest: str
    shards: list[str]
    train_clips: int
    budget_scale: float
    folder: Path  # <out>/runs


@dataclasses.dataclass
class StageRun:
    stage: str
    key: str
    config: TrainConfig
    folder: Path
    rows: list[str] = dataclasses.field(default_factory=list)  # the rows that use it

    @property
    def export(self) -> Path:
        return self.folder / "export"

    @property
    def done(self) -> bool:
        return (self.folder / DONE).is_file()

    def record(self) -> dict:
        """What the report lists about the run (done.json's contents once it finished)."""
        finished = json.loads((self.folder / DONE).read_text()) if self.done else {}
        return {"stage": self.stage, "key": self.key, "folder": self.folder.name, "rows": self.rows,
                "iterations": self.config.run.iterations, **finished}


def file_digest(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            digest.update(chunk)
    return digest.hexdigest()[:16]


def stage_key(config: TrainConfig, stage: str, setting: Setting, init_key: str | None) -> str:
    values = config.to_dict()
    frozen = {"stage": stage, "model": {**values["model"], "teacher": setting.teacher_digest, "init_student": init_key},
              "data": {**values["data"], "shards": f"{setting.train_clips} toy clips"},
              SECTION[stage]: values[SECTION[stage]], "run": {key: values["run"][key] for key in RUN_KEYS}}
    return hashlib.sha256(json.dumps(frozen, sort_keys=True).encode()).hexdigest()[:12]


def stages_of(row: Row) -> tuple[str, ...]:
    if row.kind == "tmd":
        return ("1", "2") if row.stage1 else ("2",)
    return ("dmd2v",) if row.kind == "dmd2v" else ()


def stage_run(row: Row, stage: str, init: StageRun | None, setting: Setting) -> StageRun:
    """The run of `stage` for `row`: toy.yaml with the plan's budget × the scale, the teacher, the run it starts
    from, and the row's overrides of the sections the stage reads."""
    reads = ("model.", "data.", "run.", SECTION[stage] + ".")
    overrides = {**toy_world.stage_overrides(stage, setting.shards, setting.budget_scale),
                 "model.teacher": str(setting.teacher),
                 "model.init_student": None if init is None else str(init.export),
                 **{key: value for key, value in row.overrides if key.startswith(reads)}}
    config = load_config(toy_world.CONFIG, overrides)
    key = stage_key(config, stage, setting, None if init is None else init.key)
    return StageRun(stage, key, config, setting.folder / f"{FOLDER[stage]}-{key}")


def plan_runs(rows: list[Row], setting: Setting) -> tuple[list[StageRun], dict[str, list[StageRun]]]:
    """(every distinct run, in training order: a stage 2 after the stage 1 it starts from; per row, its runs)."""
    runs: dict[str, StageRun] = {}
    chains: dict[str, list[StageRun]] = {}
    for row in rows:
        chain: list[StageRun] = []
        for stage in stages_of(row):
            run = stage_run(row, stage, chain[-1] if chain else None, setting)
            run = runs.setdefault(run.key, run)
            run.rows.append(row.name)
            chain.append(run)
        chains[row.name] = chain
    return list(runs.values()), chains


def train_runs(runs: list[StageRun], stop_after: int | None = None) -> bool:
    """Train every run not finished earlier, in order. Returns False when it stopped after `stop_after` trained
    runs with some left (a later call continues)."""
    trained = 0
    for number, run in enumerate(runs, 1):
        what = f"[{number}/{len(runs)}] {DESCRIPTION[run.stage]} for {', '.join(run.rows)}"
        if run.done:
            print(f"{what}: finished earlier, reusing {run.folder}")
            continue
        if stop_after is not None and trained >= stop_after:
            print(f"stopped after {trained} training run(s) as --stop-after asks; the same command continues.")
            return False
        checkpoint = latest_checkpoint(run.folder / "checkpoints")
        resumed_at = 0 if checkpoint is None else int(checkpoint.name.split("-")[1])
        print(f"{what}: {run.config.run.iterations} iterations in {run.folder}"
              + (f", continuing after iteration {resumed_at}" if resumed_at else ""))
        began = time.perf_counter()
        toy_world.train_stage(run.config, run.stage, run.folder)
        finished = {"seconds": round(time.perf_counter() - began, 1), "resumed_at": resumed_at}
        with atomic_path(run.folder / DONE) as tmp:
            tmp.write_text(json.dumps(finished) + "\n")
        trained += 1
    return True
