# SPDX-License-Identifier: Apache-2.0
"""What sampling through ComfyUI costs over the bare core: the same TMD sampling, same weights, same seed.

    python -m comfyui_tmd.benchmarks.comfy_overhead --comfyui /path/to/ComfyUI [--size small|1.3B] [--device cuda]

The core path is `generate_tmd` on the pack's own Wan. The ComfyUI path loads the same Wan file through
ComfyUI's UNETLoader code, patches it with the pack's nodes and samples with `SamplerCustom` machinery
(`comfy.sample.sample_custom`, TMD Sampler, TMD Scheduler, cfg 1), so it includes ComfyUI's model
management, conds, wrappers and progress bars. `small` is a Wan-shaped model (30 blocks, dim 256) for a
CPU; `1.3B` is the full Wan2.1 1.3B architecture with random bf16 weights at 832×480×81 (a GPU job).
Prints a table; the last line is one JSON object (ComfyUI/core ratio of medians, device name).
"""
from __future__ import annotations

import json
import platform
import tempfile
from pathlib import Path

import torch

from ..tmd_core import (FlowHeadMeta, FlowHeadSpec, TMDStudent, WanConfig, WAN21_T2V_1_3B, generate_tmd, load_wan,
                        save_flow_head, save_wan, tmd_sigmas)
from ..tmd_core.command_line import argument_parser, run_command
from ..tmd_core.wan_model import WanDiT
from ..training.comfyui_checkout import check_comfyui, import_comfyui
from .output import add_force_option, check_output
from .timing import interleaved_medians

SIZES = {  # name: (Wan config, latent [B, C, T, H, W], text tokens, dtype)
    "small": (WanConfig(dim=256, ffn_dim=1024, num_heads=2, num_layers=30), (1, 16, 2, 16, 16), 64, torch.float32),
    "1.3B": (WAN21_T2V_1_3B, (1, 16, 21, 60, 104), 512, torch.bfloat16),
}


def device_name(device: str) -> str:
    if device == "cuda":
        return torch.cuda.get_device_name()
    return f"CPU ({platform.machine()}, {torch.get_num_threads()} threads)"


def run(comfyui: str, size: str = "small", device: str = "cpu", repeats: int = 5, seed: int = 0) -> dict:
    comfy = import_comfyui(comfyui, device)
    from ..nodes import tmd_nodes
    from ..nodes.comfy_bridge import read_head_file
    config, latent_shape, tokens, dtype = SIZES[size]
    with tempfile.TemporaryDirectory() as folder:
        torch.manual_seed(0)
        wan = WanDiT(config).to(dtype)
        student = TMDStudent.from_teacher(wan, FlowHeadSpec(head_blocks=5))
        save_wan(wan, Path(folder) / "student.safetensors")
        save_flow_head(student, Path(folder) / "head.safetensors",
                       FlowHeadMeta.describe_model(wan, student.extras.spec, outer_steps=2, inner_steps=2))
        del wan, student
        core_wan = load_wan(Path(folder) / "student.safetensors", dtype=dtype, device=device)
        core_student = TMDStudent.from_teacher(core_wan, FlowHeadSpec(head_blocks=5)).eval()
        comfy_wan = comfy.sd.load_diffusion_model(str(Path(folder) / "student.safetensors"))
        head = read_head_file(Path(folder) / "head.safetensors")
        patched = tmd_nodes.TMDApplyFlowHead.execute(comfy_wan, head).result[0]
    context = torch.randn(1, tokens, config.text_dim, generator=torch.Generator().manual_seed(1))
    sampler = tmd_nodes.TMDSampler.execute(0, 0.0).result[0]
    sigmas = tmd_sigmas(2, 10.0)
    latent = torch.zeros(latent_shape)
    noise = comfy.sample.prepare_noise(latent, seed)

    def core():
        with torch.no_grad():
            out = generate_tmd(core_student, context.to(device, dtype), latent_shape, seed=seed)
        return patched.model.latent_format.process_out(out.float().cpu())  # ComfyUI's samplers output VAE space

    def through_comfyui():
        with torch.inference_mode():
            out = comfy.sample.sample_custom(patched, noise, 1.0, sampler, sigmas, [[context, {}]], [[context, {}]],
                                             latent, disable_pbar=True, seed=seed)
        return out.float().cpu()

    reference = core()
    same_work = ((through_comfyui() - reference).norm() / reference.norm()).item()  # both paths sample one video
    core_s, comfy_s = interleaved_medians([core, through_comfyui], repeats, torch.device(device))
    return {"benchmark": "comfy_overhead", "device": device_name(device), "size": size, "config": "N2H5, M=2",
            "latent": list(latent_shape), "dtype": str(dtype).removeprefix("torch."), "repeats": repeats,
            "core_s": core_s, "comfyui_s": comfy_s, "comfyui_over_core": comfy_s / core_s,
            "relative_difference_of_outputs": same_work}


def format_table(r: dict) -> str:
    return "\n".join([
        f"TMD {r['config']} on a {r['size']} Wan, latent {'×'.join(map(str, r['latent']))}, {r['dtype']}, "
        f"{r['device']}",
        "| path | median |", "|---|---|",
        f"| core (`generate_tmd`) | {r['core_s'] * 1e3:.1f} ms |",
        f"| ComfyUI (UNETLoader + TMD nodes + sample_custom) | {r['comfyui_s'] * 1e3:.1f} ms |",
        f"ComfyUI / core = {r['comfyui_over_core']:.3f}; the two videos differ by "
        f"{r['relative_difference_of_outputs']:.1e} (relative), so both paths did the same work",
    ])


def main(argv: list[str] | None = None) -> dict:
    parser = argument_parser(__doc__.split("\n\n")[0])
    parser.add_argument("--comfyui", required=True, help="path of a ComfyUI checkout")
    parser.add_argument("--size", choices=sorted(SIZES), default="small",
                        help="small: a Wan-shaped model for a CPU; 1.3B: the full model (a GPU job)")
    parser.add_argument("--device", choices=["cpu", "cuda"], default="cuda" if torch.cuda.is_available() else "cpu",
                        help="where both paths sample")
    parser.add_argument("--repeats", type=int, default=5, help="timed runs of each path; medians are reported")
    parser.add_argument("--json", type=Path, help="also write the result to this file")
    add_force_option(parser)
    options = parser.parse_args(argv)
    check_comfyui(options.comfyui)
    check_output([options.json] if options.json else [], options.force)
    result = run(options.comfyui, options.size, options.device, options.repeats)
    print(format_table(result))
    print(json.dumps(result))
    if options.json:
        options.json.write_text(json.dumps(result, indent=2) + "\n", encoding="utf-8")
    return result


if __name__ == "__main__":
    raise SystemExit(run_command(main))
