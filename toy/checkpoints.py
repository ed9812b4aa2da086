# SPDX-License-Identifier: Apache-2.0
"""Where the toy world's trained checkpoints live, and the one-sentence error when one is missing."""
from __future__ import annotations

from pathlib import Path

from ..tmd_core.errors import CheckpointError

CHECKPOINT_DIR = Path(__file__).resolve().parent / "checkpoints"
TEACHER = CHECKPOINT_DIR / "toy_teacher.safetensors"
TMD_STUDENT = CHECKPOINT_DIR / "toy_tmd_student.safetensors"
TMD_HEAD = CHECKPOINT_DIR / "toy_tmd_student_head.safetensors"
DMD2V_STUDENT = CHECKPOINT_DIR / "toy_dmd2v_student.safetensors"

# The command that makes each file (README, "The toy world"); keep in step with the toy training config.
_TRAIN = "python -m comfyui_tmd.training.train --config training/configs/toy.yaml"
MADE_BY = {
    TEACHER: f"{_TRAIN} --stage fm --out runs/toy-teacher",
    TMD_STUDENT: f"{_TRAIN} --stage 2 --out runs/toy-tmd (after --stage 1)",
    TMD_HEAD: f"{_TRAIN} --stage 2 --out runs/toy-tmd (after --stage 1)",
    DMD2V_STUDENT: f"{_TRAIN} --stage dmd2v --out runs/toy-dmd2v",
}


def require(path: str | Path) -> Path:
    """`path` if it exists; otherwise one sentence naming it and, for the toy world's own files, what makes it."""
    path = Path(path)
    if path.is_file():
        return path
    made_by = MADE_BY.get(path.resolve())
    how = f"; make it with `{made_by}`" if made_by else ""
    raise CheckpointError(f"checkpoint {path} does not exist{how}.")
