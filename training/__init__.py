# SPDX-License-Identifier: Apache-2.0
"""Offline training: TM-MeanFlow pretraining, DMD2-v distillation, export. Never imported by nodes/.

For scripts (as training/toy_world.py trains the toy world):

    from comfyui_tmd.training import Trainer, load_config
    config = load_config("training/configs/tiny.yaml", {"data.shards": ["toy/*.safetensors"]})
    Trainer(config, stage="fm", out="runs/teacher").run()      # flow-matching teacher
    # then stage "1" and "2" with model.teacher = the exported teacher, model.init_student = the stage-1 export

Stages: "1" TMMeanFlow, "2" TMDDistillation, "dmd2v" DMD2V (baseline), "fm" FlowMatching; a new algorithm
subclasses `Algorithm` and is added to `trainer.ALGORITHMS`.

The names below are imported on first use (PEP 562), so `python -m comfyui_tmd.training.<command>` runs its
command module once, not also as a side effect of importing the package.
"""
import importlib

_HOMES = {
    "ALGORITHMS": "trainer", "Algorithm": "algorithm", "DMD2V": "stage2", "FlowMatching": "flow_matching",
    "STAGES": "config", "ShardReader": "shards", "TMDDistillation": "stage2", "TMMeanFlow": "stage1",
    "TrainConfig": "config", "Trainer": "trainer", "config_from_dict": "config", "export_model": "export",
    "load_config": "config", "write_shard": "shards",
}
__all__ = sorted(_HOMES)


def __getattr__(name: str):
    if name not in _HOMES:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    return getattr(importlib.import_module(f".{_HOMES[name]}", __name__), name)
