# SPDX-License-Identifier: Apache-2.0
"""The training loop shared by every algorithm: data, steps, logs, atomic checkpoints, resume, export.

    trainer = Trainer(config, stage="1", out="runs/stage1")
    trainer.resume()          # continue from the newest checkpoint in out/checkpoints, if any
    trainer.run()             # to config.run.iterations (or trainer.run(until=k) to stop early)

Iterations count from 1. After iteration k the trainer logs it, checkpoints when k is a multiple of
`checkpoint_every` or the last one, samples the validation prompts when `validation.every` asks
(training/validation.py), and at the end exports the trained role to out/export. A run
restarted with `resume()` continues from the newest complete checkpoint with the same parameters,
optimiser moments, LR schedules, data position and RNG state as if it had never stopped.
"""
from __future__ import annotations

from pathlib import Path

from .algorithm import Algorithm
from .checkpoints import checkpoint_folders, latest_checkpoint, load_checkpoint, save_checkpoint
from .config import STAGES, TrainConfig
from .distributed import Env, setup_env
from .errors import TrainingConfigError
from .export import export_model, module_from_checkpoint
from .flow_matching import FlowMatching
from .kd import KDWarmup
from .run_log import RunLog
from .shards import ShardReader
from .stage1 import TMMeanFlow
from .stage2 import DMD2V, TMDDistillation
from .validation import Validation

ALGORITHMS: dict[str, type[Algorithm]] = {"1": TMMeanFlow, "2": TMDDistillation, "dmd2v": DMD2V, "fm": FlowMatching,
                                          "kd": KDWarmup}


class Trainer:
    def __init__(self, config: TrainConfig, stage: str, out: str | Path, env: Env | None = None):
        if stage not in STAGES:
            raise TrainingConfigError(f"stage {stage!r} is unknown; expected one of {', '.join(STAGES)}.")
        run = config.run
        self.config, self.out = config, Path(out)
        self.env = env or setup_env(run.distributed, run.precision, run.activation_checkpointing)
        self.algo = ALGORITHMS[stage](config, self.env)
        self.data = ShardReader(config.data.shards, config.data.batch_size, self.env.rank, self.env.world, run.seed,
                                config.data.latent_shape, config.data.text_len)
        self.checkpoints = self.out / "checkpoints"
        self.iteration = 0
        self.log = RunLog(self.out, self.algo.log_keys, run.iterations, enabled=self.env.is_main)
        self.validation = Validation(config, self.out, self.env, self.log.tensorboard)

    def has_checkpoints(self) -> bool:
        return bool(checkpoint_folders(self.checkpoints))

    def resume(self) -> int:
        """Load the newest complete checkpoint, if there is one; returns the iteration it continues after."""
        folder = latest_checkpoint(self.checkpoints)
        if folder is not None:
            self.iteration, data_state = load_checkpoint(folder, self.algo)
            self.data.load_state_dict(data_state)
            if self.env.is_main:
                print(f"resumed from {folder} (iteration {self.iteration})")
        return self.iteration

    def checkpoint(self) -> Path:
        return save_checkpoint(self.checkpoints, self.algo, self.iteration, self.data.state_dict(),
                               self.config.run.keep_checkpoints)

    def run(self, until: int | None = None) -> Path | None:
        """Train to iteration `until` (default: the config's total); at the total, export and draw the curves.
        Returns the export folder once the run is complete, None when it stopped early."""
        run = self.config.run
        until = run.iterations if until is None else min(until, run.iterations)
        self.log.start(self.iteration)
        lr_role = self.algo.trainable[0]
        while self.iteration < until:
            self.iteration += 1
            values = self.algo.step(self.data.next_batch(), self.iteration)
            if self.iteration % run.log_every == 0 or self.iteration == until:
                self.log.log(self.iteration, values, self.algo.schedulers[lr_role].get_last_lr()[0])
            if self.iteration % run.checkpoint_every == 0 or self.iteration == run.iterations:
                self.checkpoint()
            if self.validation.due(self.iteration):
                self.validation.run(self.algo, self.iteration)
        if self.iteration < run.iterations:
            return None
        return self.finish()

    def finish(self) -> Path:
        """Export the trained role to out/export and draw the loss curves (main process).

        The export reads the final checkpoint, which holds the full weights whatever the strategy, so no
        process has to gather FSDP2 shards a second time.
        """
        folder = self.out / "export"
        self.log.close()
        if self.env.is_main:
            module, stage, config, iteration = module_from_checkpoint(latest_checkpoint(self.checkpoints))
            export_model(module, stage, config, iteration, folder)
        self.env.barrier()
        return folder
