# SPDX-License-Identifier: Apache-2.0
"""Tiny random checkpoints in the toy world's file layout, for the CLI and benchmark tests (mechanics only)."""
from pathlib import Path

from comfyui_tmd.tmd_core import WAN_TINY, FlowHeadMeta, FlowHeadSpec, TMDStudent, save_student, save_wan

from factories import perturb_extras, random_wan


def write_toy_checkpoints(folder: Path) -> dict[str, Path]:
    """Teacher, TMD student (+ head, H = 1, trained M = N = 2) and DMD2-v student, each a random tiny Wan."""
    paths = {name: folder / f"{name}.safetensors" for name in ("teacher", "tmd", "tmd_head", "dmd2v")}
    save_wan(random_wan(WAN_TINY, seed=1), paths["teacher"])
    wan = random_wan(WAN_TINY, seed=2)
    student = perturb_extras(TMDStudent.from_teacher(wan, FlowHeadSpec(head_blocks=1)), seed=3)
    save_student(student, paths["tmd"], paths["tmd_head"],
                 FlowHeadMeta.describe_model(wan, student.extras.spec, outer_steps=2, inner_steps=2))
    save_wan(random_wan(WAN_TINY, seed=4), paths["dmd2v"])
    return paths
