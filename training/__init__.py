# SPDX-License-Identifier: Apache-2.0
"""Offline training: TM-MeanFlow pretraining, DMD2-v distillation, export. Never imported by nodes/.

For scripts (as training/toy_world.py trains the toy world):

    from comfyui_tmd.training import Trainer, load_config
    config = load_config("training/configs/tiny.yaml", {"data.shards": ["toy/*.safetensors"]})
    Trainer(config, stage="fm", out="runs/teacher").run()      # flow-matching teacher
    # then stage "1" and "2" with model.teacher = the exported teacher, model.init_student = the stage-1 export

Stages: "1" TMMeanFlow, "2" TMDDistillation, "dmd2v" DMD2V (baseline), "fm" FlowMatching; a new algorithm
subclasses `Algorithm` and is added to `trainer.ALGORITHMS`.
"""
from .algorithm import Algorithm
from .config import STAGES, TrainConfig, config_from_dict, load_config
from .export import export_model
from .flow_matching import FlowMatching
from .shards import ShardReader, write_shard
from .stage1 import TMMeanFlow
from .stage2 import DMD2V, TMDDistillation
from .trainer import ALGORITHMS, Trainer

__all__ = [
    "ALGORITHMS", "Algorithm", "DMD2V", "FlowMatching", "STAGES", "ShardReader", "TMDDistillation", "TMMeanFlow",
    "TrainConfig", "Trainer", "config_from_dict", "export_model", "load_config", "write_shard",
]
