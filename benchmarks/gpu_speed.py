# SPDX-License-Identifier: Apache-2.0
"""Full-size GPU speed of Wan2.1 samplers against their dense-FLOP floor, with and without kernels and CUDA graphs.

    python -m comfyui_tmd.benchmarks.gpu_speed                 # Wan2.1 1.3B, 832×480×81 (latent 16×21×60×104)
    python -m comfyui_tmd.benchmarks.gpu_speed --model 14b     # Wan2.1 14B at the same 480p size, if it fits
    python -m comfyui_tmd.benchmarks.gpu_speed --small         # CPU dry run of every code path at toy sizes

Random bf16 weights (speed does not depend on their values), 512 text tokens as umT5 gives. DiT-only
sampling time (no text encoder, no VAE) of: the teacher at 50 steps with CFG in two passes, plain Euler
at 4 and 2 steps on the same model (the cost of a 4- or 2-step distilled baseline), and TMD N2H5 and
N4H5 at M = 1 and 2. Each in three modes where they apply: `torch` (reference ops), `kernels` (the
Triton kernels), `kernels+graph` (TMD's inner loop also replayed from a CUDA graph). Times are medians
of CUDA-event timings after a warm-up call; peak memory is torch's allocator peak over the timed runs.
The floor of a sampler is its analytic dense FLOPs divided by the device's measured bf16 matmul rate.
Each kernel is also timed alone against its torch path at the model's shapes. Prints a table, writes
JSON named after the device into --out, and ends with one JSON line.
"""
from __future__ import annotations

import dataclasses
import json
import platform
import re
from pathlib import Path
from typing import Callable

import torch

from ..tmd_kernels.triton_gate import TRITON_IMPORTED, triton_unusable_reason
from ..tmd_core import (WAN21_T2V_1_3B, WAN21_T2V_14B, CFGDenoiser, FlowHeadSpec, TMDDenoiser, TMDStudent, WanConfig,
                        WanDiT, effective_nfe, sample_euler, set_kernel_impl, teacher_sigmas, tmd_sigmas)
from ..tmd_core.command_line import argument_parser, run_command
from . import flops
from .kernel_speed import kernel_cases
from .output import RESULTS, add_force_option, check_output
from .timing import matmul_rate, median_seconds, sync

LATENT_480P = (1, 16, 21, 60, 104)
MODELS = {"1.3b": WAN21_T2V_1_3B, "14b": WAN21_T2V_14B}
SMALL_MODEL, SMALL_LATENT = WanConfig(dim=64, ffn_dim=128, num_heads=2, num_layers=6), (1, 16, 2, 4, 4)
HEAD_BLOCKS = 5
MODES = ("torch", "kernels", "kernels+graph")
TARGET = "TMD N2H5, M=2"  # the speed target: within 1.25× of its dense-FLOP floor


@dataclasses.dataclass(frozen=True)
class SamplerSpec:
    name: str
    steps: int  # Euler steps, or TMD outer steps M
    cfg: bool = False
    inner_steps: int = 0  # TMD's N; 0 for a plain Euler sampler


def samplers(teacher_steps: int) -> tuple[SamplerSpec, ...]:
    """What the benchmark times; the teacher has 50 steps at full size (2 in the CPU dry run)."""
    return (SamplerSpec(f"teacher {teacher_steps} steps, CFG", teacher_steps, cfg=True),
            SamplerSpec("Euler 4 steps", 4), SamplerSpec("Euler 2 steps", 2),
            SamplerSpec("TMD N2H5, M=1", 1, inner_steps=2), SamplerSpec(TARGET, 2, inner_steps=2),
            SamplerSpec("TMD N4H5, M=1", 1, inner_steps=4), SamplerSpec("TMD N4H5, M=2", 2, inner_steps=4))


def random_wan(config: WanConfig, device: torch.device, dtype: torch.dtype) -> WanDiT:
    """A Wan with PyTorch's default random initialisation, built directly on the device in the target dtype."""
    default = torch.get_default_dtype()
    torch.set_default_dtype(dtype)
    try:
        with torch.device(device):
            return WanDiT(config).eval()
    finally:
        torch.set_default_dtype(default)


def sampler_run(spec: SamplerSpec, mode: str, wan: WanDiT, student: TMDStudent, context: torch.Tensor,
                negative: torch.Tensor, noise: torch.Tensor) -> tuple[Callable[[], torch.Tensor], Callable[[], object]]:
    """(a full sampling run, a one-call warm-up) for one sampler in one mode; the denoiser (and graph) is reused."""
    set_kernel_impl(student, "torch" if mode == "torch" else "triton")  # student shares wan's blocks
    if spec.inner_steps:
        denoiser = TMDDenoiser(student, context, spec.inner_steps, cuda_graph=mode == "kernels+graph")
        sigmas = tmd_sigmas(spec.steps).to(noise.device)
    else:
        denoiser = CFGDenoiser(wan, context, negative if spec.cfg else None, cfg=5.0, batch_cfg=False)
        sigmas = teacher_sigmas(spec.steps).to(noise.device)
    x = sigmas[0] * noise

    def run() -> torch.Tensor:
        denoiser.generator = torch.Generator().manual_seed(0)  # same inner noise every run
        return sample_euler(denoiser, x, sigmas, disable=True)

    return run, lambda: denoiser(x, sigmas[0] * x.new_ones([x.shape[0]]))


def sampler_flops(spec: SamplerSpec, config: WanConfig, tokens: int, text_tokens: int) -> int:
    if spec.inner_steps:
        return flops.tmd_sampler(config, tokens, text_tokens, spec.steps, spec.inner_steps, HEAD_BLOCKS)
    return flops.euler_sampler(config, tokens, text_tokens, spec.steps, spec.cfg)


def mode_skip_reason(spec: SamplerSpec, mode: str, probe: torch.Tensor) -> str | None:
    if mode == "kernels+graph" and not spec.inner_steps:
        return "graphs apply to TMD's inner loop only"
    if mode == "kernels+graph" and probe.device.type != "cuda":
        return "CUDA graphs need a GPU"
    return None if mode == "torch" else triton_unusable_reason(probe)


def run(model: str = "1.3b", small: bool = False, repeats: int = 3, teacher_repeats: int = 1, text_tokens: int = 512,
        modes: tuple[str, ...] = MODES) -> dict:
    device = torch.device("cpu" if small else "cuda")
    dtype = torch.float32 if small else torch.bfloat16
    config, latent = (SMALL_MODEL, SMALL_LATENT) if small else (MODELS[model], LATENT_480P)
    text_tokens = 8 if small else text_tokens
    torch.manual_seed(0)
    wan = random_wan(config, device, dtype)
    student = TMDStudent.from_teacher(wan, FlowHeadSpec(head_blocks=HEAD_BLOCKS)).eval()
    context, negative = torch.randn(2, 1, text_tokens, config.text_dim, device=device, dtype=dtype)
    noise = torch.randn(latent, device=device, dtype=dtype)
    tokens = flops.tokens_of(config, latent)
    grid = tuple(size // patch for size, patch in zip(latent[2:], config.patch_size, strict=True))
    rate = matmul_rate(device, dtype, 256 if small else 8192, repeats=3 if small else 20)
    rows = []
    with torch.no_grad():
        for spec in samplers(2 if small else 50):
            total = sampler_flops(spec, config, tokens, text_tokens) * latent[0]
            nfe = effective_nfe(spec.steps, spec.inner_steps, HEAD_BLOCKS, config.num_layers) if spec.inner_steps \
                else spec.steps * (2 if spec.cfg else 1)
            for mode in modes:
                row = {"sampler": spec.name, "mode": mode, "nfe": nfe, "flops": total, "floor_s": total / rate}
                reason = mode_skip_reason(spec, mode, noise)
                if reason is None:
                    full, warm = sampler_run(spec, mode, wan, student, context, negative, noise)
                    warm()  # Triton builds, cuBLAS heuristics, graph capture
                    sync(device)
                    if device.type == "cuda":
                        torch.cuda.reset_peak_memory_stats(device)
                    seconds = median_seconds(full, teacher_repeats if spec.cfg else repeats, device)
                    peak = torch.cuda.max_memory_allocated(device) if device.type == "cuda" else None
                    row.update(seconds=seconds, over_floor=seconds / row["floor_s"], peak_bytes=peak)
                else:
                    row["skipped"] = reason
                rows.append(row)
    set_kernel_impl(student, "torch")
    return {
        "device": device_name(device),
        "torch": torch.__version__, "triton_installed": TRITON_IMPORTED, "dtype": str(dtype).removeprefix("torch."),
        "model": "small dry run" if small else f"Wan2.1 {model}", "config": dataclasses.asdict(config),
        "latent": list(latent), "text_tokens": text_tokens, "matmul_flops_per_s": rate,
        "samplers": rows, "kernels": kernel_cases(config, grid, text_tokens, device, dtype, repeats=3 if small else 50),
    }


def format_table(r: dict) -> str:
    lines = [f"{r['model']} ({r['dtype']}), latent {r['latent']}, {r['text_tokens']} text tokens; {r['device']}; "
             f"torch {r['torch']}; matmul {r['matmul_flops_per_s'] / 1e12:.1f} TFLOP/s",
             f"{'sampler':<24} {'mode':<14} {'NFE':>6} {'TFLOP':>9} {'floor s':>9} {'median s':>9} {'× floor':>8} "
             f"{'peak GiB':>9}"]
    if r["model"] == "small dry run":
        lines.insert(0, "DRY RUN on toy sizes: proves the code paths; its timings (CPU, Triton interpreter) are no "
                 "speed claim")
    for row in r["samplers"]:
        head = (f"{row['sampler']:<24} {row['mode']:<14} {row['nfe']:>6.2f} {row['flops'] / 1e12:>9.3f} "
                f"{row['floor_s']:>9.4f}")
        if "skipped" in row:
            lines.append(f"{head} skipped: {row['skipped']}")
        else:
            peak = "-" if row["peak_bytes"] is None else f"{row['peak_bytes'] / 2**30:.2f}"
            lines.append(f"{head} {row['seconds']:>9.4f} {row['over_floor']:>8.2f} {peak:>9}")
    timed = [row["over_floor"] for row in r["samplers"] if row["sampler"] == TARGET and "seconds" in row]
    if timed:
        lines.append(f"{TARGET}: best mode at {min(timed):.2f}× its dense-FLOP floor (target: ≤ 1.25×)")
    lines.append(f"{'kernel (one call)':<40} {'torch ms':>9} {'triton ms':>9} {'speed-up':>8}")
    for k in r["kernels"]:
        if "skipped" in k:
            lines.append(f"{k['kernel']:<40} skipped: {k['skipped']}")
        else:
            lines.append(f"{k['kernel']:<40} {k['torch_s'] * 1e3:>9.3f} {k['triton_s'] * 1e3:>9.3f} "
                         f"{k['speedup']:>7.2f}×")
    return "\n".join(lines)


def device_name(device: torch.device) -> str:
    if device.type == "cuda":
        return torch.cuda.get_device_name(device)
    return f"cpu ({platform.processor() or platform.machine()}, {torch.get_num_threads()} threads)"


def result_path(out: Path, device: str, model: str, small: bool) -> Path:
    """<out>/gpu_speed-<model or "small">-<device>.json, known before the run so a refusal costs nothing."""
    slug = re.sub(r"[^a-z0-9]+", "-", device.lower()).strip("-")
    return out / f"gpu_speed-{'small' if small else model}-{slug}.json"


def main(argv: list[str] | None = None) -> dict:
    parser = argument_parser(__doc__.splitlines()[0])
    parser.add_argument("--model", choices=sorted(MODELS), default="1.3b", help="Wan2.1 size")
    parser.add_argument("--small", action="store_true",
                        help="CPU dry run at toy sizes (proves the code path, no timing claim)")
    parser.add_argument("--repeats", type=int, default=3, help="timed runs per sampler; the median is reported")
    parser.add_argument("--teacher-repeats", type=int, default=1, help="timed runs of the 50-step CFG teacher")
    parser.add_argument("--modes", default=",".join(MODES), help=f"comma-separated subset of {','.join(MODES)}")
    parser.add_argument("--out", type=Path, default=RESULTS,
                        help="folder for the JSON (a new device's file joins the published results; replacing one "
                             "needs --force)")
    add_force_option(parser)
    args = parser.parse_args(argv)
    modes = tuple(args.modes.split(","))
    if not set(modes) <= set(MODES):
        parser.error(f"--modes {args.modes!r}: expected a comma-separated subset of {','.join(MODES)}")
    if not args.small and not torch.cuda.is_available():
        parser.error("no CUDA device: run on a GPU, or pass --small for the CPU dry run")
    path = result_path(args.out, device_name(torch.device("cpu" if args.small else "cuda")), args.model, args.small)
    check_output([path], args.force)
    result = run(args.model, args.small, args.repeats, args.teacher_repeats, modes=modes)
    print(format_table(result))
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(result, indent=2) + "\n")
    print(json.dumps(result))
    return result


if __name__ == "__main__":
    raise SystemExit(run_command(main))
