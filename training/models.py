# SPDX-License-Identifier: Apache-2.0
"""Building the models a run starts from: the frozen teacher and trainable copies of it (student, fake score).

Trainable roles keep float32 master weights (bf16 compute comes from autocast or FSDP2's policy); the
frozen teacher is held in bf16 on CUDA with precision bf16, float32 otherwise.
"""
from __future__ import annotations

import copy
from pathlib import Path

import torch

from ..tmd_core.checkpoint import load_student
from ..tmd_core.flow_head import FlowHeadSpec
from ..tmd_core.student import TMDStudent
from ..tmd_core.wan_config import NAMED_CONFIGS
from ..tmd_core.wan_loading import load_wan
from ..tmd_core.wan_model import WanDiT
from .config import ModelConfig
from .errors import TrainingConfigError

STUDENT_FILE = "student.safetensors"
HEAD_FILE = "student_head.safetensors"


def load_teacher(model: ModelConfig, device: torch.device, dtype: torch.dtype) -> WanDiT:
    """The teacher from `model.teacher`, which must be the `model.wan` size; without a file, a random
    `model.wan` seeded by `model.teacher_seed` (for smoke runs only: nothing can be learnt from it)."""
    config = NAMED_CONFIGS.get(model.wan)
    if model.teacher is not None:
        wan = load_wan(model.teacher, dtype=torch.float32, device="cpu", expect=config)
    else:
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(model.teacher_seed)
            wan = WanDiT(config)
    wan = wan.to(device=device, dtype=dtype).eval()
    return wan.requires_grad_(False)


def trainable_copy(wan: WanDiT) -> WanDiT:
    """A float32 trainable copy (the teacher itself is never modified)."""
    return copy.deepcopy(wan).float().train().requires_grad_(True)


def flow_head_spec(model: ModelConfig) -> FlowHeadSpec:
    return FlowHeadSpec(head_blocks=model.head_blocks, fusion=model.fusion)


def initial_student(model: ModelConfig, teacher: WanDiT) -> TMDStudent:
    """The TMD student: from an exported stage-1 student (`init_student`) or, without one, a fresh split of the
    teacher."""
    if model.init_student is None:
        return TMDStudent.from_teacher(trainable_copy(teacher), flow_head_spec(model)).train()
    folder = Path(model.init_student)
    student, meta = load_student(folder / STUDENT_FILE, folder / HEAD_FILE, dtype=torch.float32,
                                 device=str(teacher.patch_embedding.weight.device))
    if meta.spec != flow_head_spec(model):
        raise TrainingConfigError(f"{folder / HEAD_FILE} holds a head {meta.spec}, the config asks for "
                                  f"{flow_head_spec(model)}.")
    if meta.inner_form != model.inner_form:
        raise TrainingConfigError(f"{folder / HEAD_FILE} was trained with inner form {meta.inner_form!r}, the config "
                                  f"asks for {model.inner_form!r}.")
    if student.wan.config != teacher.config:
        raise TrainingConfigError(f"{folder / STUDENT_FILE} holds a {student.wan.config.describe()}, the teacher is a "
                                  f"{teacher.config.describe()}.")
    return student.train().requires_grad_(True)


def initial_wan_student(model: ModelConfig, teacher: WanDiT) -> WanDiT:
    """A plain Wan student (DMD2-v baseline, flow-matching teacher): from `init_student` or a copy of the teacher."""
    if model.init_student is None:
        return trainable_copy(teacher)
    wan = load_wan(Path(model.init_student) / STUDENT_FILE, dtype=torch.float32, expect=teacher.config)
    return wan.to(teacher.patch_embedding.weight.device).train().requires_grad_(True)


def wan_velocity(wan: WanDiT, x_t: torch.Tensor, t: torch.Tensor, context: torch.Tensor) -> torch.Tensor:
    """v(x_t, t) = noise − data of a Wan at times t [B] in [0, 1] (the DiT takes 1000·t)."""
    return wan(x_t, 1000.0 * t, context)
