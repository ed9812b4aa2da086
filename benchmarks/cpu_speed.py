# SPDX-License-Identifier: Apache-2.0
"""CPU speed of the TMD core on a Wan-shaped model (30 blocks, small width), all figures from one run.

    python -m comfyui_tmd.benchmarks.cpu_speed [--dim 256] [--repeats 5] [--json out.json]

Times one full forward, one inner flow-head step (H = 5, fusion included), the teacher's 50-step Euler
sampler with CFG, and TMD N2H5 at M = 2, then compares the measured end-to-end speed-up with the ratio
of effective NFEs (100 / 2.33): the gap is what the core adds beyond the raw block count.

The teacher runs CFG as two passes per step, as official Wan does, so it is exactly 100 forwards and
`e2e_speedup` measures the core against the block count. ComfyUI batches cond and uncond instead;
on a small CPU model a batch of 2 costs well under two forwards, so that variant is reported apart
(`e2e_speedup_batched_cfg`). Prints a table; the last line is one JSON object.
"""
from __future__ import annotations

import json
import platform
from pathlib import Path
from typing import Callable

import torch

from . import timing
from ..tmd_core import (FlowHeadSpec, TMDDenoiser, TMDStudent, WanConfig, WanDiT, effective_nfe, generate_teacher,
                        generate_tmd)
from ..tmd_core.command_line import argument_parser, run_command
from .output import add_force_option, check_output

CPU = torch.device("cpu")


def median_seconds(fn: Callable[[], object], repeats: int, warmup: int = 1) -> float:
    for _ in range(warmup):
        fn()
    return timing.median_seconds(fn, repeats, CPU)


def run(dim: int = 256, layers: int = 30, latent: tuple[int, ...] = (1, 16, 2, 16, 16), text_tokens: int = 64,
        repeats: int = 5, teacher_steps: int = 50, cfg: float = 5.0, outer_steps: int = 2, inner_steps: int = 2,
        head_blocks: int = 5) -> dict:
    torch.manual_seed(0)
    config = WanConfig(dim=dim, ffn_dim=4 * dim, num_heads=max(1, dim // 128), num_layers=layers)
    wan = WanDiT(config).eval()
    student = TMDStudent.from_teacher(wan, FlowHeadSpec(head_blocks=head_blocks)).eval()
    g = torch.Generator().manual_seed(1)
    context, negative = torch.randn(2, 1, text_tokens, config.text_dim, generator=g)
    x = torch.randn(latent, generator=g)
    t = torch.full((latent[0],), 0.9)

    with torch.no_grad():
        forward = median_seconds(lambda: wan(x, 1000 * t, context), repeats)
        denoiser = TMDDenoiser(student, context, inner_steps)
        embedded, (freqs, times) = denoiser.embedded_context(x), denoiser.prepare(x)
        features = student.backbone(x, t, context, embedded_context=embedded, freqs=freqs)
        y = torch.randn(latent, generator=g)
        inner_step = median_seconds(lambda: student.head(features, y, times[0]), 3 * repeats)
        backbone = median_seconds(lambda: student.backbone(x, t, context, embedded_context=embedded, freqs=freqs),
                                  repeats)
        tmd = median_seconds(lambda: generate_tmd(student, context, latent, seed=0, outer_steps=outer_steps,
                                                  inner_steps=inner_steps, disable=True), repeats)
        teacher, teacher_batched = (
            median_seconds(lambda batch_cfg=batch_cfg: generate_teacher(wan, context, negative, latent, seed=0,
                                                                        steps=teacher_steps, cfg=cfg,
                                                                        batch_cfg=batch_cfg, disable=True),
                           max(1, repeats // 3), warmup=0)
            for batch_cfg in (False, True))

    tmd_nfe = effective_nfe(outer_steps, inner_steps, head_blocks, layers)
    teacher_nfe = teacher_steps * (2 if cfg != 1.0 else 1)
    return {
        "device": f"cpu ({platform.processor() or platform.machine()}, {torch.get_num_threads()} threads)",
        "torch": torch.__version__,
        "model": f"Wan-shaped, {layers} blocks, dim {dim}, {config.num_heads} heads, ffn {4 * dim}",
        "latent": list(latent), "text_tokens": text_tokens,
        "forward_s": forward, "backbone_s": backbone, "inner_step_s": inner_step,
        "tmd_s": tmd, "teacher_s": teacher, "teacher_batched_cfg_s": teacher_batched,
        "inner_step_over_forward": inner_step / forward,
        "head_share": head_blocks / layers,
        "tmd_nfe": tmd_nfe, "teacher_nfe": teacher_nfe,
        "nfe_ratio": teacher_nfe / tmd_nfe,
        "e2e_speedup": teacher / tmd,
        "e2e_speedup_batched_cfg": teacher_batched / tmd,
    }


def format_table(r: dict) -> str:
    rows = [
        ("one full forward (30 blocks)", f"{r['forward_s'] * 1e3:.1f} ms", "1.00"),
        ("backbone (25 blocks + embeddings)", f"{r['backbone_s'] * 1e3:.1f} ms",
         f"{r['backbone_s'] / r['forward_s']:.3f}"),
        ("one inner head step (fusion + 5 blocks + head)", f"{r['inner_step_s'] * 1e3:.1f} ms",
         f"{r['inner_step_over_forward']:.3f}"),
        (f"teacher, 50 steps, CFG in 2 passes ({r['teacher_nfe']} NFE)", f"{r['teacher_s']:.2f} s",
         f"{r['teacher_s'] / r['forward_s']:.1f}"),
        ("teacher, 50 steps, CFG batched (ComfyUI's way)", f"{r['teacher_batched_cfg_s']:.2f} s",
         f"{r['teacher_batched_cfg_s'] / r['forward_s']:.1f}"),
        (f"TMD N2H5, M=2 ({r['tmd_nfe']:.2f} NFE)", f"{r['tmd_s'] * 1e3:.1f} ms", f"{r['tmd_s'] / r['forward_s']:.2f}"),
    ]
    width = max(len(name) for name, _, _ in rows)
    lines = [f"{r['model']}; latent {r['latent']}; {r['device']}; torch {r['torch']}",
             f"{'what':<{width}}  {'median':>10}  {'× forward':>9}"]
    lines += [f"{name:<{width}}  {value:>10}  {ratio:>9}" for name, value, ratio in rows]
    lines.append(f"inner_step_over_forward {r['inner_step_over_forward']:.3f} (H/L = {r['head_share']:.3f}); "
                 f"e2e_speedup {r['e2e_speedup']:.1f}× vs nfe_ratio {r['nfe_ratio']:.1f}× "
                 f"({r['e2e_speedup'] / r['nfe_ratio']:.2f} of the block-count bound); "
                 f"{r['e2e_speedup_batched_cfg']:.1f}× against batched CFG")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> dict:
    parser = argument_parser(__doc__.splitlines()[0])
    parser.add_argument("--dim", type=int, default=256, help="model width")
    parser.add_argument("--repeats", type=int, default=5, help="timed repeats per figure; medians are reported")
    parser.add_argument("--json", type=Path, help="also write the JSON result to this file")
    add_force_option(parser)
    args = parser.parse_args(argv)
    check_output([args.json] if args.json else [], args.force)
    result = run(dim=args.dim, repeats=args.repeats)
    print(format_table(result))
    if args.json:
        args.json.parent.mkdir(parents=True, exist_ok=True)
        args.json.write_text(json.dumps(result, indent=2) + "\n")
    print(json.dumps(result))
    return result


if __name__ == "__main__":
    raise SystemExit(run_command(main))
