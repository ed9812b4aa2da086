# SPDX-License-Identifier: Apache-2.0
"""Per-GPU memory estimate of a training config, so a user knows how many GPUs a stage needs.

An arithmetic model, not a measurement (parameter counts are exact, from the modules built on the meta
device). Per GPU, with the global batch split evenly and each process's share run in micro-batches
(`data.micro_batch`, gradient accumulation; by default the whole share at once):
- trainable roles: fp32 master weights + fp32 gradients + AdamW's two fp32 moments = 16 bytes/parameter;
- the frozen teacher: bf16, 2 bytes/parameter (4 with run.precision fp32, as activations);
  both divided by the number of GPUs under FSDP2, whole on every GPU under DDP;
- activations of one micro-batch with every Wan block checkpointed, bf16: each grad-carrying block pass keeps
  its input (tokens·dim), plus one block's recompute and backward working set (24·tokens·dim + 3·tokens·ffn:
  what one WanBlock keeps for backward, 21·dim + 2·ffn per token, with its output and backward's temporaries,
  counted by training/peak_memory.py); each grad-carrying flow-head call keeps its gated fusion's
  activations (6·tokens·dim + 2·tokens·ffn, counted the same way); stage 2 also keeps the discriminator's
  full-resolution Conv3D maps (20 maps of dim/4 channels per head) for backward, which are freed before any
  block is recomputed, and takes the larger of its student step and its critic step.
Grad-carrying block passes per sample: stage 1 L (backbone + head once); TMD student step (L − H) + N·H
plus the teacher up to the last feature block (the GAN gradient flows through it); fake-score step L.
Grad-carrying head calls: stage 1 one, stage 2 N (the rollout). `python -m comfyui_tmd.training.memory_check`
compares the result with measured peaks.
Not counted: the CUDA context and allocator slack (add ~3–5 GiB), the umT5 encoder and VAE (data is
pre-encoded), temporaries of the attention kernel.

`choose_micro_batch` picks the largest micro-batch that fits a GPU.

    python -m comfyui_tmd.training.memory                 # the table of the shipped configs, whole batches
    python -m comfyui_tmd.training.memory --gpu-gib 80    # the micro-batch that fits 80 GiB GPUs, per GPU count
"""
from __future__ import annotations

import dataclasses
import functools
from pathlib import Path

import torch

from ..tmd_core.command_line import argument_parser, run_command
from ..tmd_core.flow_head import FlowHeadExtras, FlowHeadSpec
from ..tmd_core.wan_config import NAMED_CONFIGS, WanConfig
from ..tmd_core.wan_model import WanDiT
from .config import TrainConfig, load_config
from .discriminator import Discriminator, default_disc_blocks
from .errors import TrainingConfigError

GIB = 1024 ** 3
TRAINABLE_BYTES = 16  # fp32 weight + fp32 grad + AdamW exp_avg + exp_avg_sq
COMPUTE_BYTES = {"bf16": 2, "fp32": 4}  # activations and the frozen teacher, by run.precision
# full-resolution maps a Conv3DHead keeps for backward (k = 1 branch 6, others 3 each), plus ~2 of its backward's
# temporaries (17.5 and 19-20 counted by training/peak_memory.py)
DISC_MAPS_PER_HEAD = 20


def _numel(module: torch.nn.Module) -> int:
    return sum(p.numel() for p in module.parameters())


@dataclasses.dataclass(frozen=True)
class ParameterCounts:
    wan: int
    extras: int
    discriminator: int


@functools.lru_cache(maxsize=None)  # building a 14B Wan even on the meta device takes seconds
def parameter_counts(wan: WanConfig, head_blocks: int, fusion: str, disc_features: int) -> ParameterCounts:
    with torch.device("meta"):
        extras = FlowHeadExtras(wan.dim, wan.ffn_dim, wan.freq_dim, wan.num_layers, FlowHeadSpec(head_blocks, fusion))
        return ParameterCounts(_numel(WanDiT(wan)), _numel(extras), _numel(Discriminator(wan.dim, disc_features)))


def estimate_memory(config: TrainConfig, stage: str, world: int, strategy: str,
                    micro_batch: int | None = None, wan: WanConfig | None = None) -> dict[str, float]:
    """GiB per GPU: {"weights", "optimizer", "activations", "total"} for `world` GPUs under "ddp" or "fsdp", each
    process running `micro_batch` samples at a time (None: its whole share of the global batch). `wan` is the
    architecture when the config names none (a teacher file's own size)."""
    m, wan = config.model, wan or NAMED_CONFIGS[config.model.wan]
    compute_bytes = COMPUTE_BYTES[config.run.precision]
    blocks = config.stage2.disc_blocks or default_disc_blocks(wan.num_layers)
    counts = parameter_counts(wan, m.head_blocks, m.fusion, len(blocks))
    c, t, h, w = config.data.latent_shape
    tokens = t * (h // 2) * (w // 2)
    per_sample = micro_batch or local_batch(config, world)
    block_input = tokens * wan.dim * compute_bytes
    working_set = (24 * tokens * wan.dim + 3 * tokens * wan.ffn_dim) * compute_bytes
    fusion = (6 * tokens * wan.dim + 2 * tokens * wan.ffn_dim) * compute_bytes  # per grad-carrying head call
    disc_maps = len(blocks) * DISC_MAPS_PER_HEAD * (wan.dim // 4) * t * h * w * compute_bytes
    if stage in ("1", "fm", "kd"):
        trainable, frozen = counts.wan + (counts.extras if stage == "1" else 0), 0
        kept = wan.num_layers * block_input + (fusion if stage == "1" else 0)
    else:
        student = counts.wan + (counts.extras if stage == "2" else 0)
        trainable, frozen = student + counts.wan + counts.discriminator, counts.wan
        generator = (wan.num_layers - m.head_blocks) + m.inner_steps * m.head_blocks if stage == "2" else wan.num_layers
        # The two kinds of iteration never overlap: the student step (rollout, teacher features carrying the GAN
        # gradient, the discriminator on the fake sample) and the critic step (fake score, the discriminator on
        # fake and real samples). Backward runs the discriminator first, so its maps are gone before any block
        # is recomputed: maps and working set never coexist.
        student_step = ((generator + max(blocks) + 1) * block_input + (m.inner_steps * fusion if stage == "2" else 0)
                        + max(disc_maps, working_set))
        critic_step = wan.num_layers * block_input + max(2 * disc_maps, working_set)
        kept = max(student_step, critic_step) - working_set
    shard = world if strategy == "fsdp" else 1
    weights = (trainable * 4 + frozen * compute_bytes) / shard
    optimizer = trainable * (TRAINABLE_BYTES - 4) / shard
    activations = per_sample * (kept + working_set)
    return {"weights": weights / GIB, "optimizer": optimizer / GIB, "activations": activations / GIB,
            "total": (weights + optimizer + activations) / GIB}


def local_batch(config: TrainConfig, world: int) -> int:
    """Samples per process of the global batch (at least one)."""
    return max(1, config.data.batch_size // world)


def choose_micro_batch(config: TrainConfig, stage: str, world: int, strategy: str, gpu_gib: float,
                       reserve_gib: float = 4.0) -> int | None:
    """The largest divisor of the per-process batch whose estimate plus `reserve_gib` (CUDA context, allocator
    slack) fits `gpu_gib`; None when not even one sample at a time fits."""
    local = local_batch(config, world)
    for micro_batch in sorted((d for d in range(1, local + 1) if local % d == 0), reverse=True):
        if estimate_memory(config, stage, world, strategy, micro_batch)["total"] + reserve_gib <= gpu_gib:
            return micro_batch
    return None


def memory_table(configs: dict[str, TrainConfig], stages: tuple[str, ...] = ("1", "2"),
                 worlds: tuple[int, ...] = (8, 16, 32, 64), gpu_gib: float | None = None,
                 reserve_gib: float = 4.0) -> str:
    """Markdown: estimated GiB per GPU for each config, stage, strategy and GPU count; with `gpu_gib`, each cell is
    the micro-batch that fits and its estimate ("mb 2: 41.9"), or "no fit" with the estimate at one sample."""
    lines = ["| config | stage | strategy | " + " | ".join(f"{n} GPUs" for n in worlds) + " |",
             "|---|---|---|" + "---|" * len(worlds)]
    for name, config in configs.items():
        for stage in stages:
            for strategy in ("ddp", "fsdp"):
                cells = [_cell(config, stage, n, strategy, gpu_gib, reserve_gib) for n in worlds]
                lines.append(f"| {name} | {stage} | {strategy} | " + " | ".join(cells) + " |")
    return "\n".join(lines)


def _cell(config: TrainConfig, stage: str, world: int, strategy: str, gpu_gib: float | None,
          reserve_gib: float) -> str:
    if gpu_gib is None:
        return f"{estimate_memory(config, stage, world, strategy)['total']:.1f}"
    micro_batch = choose_micro_batch(config, stage, world, strategy, gpu_gib, reserve_gib)
    total = estimate_memory(config, stage, world, strategy, micro_batch or 1)["total"]
    return f"mb {micro_batch}: {total:.1f}" if micro_batch else f"no fit (mb 1: {total:.1f})"


def main(argv: list[str] | None = None) -> None:
    parser = argument_parser("Print the estimated memory per GPU of the shipped Wan2.1 training configs "
                             "(training/configs/wan21_*.yaml), for stages 1 and 2 under DDP and FSDP2.")
    parser.add_argument("--gpu-gib", type=float, default=None,
                        help="memory of one GPU in GiB: print instead the largest micro-batch (data.micro_batch) "
                             "that fits it and its estimate")
    parser.add_argument("--reserve-gib", type=float, default=4.0,
                        help="with --gpu-gib: GiB kept free for the CUDA context and allocator slack")
    args = parser.parse_args(argv)
    if args.gpu_gib is not None and not args.gpu_gib > args.reserve_gib >= 0:
        raise TrainingConfigError(f"--gpu-gib {args.gpu_gib} must exceed --reserve-gib {args.reserve_gib} (≥ 0).")
    folder = Path(__file__).parent / "configs"
    configs = {p.stem: load_config(p) for p in sorted(folder.glob("wan21_*.yaml"))}
    if args.gpu_gib is None:
        print("Estimated GiB per GPU (bf16, activation checkpointing, global batch 64 without accumulation, "
              "no CUDA context):")
    else:
        print(f"Largest micro-batch per process that fits {args.gpu_gib:g} GiB with {args.reserve_gib:g} GiB kept "
              f"free, and its estimated GiB per GPU (bf16, activation checkpointing, global batch 64):")
    print(memory_table(configs, gpu_gib=args.gpu_gib, reserve_gib=args.reserve_gib))


if __name__ == "__main__":
    raise SystemExit(run_command(main))
