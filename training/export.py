# SPDX-License-Identifier: Apache-2.0
"""Export a trained model to the pack's checkpoint format (tmd_core/checkpoint.py).

TMD stages (1, 2): `student.safetensors` (a Wan-format diffusion-model file: UNETLoader and
`tmd_core.load_wan` read it) plus `student_head.safetensors` (the flow-head extras with `tmd` metadata:
M, N, both γs, and what it was trained from); `tmd_core.load_student` loads the pair. The DMD2-v baseline
and the flow-matching teacher export only the Wan file (sample it with Euler on `tmd_sigmas(M)`).

    python -m comfyui_tmd.training.export --run runs/stage2 --out models/ [--dtype bf16]

exports the newest checkpoint of a run; the trainer also exports automatically at the end of a run.
When the run kept an EMA of the trained role (`optim.ema_decay`), the EMA weights are exported.
"""
from __future__ import annotations

import json
from pathlib import Path

import torch
from torch import nn

from ..tmd_core.checkpoint import FlowHeadMeta, save_student
from ..tmd_core.command_line import argument_parser, run_command
from ..tmd_core.safe_files import read_safetensors
from ..tmd_core.student import TMDStudent
from ..tmd_core.wan_config import WanConfig
from ..tmd_core.wan_loading import save_wan
from ..tmd_core.wan_model import WanDiT
from .checkpoints import latest_checkpoint
from .config import ModelConfig, TrainConfig, config_from_dict
from .errors import TrainingConfigError
from .models import HEAD_FILE, STUDENT_FILE, flow_head_spec

DTYPES = {"fp32": torch.float32, "bf16": torch.bfloat16, "fp16": torch.float16}
EXPORTED_ROLE = {"1": "student", "2": "student", "dmd2v": "student", "fm": "model", "kd": "student"}
STAGE_NAMES = {"1": "TM-MeanFlow stage 1", "2": "DMD2-v with flow-head rollout (TMD stage 2)",
               "dmd2v": "plain DMD2-v", "fm": "flow matching", "kd": "KD warm-up of one-step DMD2-v"}


def export_model(module: nn.Module, stage: str, config: TrainConfig, iterations: int, folder: Path,
                 dtype: torch.dtype = torch.float32) -> list[Path]:
    """Write the exported file(s) of a trained role into `folder`."""
    folder = Path(folder)
    module = module.to(dtype)
    origin = config.model.teacher or "a random " + config.model.wan
    ema = config.stage_optim(stage).ema_decay
    averaged = f", EMA {ema}" if ema is not None else ""
    trained_from = f"{STAGE_NAMES[stage]}, {iterations} iterations{averaged}, from {origin}"
    if isinstance(module, TMDStudent):
        m = config.model
        meta = FlowHeadMeta.describe_model(module.wan, module.extras.spec, outer_steps=m.outer_steps,
                                           inner_steps=m.inner_steps, outer_gamma=m.outer_gamma,
                                           inner_gamma=m.inner_gamma, inner_form=m.inner_form,
                                           trained_from=trained_from)
        return list(save_student(module, folder / STUDENT_FILE, folder / HEAD_FILE, meta))
    return [save_wan(module, folder / STUDENT_FILE, {"tmd_trained_from": trained_from})]


def module_from_checkpoint(checkpoint: Path) -> tuple[nn.Module, str, TrainConfig, int]:
    """(the exported role rebuilt with its trained weights, stage, config, iteration) of a checkpoint folder; the
    weights are the role's EMA where the checkpoint has one."""
    trainer = json.loads((checkpoint / "trainer.json").read_text())
    config, stage = config_from_dict(trainer["config"]), trainer["stage"]
    wan_config = trainer["wan_config"]
    role = EXPORTED_ROLE[stage]
    weights, _ = read_safetensors(checkpoint / f"{role}.safetensors")
    if (checkpoint / f"{role}.ema.safetensors").is_file():
        weights.update(read_safetensors(checkpoint / f"{role}.ema.safetensors")[0])
    wan_config = WanConfig(**{**wan_config, "patch_size": tuple(wan_config["patch_size"])})
    return exported_module(stage, wan_config, config.model, weights), stage, config, trainer["iteration"]


def exported_module(stage: str, wan_config: WanConfig, model: ModelConfig,
                    weights: dict[str, torch.Tensor]) -> nn.Module:
    """The exported role of `stage` on the CPU holding the full `weights`: a TMDStudent for stages 1 and 2, else a
    Wan (built on the meta device, so no random initialisation is computed only to be overwritten)."""
    with torch.device("meta"):
        wan = WanDiT(wan_config)
        module = TMDStudent.from_teacher(wan, flow_head_spec(model)) if stage in ("1", "2") else wan
    module = module.to_empty(device="cpu")
    module.load_state_dict(weights, strict=True)
    return module


def main(argv: list[str] | None = None) -> None:
    parser = argument_parser("Export the newest checkpoint of a training run to the pack's format.")
    parser.add_argument("--run", required=True, type=Path, help="the run's output folder (the trainer's --out)")
    parser.add_argument("--out", required=True, type=Path, help="folder for student(.safetensors, _head.safetensors)")
    parser.add_argument("--dtype", choices=sorted(DTYPES), default="bf16", help="weight dtype of the exported files")
    args = parser.parse_args(argv)
    checkpoint = latest_checkpoint(args.run / "checkpoints")
    if checkpoint is None:
        raise TrainingConfigError(f"{args.run} has no complete checkpoint to export.")
    module, stage, config, iteration = module_from_checkpoint(checkpoint)
    for path in export_model(module, stage, config, iteration, args.out, DTYPES[args.dtype]):
        print(f"wrote {path}")


if __name__ == "__main__":
    raise SystemExit(run_command(main))
