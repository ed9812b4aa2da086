# SPDX-License-Identifier: Apache-2.0
"""The first GPU hour before a multi-day run: every step of the pipeline, a few iterations each, on the real
teacher at a small latent, with each stage's peak memory and speed measured and projected to the configured run.

    python -m comfyui_tmd.training.smoke --config training/configs/wan21_1_3b.yaml --teacher wan.safetensors \\
        [--gpus 8 --gpu-gib 80 --latent 16,2,8,8 --iterations 3 --prompts prompts.safetensors --out runs/smoke
         --json smoke.json --set run.distributed=fsdp]

First it asks training/memory.py whether stages 1 and 2 of the configured run fit `--gpu-gib` per GPU on
`--gpus` GPUs at the configured micro-batch (data.micro_batch, else each process's whole share), and stops in
one sentence when one does not, naming the micro-batch that would fit if there is one. Then, in `--out` (or a
temporary folder): teacher data (make_data's generator, a few Euler steps, on `--prompts` or random Wan-shaped
contexts), stage 1, stage 2 from the stage-1 export, the export, and a TMD sample of it through the core
(`load_student` + `generate_tmd`), which must be finite. Measured per stage: peak memory above the stage's
start (CUDA: the allocator's peak; CPU: `peak_memory.StorageMeter`, whose per-op bookkeeping also slows
the CPU's s/it) and seconds per iteration (median after the first; stage 2 weighs its student and critic
steps 1 : every−1).

Projections (arithmetic, not measurements):
- memory: memory.py's weights + optimiser for the configured GPUs and strategy, plus the measured
  activations (peak − what stays live after a step) scaled by memory.py's activation model from the smoke's
  latent and batch to the configured latent and micro-batch;
- wall time: s/it × (dense FLOPs of a Wan forward at the configured tokens × each GPU's share of the batch) /
  (the same at the smoke's), × the configured iterations (the config's `plan`, else run.iterations). The FLOPs
  (benchmarks/flops.py) are linear in tokens for the projections and FFN and quadratic for self-attention.
  Communication, data loading and checkpoints are not in it; only a smoke run on the target GPU model gives a
  meaningful figure.
"""
from __future__ import annotations

import contextlib
import dataclasses
import tempfile
import time
from pathlib import Path

import torch

from ..benchmarks.flops import wan_forward
from ..tmd_core.checkpoint import load_student
from ..tmd_core.command_line import argument_parser, run_command
from ..tmd_core.errors import NonFiniteError
from ..tmd_core.safe_files import read_safetensors
from ..tmd_core.sampler import generate_tmd
from ..tmd_core.wan_config import NAMED_CONFIGS, WanConfig
from ..tmd_core.wan_loading import load_wan
from ..tmd_core.wan_model import pad_context
from .config import PLAN_KEY, TrainConfig, load_config, read_yaml
from .errors import ShardError, TrainingConfigError
from .make_data import generate_shards
from .memory import GIB, choose_micro_batch, estimate_memory, local_batch
from .memory_check import write_json
from .models import HEAD_FILE, STUDENT_FILE
from .peak_memory import memory_meter
from .stage_measure import StageMeasurement, measure_stage, synchronize, training_device
from .train import parse_overrides

TRAINED_STAGES = ("1", "2")
STRATEGY_NAMES = {"ddp": "DDP", "fsdp": "FSDP2"}
RESERVE_GIB = 4.0  # CUDA context and allocator slack, which memory.py leaves out


@dataclasses.dataclass
class Row:
    stage: str
    roles: str
    peak_gib: float
    seconds_per_iteration: float
    unit: str  # what one "iteration" is in this row
    projected_gib: float | None = None
    projected_hours: float | None = None


def parse_latent(text: str) -> tuple[int, int, int, int]:
    try:
        latent = tuple(int(v) for v in text.split(","))
    except ValueError:
        latent = ()
    if len(latent) != 4 or min(latent) < 1 or latent[2] % 2 or latent[3] % 2:
        raise TrainingConfigError(f"--latent {text!r} must be four positive numbers C,T,H,W with even H and W.")
    return latent


def configured_micro_batch(config: TrainConfig, gpus: int) -> int:
    """Samples each process runs at a time in the configured run (data.micro_batch, else its whole share)."""
    return config.data.micro_batch or local_batch(config, gpus)


def check_budget(config: TrainConfig, stage: str, gpus: int, gpu_gib: float) -> dict[str, float]:
    """memory.py's estimate of `stage` of the configured run at its micro-batch; one sentence when it does not fit
    `gpu_gib`, naming the micro-batch that would."""
    strategy, micro_batch = config.run.distributed, configured_micro_batch(config, gpus)
    estimate = estimate_memory(config, stage, gpus, strategy, micro_batch)
    if estimate["total"] + RESERVE_GIB > gpu_gib:
        fitting = choose_micro_batch(config, stage, gpus, strategy, gpu_gib, RESERVE_GIB)
        advice = (f"--set data.micro_batch={fitting} fits" if fitting else
                  "use more GPUs, FSDP2 (--set run.distributed=fsdp) or larger GPUs")
        raise TrainingConfigError(
            f"stage {stage} needs ~{estimate['total']:.3g} GiB per GPU at micro-batch {micro_batch} on {gpus} GPUs "
            f"with {STRATEGY_NAMES[strategy]}; it does not fit {gpu_gib:g} GiB (keeping {RESERVE_GIB:g} GiB for the "
            f"CUDA context): {advice}.")
    return estimate


def configured_iterations(config_path: Path, config: TrainConfig, stage: str) -> int:
    """Iterations of `stage` in the configured run: the config's plan, else run.iterations."""
    plan = read_yaml(config_path).get(PLAN_KEY) or {}
    return int(plan.get(stage, {}).get("iterations", config.run.iterations))


def prompt_contexts(path: Path | None, count: int, text_len: int) -> tuple[torch.Tensor, torch.Tensor, str]:
    """(context [count, L, 4096], negative [1, L, 4096], where they came from)."""
    if path is None:
        g = torch.Generator().manual_seed(0)
        return (torch.randn(count, text_len, 4096, generator=g), torch.randn(1, text_len, 4096, generator=g),
                f"random Wan-shaped contexts [{count}, {text_len}, 4096] (no --prompts: speed and memory only)")
    tensors, _ = read_safetensors(path)
    if "context" not in tensors or "negative_context" not in tensors:
        raise ShardError(f"{path} needs tensors 'context' and 'negative_context', it has {sorted(tensors)}.")
    context = tensors["context"][:count]
    if context.shape[0] < count:
        raise ShardError(f"{path} holds {context.shape[0]} prompts; the smoke needs {count} (--batch).")
    return context, tensors["negative_context"], f"the first {count} prompts of {path}"


def compute_dtype(config: TrainConfig) -> torch.dtype:
    """The weight dtype of the frozen teacher and of sampling: bf16 only on CUDA with precision bf16."""
    return torch.bfloat16 if training_device().type == "cuda" and config.run.precision == "bf16" else torch.float32


def measure_data(teacher_path: Path, config: TrainConfig, latent, context: torch.Tensor, negative: torch.Tensor,
                 steps: int, folder: Path) -> tuple[Row, WanConfig, int]:
    """Teacher samples of every context as one training shard; (row, the teacher's architecture, the shard's
    text length: the contexts padded as the teacher pads them)."""
    device = training_device()
    with memory_meter(device) as meter:
        teacher = load_wan(teacher_path, dtype=compute_dtype(config), device=str(device),
                           expect=NAMED_CONFIGS.get(config.model.wan))
        start = time.perf_counter()
        with torch.no_grad():
            generate_shards(teacher, context, negative, folder, latent, steps=steps, per_shard=context.shape[0])
        synchronize(device)
        seconds = (time.perf_counter() - start) / context.shape[0]
    row = Row("data", "teacher (frozen)", meter.peak_bytes / GIB, seconds, f"sample of {steps} CFG steps")
    return row, teacher.config, pad_context(context, teacher.text_len).shape[1]


def smoke_config(config: TrainConfig, teacher: Path, shards: Path, latent, batch: int, text_len: int,
                 stage: str, iterations: int, init_student: Path | None) -> TrainConfig:
    """The configured run shrunk to the smoke: its latent, batch, data, iterations; one checkpoint at the end."""
    precision = config.run.precision if training_device().type == "cuda" else "fp32"  # CPU runs fp32 anyway
    return dataclasses.replace(
        config,
        model=dataclasses.replace(config.model, teacher=str(teacher),
                                  init_student=str(init_student) if init_student else None),
        data=dataclasses.replace(config.data, shards=[str(shards / "*.safetensors")], batch_size=batch,
                                 micro_batch=None, latent_shape=list(latent), text_len=text_len),
        run=dataclasses.replace(config.run, iterations=iterations, checkpoint_every=iterations, keep_checkpoints=1,
                                log_every=1, precision=precision))


def forward_flops(wan: WanConfig, latent, text_len: int) -> int:
    c, t, h, w = latent
    return wan_forward(wan, t * (h // 2) * (w // 2), text_len)


def project(row: Row, measured: StageMeasurement, small: TrainConfig, config: TrainConfig, wan: WanConfig,
            gpus: int, iterations: int) -> Row:
    """Row with the projected memory per GPU and wall time of the configured stage (see the module docstring)."""
    strategy = config.run.distributed
    target = estimate_memory(config, measured.stage, gpus, strategy, configured_micro_batch(config, gpus))
    smoke = estimate_memory(small, measured.stage, 1, "ddp", wan=wan)
    activations = max(0, measured.peak_bytes - measured.state_bytes) / GIB
    row.projected_gib = target["weights"] + target["optimizer"] + activations * target["activations"] / \
        smoke["activations"]
    work = local_batch(config, gpus) * forward_flops(wan, config.data.latent_shape, config.data.text_len)
    smoke_work = small.data.batch_size * forward_flops(wan, small.data.latent_shape, small.data.text_len)
    row.projected_hours = row.seconds_per_iteration * work / smoke_work * iterations / 3600
    return row


def measure_sample(export: Path, config: TrainConfig, context: torch.Tensor, latent) -> tuple[Row, bool]:
    """A TMD sample of the export through the core; (row, whether every value is finite)."""
    device, dtype = training_device(), compute_dtype(config)
    m = config.model
    with memory_meter(device) as meter:
        student, meta = load_student(export / STUDENT_FILE, export / HEAD_FILE, dtype=dtype, device=str(device))
        start = time.perf_counter()
        with torch.no_grad():  # generate_tmd itself stops with NonFiniteError at the first non-finite step
            x = generate_tmd(student.eval(), context[:1].to(device, dtype), (1, *latent), seed=0,
                             outer_steps=meta.outer_steps, inner_steps=meta.inner_steps,
                             outer_gamma=meta.outer_gamma, inner_gamma=meta.inner_gamma, disable=True,
                             inner_form=meta.inner_form)
        synchronize(device)
        seconds = time.perf_counter() - start
    label = f"sample, M = {m.outer_steps}, N = {m.inner_steps}"
    return Row("sample", "student (export)", meter.peak_bytes / GIB, seconds, label), bool(torch.isfinite(x).all())


def run_smoke(args) -> dict:
    config = load_config(args.config, parse_overrides(args.set))
    latent = parse_latent(args.latent)
    if args.gpus < 1 or args.batch < 1 or args.iterations < 2 or args.data_steps < 1:
        raise TrainingConfigError(f"--gpus {args.gpus} and --batch {args.batch} must be at least 1, --iterations "
                                  f"{args.iterations} at least 2 (the first is not timed), --data-steps at least 1.")
    budgets = {stage: check_budget(config, stage, args.gpus, args.gpu_gib) for stage in TRAINED_STAGES}
    with contextlib.ExitStack() as stack:
        out = args.out or Path(stack.enter_context(tempfile.TemporaryDirectory(prefix="tmd-smoke-")))
        context, negative, source = prompt_contexts(args.prompts, args.batch, config.data.text_len)
        print(f"prompts: {source}")
        data_row, wan, text_len = measure_data(args.teacher, config, latent, context, negative, args.data_steps,
                                               out / "data")
        rows, export, finite = [data_row], None, False
        for stage in TRAINED_STAGES:
            # stage 2 runs to its second student step, so both step kinds are timed and every moment exists
            every = config.stage2.student_update_every if stage == "2" else 1
            iterations = max(args.iterations, 2 * every) if every > 1 else args.iterations
            small = smoke_config(config, args.teacher, out / "data", latent, args.batch, text_len, stage, iterations,
                                 export)
            measured = measure_stage(small, stage, out / stage, iterations)
            export = measured.export
            row = Row(stage, ", ".join(measured.roles), measured.peak_bytes / GIB,
                      measured.seconds_per_iteration(every), "iteration")
            rows.append(project(row, measured, small, config, wan, args.gpus,
                                configured_iterations(args.config, config, stage)))
        sample_row, finite = measure_sample(export, config, context, latent)
        rows.append(sample_row)
    result = {"config": str(args.config), "teacher": str(args.teacher), "device": str(training_device()),
              "gpus": args.gpus, "gpu_gib": args.gpu_gib, "strategy": config.run.distributed,
              "smoke_latent": list(latent), "smoke_batch": args.batch, "prompts": source,
              "configured_latent": config.data.latent_shape, "configured_batch": config.data.batch_size,
              "estimates_gib": {stage: budgets[stage]["total"] for stage in TRAINED_STAGES},
              "export_finite": finite, "rows": [dataclasses.asdict(r) for r in rows]}
    if not finite:
        raise NonFiniteError("the exported student's sample has NaN or inf values.")
    return result


def format_table(result: dict) -> str:
    def cell(value, fmt):
        return "—" if value is None else format(value, fmt)

    gpus, strategy = result["gpus"], STRATEGY_NAMES[result["strategy"]]
    lines = [f"| stage | role(s) | peak memory measured (GiB) | s/it | projected memory per GPU (GiB) | "
             f"projected wall time (h, {gpus} GPUs) |", "|---|---|---|---|---|---|"]
    for r in result["rows"]:
        lines.append(f"| {r['stage']} | {r['roles']} | {r['peak_gib']:.3f} | {r['seconds_per_iteration']:.3f} per "
                     f"{r['unit']} | {cell(r['projected_gib'], '.1f')} | {cell(r['projected_hours'], '.1f')} |")
    lines.append(f"Measured on {result['device']} at latent {result['smoke_latent']}, batch {result['smoke_batch']}. "
                 f"Projected (arithmetic, not measured) to latent {result['configured_latent']}, global batch "
                 f"{result['configured_batch']} on {gpus} GPUs with {strategy}: memory = memory.py's weights and "
                 "optimiser + the measured activations scaled by its activation model; wall time = s/it scaled by "
                 "the Wan forward's FLOPs (linear in tokens, quadratic for self-attention) × the configured "
                 "iterations, without communication or data loading.")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> dict:
    parser = argument_parser(__doc__.split("\n\n")[0])
    parser.add_argument("--config", required=True, type=Path, help="the training config of the real run")
    parser.add_argument("--teacher", required=True, type=Path, help="the Wan teacher file (any file load_wan reads)")
    parser.add_argument("--gpus", type=int, default=8, help="GPUs of the real run")
    parser.add_argument("--gpu-gib", type=float, default=80.0, help="memory of one GPU")
    parser.add_argument("--latent", default="16,2,8,8", help="the smoke's latent C,T,H,W")
    parser.add_argument("--iterations", type=int, default=3, help="iterations per stage (stage 2: at least two "
                        "student steps)")
    parser.add_argument("--batch", type=int, default=1, help="samples per smoke iteration")
    parser.add_argument("--data-steps", type=int, default=4, help="teacher Euler steps per data sample")
    parser.add_argument("--prompts", type=Path, help="safetensors with context [P, L, 4096] and negative_context "
                        "(make_data's format); random Wan-shaped contexts without it")
    parser.add_argument("--out", type=Path, help="folder for data, runs and exports (default: a temporary folder)")
    parser.add_argument("--json", type=Path, help="write the result as JSON here")
    parser.add_argument("--set", action="append", default=[], metavar="KEY=VALUE",
                        help="override an entry of the configured run (as train.py's --set)")
    args = parser.parse_args(argv)
    result = run_smoke(args)
    print(format_table(result))
    if args.json:
        print(f"wrote {write_json(args.json, result)}")
    return result


if __name__ == "__main__":
    raise SystemExit(run_command(main))
