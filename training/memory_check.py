# SPDX-License-Identifier: Apache-2.0
"""training/memory.py's estimate against measured peak memory, per stage, on small random Wans on the CPU.

    python -m comfyui_tmd.training.memory_check --out runs/memory_check [--widths 128,256] [--layers 4]
        [--latent 16,4,16,16] [--batch 2] [--stages 1,2,dmd2v,fm]

Each stage runs a few real iterations (stage 2 and DMD2-v to their second student step, so the critic and
the student step both run with every role's optimiser moments alive) on a random Wan of each width
(head_dim 64, FFN 6·dim, about Wan 1.3B's 5.8; 1 head block), with activation checkpointing and
run.precision fp32 (the CPU has no bf16 autocast here, so the estimate is asked for fp32 too), in one
process, where DDP and FSDP2 agree. Memory is counted by `peak_memory.StorageMeter` from before the roles
are built to the end of the last step.
Prints stage | width | measured | estimated | ratio and writes <out>/memory_check.json.
"""
from __future__ import annotations

import json
import tempfile
from pathlib import Path

import torch

from ..tmd_core.command_line import argument_parser, run_command
from ..tmd_core.safe_files import atomic_path
from ..tmd_core.wan_config import WanConfig
from ..tmd_core.wan_loading import save_wan
from ..tmd_core.wan_model import WanDiT
from .config import STAGES, TrainConfig, config_from_dict
from .errors import TrainingConfigError
from .memory import GIB, estimate_memory
from .shards import write_shard
from .stage_measure import measure_stage

HEAD_DIM, FFN_RATIO, TEXT_LEN = 64, 6, 8
CHECKED_STAGES = ("1", "2", "dmd2v", "fm")


def small_wan(dim: int, layers: int) -> WanConfig:
    return WanConfig(dim=dim, ffn_dim=FFN_RATIO * dim, num_heads=dim // HEAD_DIM, num_layers=layers)


def write_json(path: Path, data: dict) -> Path:
    """`data` as indented JSON, written atomically into a folder made if needed."""
    path.parent.mkdir(parents=True, exist_ok=True)
    with atomic_path(path) as tmp:
        tmp.write_text(json.dumps(data, indent=2) + "\n")
    return path


def check_config(teacher: Path, shard: Path, latent: list[int], batch: int) -> TrainConfig:
    """A run of the small teacher with the model's assumptions: every block checkpointed, one process."""
    return config_from_dict({
        "model": {"teacher": str(teacher), "wan": None, "head_blocks": 1},
        "data": {"shards": [str(shard)], "batch_size": batch, "latent_shape": latent, "text_len": TEXT_LEN},
        "run": {"iterations": 1_000_000, "checkpoint_every": 1_000_000, "precision": "fp32",
                "activation_checkpointing": True},
    })


def iterations_for(config: TrainConfig, stage: str) -> int:
    """Two steps (a forward while the first step's gradients and moments are alive), or to stage 2's second
    student step (the first one made the student's moments; the second runs beside them and the critics')."""
    return 2 * config.stage2.student_update_every if stage in ("2", "dmd2v") else 2


def check_width(dim: int, layers: int, latent: list[int], batch: int, stages: list[str], scratch: Path) -> list[dict]:
    wan_config = small_wan(dim, layers)
    g = torch.Generator().manual_seed(dim)
    teacher = save_wan(WanDiT(wan_config), scratch / f"teacher_{dim}.safetensors")
    shard = write_shard(scratch / f"shard_{dim}.safetensors", torch.randn(batch, *latent, generator=g),
                        torch.randn(batch, TEXT_LEN, 4096, generator=g), torch.randn(1, TEXT_LEN, 4096, generator=g))
    config = check_config(teacher, shard, latent, batch)
    rows = []
    for stage in stages:
        measured = measure_stage(config, stage, scratch / f"{stage}_{dim}", iterations_for(config, stage))
        estimate = estimate_memory(config, stage, 1, "ddp", wan=wan_config)
        rows.append({"stage": stage, "width": dim, "layers": layers, "latent": latent, "batch": batch,
                     "measured_gib": measured.peak_bytes / GIB, "estimated_gib": estimate["total"],
                     "ratio": estimate["total"] * GIB / measured.peak_bytes,
                     "measured_weights_gib": measured.setup_bytes / GIB,
                     "measured_after_step_gib": measured.state_bytes / GIB,
                     "measured_activations_gib": (measured.peak_bytes - measured.state_bytes) / GIB,
                     "estimated_parts_gib": {k: v for k, v in estimate.items() if k != "total"}})
    return rows


def format_table(rows: list[dict]) -> str:
    """Totals, then the activation part alone: the measured peak above what stays live after a step (weights,
    moments, gradients) against memory.py's activations."""
    lines = ["| stage | width | measured MiB | estimated MiB | ratio | activations measured | estimated | ratio |",
             "|---|---|---|---|---|---|---|---|"]
    for r in rows:
        act, est = r["measured_activations_gib"] * 1024, r["estimated_parts_gib"]["activations"] * 1024
        lines.append(f"| {r['stage']} | {r['width']} | {r['measured_gib'] * 1024:.1f} | "
                     f"{r['estimated_gib'] * 1024:.1f} | {r['ratio']:.2f} | {act:.1f} | {est:.1f} | {est / act:.2f} |")
    return "\n".join(lines)


def _ints(text: str, name: str) -> list[int]:
    try:
        return [int(v) for v in text.split(",")]
    except ValueError as err:
        raise TrainingConfigError(f"{name} {text!r} must be comma-separated whole numbers.") from err


def main(argv: list[str] | None = None) -> dict:
    parser = argument_parser(__doc__.split("\n\n")[0])
    parser.add_argument("--out", required=True, type=Path, help="folder for memory_check.json")
    parser.add_argument("--widths", default="128,256", help="Wan dims to check (multiples of 64)")
    parser.add_argument("--layers", type=int, default=4, help="Wan blocks")
    parser.add_argument("--latent", default="16,4,16,16", help="latent C,T,H,W")
    parser.add_argument("--batch", type=int, default=2, help="samples per step")
    parser.add_argument("--stages", default=",".join(CHECKED_STAGES), help="stages to check")
    args = parser.parse_args(argv)
    widths, latent, stages = _ints(args.widths, "--widths"), _ints(args.latent, "--latent"), args.stages.split(",")
    if any(w < HEAD_DIM or w % HEAD_DIM for w in widths):
        raise TrainingConfigError(f"--widths {args.widths} must be multiples of {HEAD_DIM}.")
    if len(latent) != 4 or latent[2] % 2 or latent[3] % 2:
        raise TrainingConfigError(f"--latent {args.latent} must be C,T,H,W with even H and W.")
    unknown = [s for s in stages if s not in STAGES or s == "kd"]
    if unknown:
        raise TrainingConfigError(f"--stages names {unknown[0]!r}; expected some of {', '.join(CHECKED_STAGES)}.")
    if args.layers < 2 or args.batch < 1:
        raise TrainingConfigError(f"--layers {args.layers} must be at least 2 and --batch {args.batch} at least 1.")
    with tempfile.TemporaryDirectory() as scratch:
        rows = [row for dim in widths for row in check_width(dim, args.layers, latent, args.batch, stages,
                                                            Path(scratch))]
    print(format_table(rows))
    result = {"rows": rows, "device": "cpu", "precision": "fp32", "activation_checkpointing": True}
    print(f"wrote {write_json(args.out / 'memory_check.json', result)}")
    return result


if __name__ == "__main__":
    raise SystemExit(run_command(main))
