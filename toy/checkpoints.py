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

# The command that makes them all (README, "The toy world"): data, teacher, TMD student, DMD2-v baseline.
_TRAIN = "python -m comfyui_tmd.training.toy_world --install"
MADE_BY = {path: _TRAIN for path in (TEACHER, TMD_STUDENT, TMD_HEAD, DMD2V_STUDENT)}


def require(path: str | Path) -> Path:
    """`path` if it exists (a file, or a folder such as a sharded Wan release); otherwise one sentence naming it
    and, for the toy world's own files, what makes it."""
    path = Path(path)
    if path.exists():
        return path
    made_by = MADE_BY.get(path.resolve())
    how = f"; make it with `{made_by}`" if made_by else ""
    raise CheckpointError(f"checkpoint {path} does not exist{how}.")
