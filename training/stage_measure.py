# SPDX-License-Identifier: Apache-2.0
"""A few iterations of a training stage with its peak memory and the seconds of each step measured.

The trainer's own loop runs unchanged (`Trainer.run`); only the algorithm's step is wrapped to time it
(with the device synchronised) and to read the meter after it. The peak is read after the last step, so
the checkpoint and export that follow a complete run are not in it.
"""
from __future__ import annotations

import dataclasses
import statistics
import time
from pathlib import Path

import torch

from .config import TrainConfig
from .peak_memory import memory_meter
from .trainer import Trainer


def training_device() -> torch.device:
    """The device a single-process run trains on (the choice `distributed.setup_env` makes)."""
    return torch.device("cuda", 0) if torch.cuda.is_available() else torch.device("cpu")


def synchronize(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


@dataclasses.dataclass
class StageMeasurement:
    stage: str
    roles: list[str]  # trainable roles, then the frozen ones marked "(frozen)"
    peak_bytes: int  # from before the roles were built to the end of the last step
    setup_bytes: int  # live once the roles were built: weights (and the frozen teacher)
    state_bytes: int  # most live after a step: weights, optimiser moments, the last step's gradients
    steps: list[tuple[int, float]]  # (iteration, seconds)
    export: Path | None  # the export folder when the run reached run.iterations

    def seconds_per_iteration(self, every: int = 1) -> float:
        """Median seconds of the iterations after the first (which pays for lazy set-up). With `every` > 1
        (stage 2: the student steps on iterations k·every, the critics on the others) the two kinds are
        timed apart and weighted by their shares, 1/every and (every − 1)/every."""
        later = self.steps[1:] or self.steps
        student = [s for k, s in later if every > 1 and k % every == 0]
        critic = [s for k, s in later if not (every > 1 and k % every == 0)]
        if not student or not critic:
            return statistics.median(s for _, s in later)
        return (statistics.median(student) + (every - 1) * statistics.median(critic)) / every


def measure_stage(config: TrainConfig, stage: str, out: Path, iterations: int) -> StageMeasurement:
    """Run `stage` of `config` for `iterations` iterations into `out` (exporting when that is the config's
    run.iterations) and measure it on the training device."""
    device = training_device()
    with memory_meter(device) as meter:
        trainer = Trainer(config, stage, out)
        algo = trainer.algo
        frozen = [f"{name} (frozen)" for name in algo._modules if name not in algo.trainable]
        measured = StageMeasurement(stage, algo.trainable + frozen, 0, meter.live_bytes, 0, [], None)
        step = algo.step

        def timed_step(batch: dict[str, torch.Tensor], iteration: int) -> dict[str, float]:
            start = time.perf_counter()
            values = step(batch, iteration)
            synchronize(device)
            measured.steps.append((iteration, time.perf_counter() - start))
            measured.state_bytes = max(measured.state_bytes, meter.live_bytes)
            measured.peak_bytes = meter.peak_bytes
            return values

        algo.step = timed_step  # an instance attribute: the trainer calls it in place of the class's step
        try:
            measured.export = trainer.run(until=iterations)
        finally:
            del algo.step  # breaks the cycle algo -> timed_step -> algo, so the roles' memory goes with the trainer
    return measured
