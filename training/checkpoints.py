# SPDX-License-Identifier: Apache-2.0
"""Resumable training checkpoints: every trainable role, its optimiser and LR schedule, the data position
and each process's RNG, written so that a crash at any moment leaves the previous checkpoint intact.

Layout of `<out>/checkpoints/step-00000100/`:
    <role>.safetensors         full (unsharded) weights of a trainable role
    <role>.optim.safetensors   its AdamW state, one tensor per (parameter name, state key); the
                               param groups are JSON metadata (never a pickle)
    <role>.ema.safetensors     the EMA of the exported role's weights, when the stage keeps one
    rng.<rank>.safetensors     that process's generator states (the algorithm's, and torch's global ones)
    trainer.json               iteration, stage, config and its fingerprint, data position, LR schedules
A checkpoint is written into `.step-00000100.partial/` and renamed once complete, so every `step-*`
folder is whole; resume takes the newest and deletes leftover partial folders. Weights and optimiser
states are gathered to full tensors with torch.distributed.checkpoint's state-dict API, which works for
plain, DDP and FSDP2 modules alike, so a run may resume on a different number of GPUs (the RNG of a
rank that did not exist before starts from its seed).
"""
from __future__ import annotations

import dataclasses
import json
import os
import shutil
from pathlib import Path

import torch
from torch.distributed.checkpoint.state_dict import (StateDictOptions, get_model_state_dict, get_optimizer_state_dict,
                                                     set_model_state_dict, set_optimizer_state_dict)

from ..tmd_core.safe_files import read_safetensors, write_safetensors
from .algorithm import Algorithm
from .errors import TrainingConfigError

FORMAT = 1
_GATHER = StateDictOptions(full_state_dict=True, cpu_offload=True)
_SCATTER = StateDictOptions(full_state_dict=True)


def _flatten_optimizer(state: dict) -> tuple[dict[str, torch.Tensor], dict[str, str]]:
    tensors = {f"{name}::{key}": value for name, entry in state["state"].items() for key, value in entry.items()}
    return tensors, {"param_groups": json.dumps(state["param_groups"])}


def _unflatten_optimizer(tensors: dict[str, torch.Tensor], metadata: dict[str, str]) -> dict:
    state: dict[str, dict] = {}
    for flat, value in tensors.items():
        name, key = flat.split("::")
        state.setdefault(name, {})[key] = value
    groups = json.loads(metadata["param_groups"])
    for group in groups:
        if "betas" in group:
            group["betas"] = tuple(group["betas"])
    return {"state": state, "param_groups": groups}


def _config_difference(saved: dict, current: dict, prefix: str = "") -> str:
    """The first dotted key whose value differs, as 'key: saved vs current'."""
    for key in sorted(set(saved) | set(current)):
        a, b = saved.get(key), current.get(key)
        if isinstance(a, dict) and isinstance(b, dict):
            found = _config_difference(a, b, f"{prefix}{key}.")
            if found:
                return found
        elif a != b and not (isinstance(a, list) and isinstance(b, tuple) and a == list(b)):
            return f"{prefix}{key}: {a!r} vs {b!r}"
    return ""


def _rng_states(algo: Algorithm) -> dict[str, torch.Tensor]:
    """The algorithm's generator and torch's global generators (dropout) of this process."""
    states = {"algorithm": algo.rng.get_state(), "global_cpu": torch.get_rng_state()}
    if algo.env.device.type == "cuda":
        states["global_cuda"] = torch.cuda.get_rng_state(algo.env.device)
    return states


def checkpoint_folders(root: Path) -> list[Path]:
    return sorted(p for p in root.glob("step-*") if p.is_dir() and (p / "trainer.json").is_file())


def save_checkpoint(root: Path, algo: Algorithm, iteration: int, data_state: dict, keep: int) -> Path:
    """Write the checkpoint of `iteration` (every process calls this; rank 0 writes the shared files)."""
    env = algo.env
    final, partial = root / f"step-{iteration:08d}", root / f".step-{iteration:08d}.partial"
    if env.is_main:
        shutil.rmtree(partial, ignore_errors=True)
        partial.mkdir(parents=True)
    env.barrier()
    write_safetensors(_rng_states(algo), partial / f"rng.{env.rank}.safetensors")
    for name, module in algo.export_modules().items():  # gathering is collective: every rank takes part
        weights = get_model_state_dict(module, options=_GATHER)
        optim = get_optimizer_state_dict(module, algo.optimizers[name], options=_GATHER)
        if env.is_main:
            write_safetensors(weights, partial / f"{name}.safetensors")
            tensors, metadata = _flatten_optimizer(optim)
            write_safetensors(tensors, partial / f"{name}.optim.safetensors", metadata)
    if algo.ema is not None:
        average = algo.ema.state_dict()  # collective under FSDP2
        if env.is_main:
            write_safetensors(average, partial / f"{algo.exported_role}.ema.safetensors", algo.ema.metadata())
    if env.is_main:
        trainer = {"format": FORMAT, "iteration": iteration, "stage": algo.stage, "world": env.world,
                   "wan_config": dataclasses.asdict(algo.wan_config),
                   "fingerprint": algo.config.fingerprint(algo.stage), "config": algo.config.to_dict(),
                   "data": data_state, "schedulers": {n: s.state_dict() for n, s in algo.schedulers.items()}}
        (partial / "trainer.json").write_text(json.dumps(trainer, indent=1))
    env.barrier()
    if env.is_main:
        os.replace(partial, final)
        directory = os.open(root, os.O_RDONLY)
        try:
            os.fsync(directory)  # the rename itself survives a power cut
        finally:
            os.close(directory)
        for old in checkpoint_folders(root)[:-keep]:
            shutil.rmtree(old)
    env.barrier()
    return final


def latest_checkpoint(root: Path) -> Path | None:
    """The newest complete checkpoint; leftover partial folders of a killed save are deleted."""
    for partial in root.glob(".step-*.partial"):
        shutil.rmtree(partial, ignore_errors=True)
    folders = checkpoint_folders(root)
    return folders[-1] if folders else None


def load_checkpoint(folder: Path, algo: Algorithm) -> tuple[int, dict]:
    """Restore every role, optimiser, schedule and this rank's RNG; returns (iteration, data position)."""
    trainer = json.loads((folder / "trainer.json").read_text())
    if trainer.get("format") != FORMAT:
        raise TrainingConfigError(f"{folder} has checkpoint format {trainer.get('format')!r}, "
                                  f"this version reads {FORMAT}.")
    if trainer["stage"] != algo.stage:
        raise TrainingConfigError(f"{folder} is a stage {trainer['stage']} checkpoint, this run is stage {algo.stage}.")
    if trainer["fingerprint"] != algo.config.fingerprint(algo.stage):
        difference = _config_difference({k: v for k, v in trainer["config"].items() if k != "run"},
                                        {k: v for k, v in algo.config.to_dict().items() if k != "run"})
        difference = difference or f"run.seed: {trainer['config']['run']['seed']} vs {algo.config.run.seed}"
        raise TrainingConfigError(f"{folder} was made with a different config ({difference}); resume with the same "
                                  "config or start a new output folder.")
    for name, module in algo.export_modules().items():
        weights, _ = read_safetensors(folder / f"{name}.safetensors")
        set_model_state_dict(module, weights, options=_SCATTER)
        optim = _unflatten_optimizer(*read_safetensors(folder / f"{name}.optim.safetensors"))
        set_optimizer_state_dict(module, algo.optimizers[name], optim, options=_SCATTER)
        algo.schedulers[name].load_state_dict(trainer["schedulers"][name])
    if algo.ema is not None:
        algo.ema.load_state_dict(*read_safetensors(folder / f"{algo.exported_role}.ema.safetensors"))
    rng_file = folder / f"rng.{algo.env.rank}.safetensors"
    if rng_file.is_file():
        states, _ = read_safetensors(rng_file)
        algo.rng.set_state(states["algorithm"])
        torch.set_rng_state(states["global_cpu"])
        if "global_cuda" in states and algo.env.device.type == "cuda":
            torch.cuda.set_rng_state(states["global_cuda"], algo.env.device)
    return trainer["iteration"], trainer["data"]
