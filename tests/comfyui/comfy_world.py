# SPDX-License-Identifier: Apache-2.0
"""A small ComfyUI world for tier-2 workflow runs: a base folder whose models carry the names the example
workflows use (a tiny random Wan student and its head, a random Wan2.1 VAE), custom_nodes with this pack
and the testing pack, and the workflows' API prompts shrunk to run on a CPU in seconds."""
from __future__ import annotations

import copy
import json
import os
import socket
import urllib.request
from pathlib import Path

import torch

from comfyui_tmd.tmd_core import FlowHeadMeta, FlowHeadSpec, TMDStudent, WanConfig, save_flow_head, save_wan
from comfyui_tmd.tmd_core.safe_files import write_safetensors

from factories import perturb_extras, random_wan

from .conftest import PACK_ROOT, TESTING_PACK

WORKFLOWS = PACK_ROOT / "example_workflows"  # ComfyUI serves it as the pack's templates; API twins in api/
LATENT = (1, 16, 2, 4, 6)  # for the sampling tests that call ComfyUI's sampling functions directly
TINY_WAN = WanConfig(dim=256, ffn_dim=128, num_heads=2, num_layers=4)  # ComfyUI detects dim ≥ 256 as Wan
FRAMES, SIDE = 5, 64  # video frames and pixels: latent [1, 16, 2, 8, 8]
LORA_RANK, LORA_ALPHA, LORA_STRENGTH = 4, 2.0, 0.8
LORA_TARGETS = ["blocks.0.self_attn.q", "blocks.3.ffn.0"]  # a backbone block and a head block (H = 2 of 4)


def load_api(name: str) -> dict:
    return json.loads((WORKFLOWS / "api" / f"{name}.json").read_text(encoding="utf-8"))


def _of_type(prompt: dict, class_type: str) -> tuple[str, dict]:
    return next((key, entry) for key, entry in prompt.items() if entry["class_type"] == class_type)


def random_wan21_vae_state(comfy) -> dict[str, torch.Tensor]:
    """A Wan2.1 VAE with random weights (ComfyUI hard-codes its full size: 127 M parameters).

    ComfyUI's layers skip weight initialisation, so every tensor is drawn here: weights N(0, 1/fan_in),
    biases N(0, 0.01²), norm scales 1; the decoder then maps latents to finite, varied frames."""
    import comfy.ldm.wan.vae
    vae = comfy.ldm.wan.vae.WanVAE(dim=96, z_dim=16, dim_mult=[1, 2, 4, 4], num_res_blocks=2, attn_scales=[],
                                   temperal_downsample=[False, True, True])
    generator = torch.Generator().manual_seed(0)
    state = {}
    for key, value in vae.state_dict().items():
        if key.endswith("gamma"):
            state[key] = torch.ones_like(value)
        elif value.ndim > 1:
            state[key] = torch.randn(value.shape, generator=generator) / value[0].numel() ** 0.5
        else:
            state[key] = 0.01 * torch.randn(value.shape, generator=generator)
    return state


def build_base(comfy, root: Path, api: dict) -> dict:
    """Fill `root` with the files `api` names; returns {"student", "wan"} for comparisons."""
    student_name = _of_type(api, "UNETLoader")[1]["inputs"]["unet_name"]
    head_name = _of_type(api, "TMDFlowHeadLoader")[1]["inputs"]["head_name"]
    for folder in ("diffusion_models", "tmd", "vae", "loras", "text_encoders"):
        (root / "models" / folder).mkdir(parents=True, exist_ok=True)
    # The 14B config trains M = 1 and the 1.3B one M = 2; the tiny students say the same, so a workflow whose
    # TMD Scheduler is left at steps 0 samples each head's own M.
    outer_steps = 1 if "_14B_" in head_name else 2
    made = write_student(root / "models" / "diffusion_models" / student_name, root / "models" / "tmd" / head_name,
                         outer_steps=outer_steps)
    types = {entry["class_type"] for entry in api.values()}
    if "VAELoader" in types:  # the toy workflow has neither a VAE nor umT5
        vae_name = _of_type(api, "VAELoader")[1]["inputs"]["vae_name"]
        write_safetensors(random_wan21_vae_state(comfy), root / "models" / "vae" / vae_name)
    if "CLIPLoader" in types:
        # umT5 cannot be had here (5.7 B parameters); a placeholder under its name keeps the frontend's
        # missing-model check quiet. Runs replace the text encoder nodes (see `shrink`), so it is never read.
        clip_name = _of_type(api, "CLIPLoader")[1]["inputs"]["clip_name"]
        (root / "models" / "text_encoders" / clip_name).write_bytes(b"placeholder, never loaded")
    custom = root / "custom_nodes"
    custom.mkdir(exist_ok=True)
    for target, name in ((PACK_ROOT, "comfyui_tmd"), (TESTING_PACK, "tmd_testing_pack")):
        if not (custom / name).exists():
            os.symlink(target, custom / name, target_is_directory=True)
    (root / "extra_model_paths.yaml").write_text(
        f"tmdtest:\n  base_path: {root}\n  custom_nodes: custom_nodes\n  diffusion_models: models/diffusion_models\n"
        "  tmd: models/tmd\n  vae: models/vae\n  loras: models/loras\n  text_encoders: models/text_encoders\n",
        encoding="utf-8")
    return made


def shrink(api: dict, prefix: str) -> dict:
    """The workflow as a CPU test runs it: random Wan-shaped conditioning in place of umT5 (5.7 B parameters)
    and a 64×64×5 video; every TMD node, link and setting stays as the file has it."""
    prompt = copy.deepcopy(api)
    clip_id, _ = _of_type(prompt, "CLIPLoader")
    del prompt[clip_id]
    for entry in prompt.values():
        if entry["class_type"] == "CLIPTextEncode":
            entry["class_type"] = "TMDTestRandomConditioning"
            entry["inputs"] = {"seed": CONDITIONING_SEED, "tokens": CONDITIONING_TOKENS}
    _of_type(prompt, "EmptyHunyuanLatentVideo")[1]["inputs"].update(width=SIDE, height=SIDE, length=FRAMES)
    _of_type(prompt, "SaveVideo")[1]["inputs"]["filename_prefix"] = prefix
    sampler_id, _ = _of_type(prompt, "SamplerCustomAdvanced")
    prompt["900"] = {"class_type": "SaveLatent", "inputs": {"samples": [sampler_id, 0], "filename_prefix": prefix}}
    return prompt


CONDITIONING_SEED, CONDITIONING_TOKENS = 3, 16  # what `shrink` asks of TMDTestRandomConditioning


def core_latent(comfy, student, api: dict, meta: FlowHeadMeta | None = None) -> torch.Tensor:
    """What the core samples for the shrunk workflow (same weights, conditioning, seed and grids; a 0 in the
    TMD Scheduler is the M or γ of the head's `meta`, by default write_student's M = 2, γ = 10), in the
    VAE-space units ComfyUI's sampler nodes output."""
    import comfy.latent_formats
    from comfyui_tmd.tmd_core import generate_tmd
    seed = _of_type(api, "RandomNoise")[1]["inputs"]["noise_seed"]
    outer = _of_type(api, "TMDScheduler")[1]["inputs"]
    context = torch.randn(1, CONDITIONING_TOKENS, 4096, generator=torch.Generator().manual_seed(CONDITIONING_SEED))
    with torch.no_grad():
        latent = generate_tmd(student, context, (1, 16, (FRAMES - 1) // 4 + 1, SIDE // 8, SIDE // 8), seed=seed,
                              outer_steps=outer["steps"] or (meta.outer_steps if meta else 2),
                              outer_gamma=outer["gamma"] or (meta.outer_gamma if meta else 10.0))
    return comfy.latent_formats.Wan21().process_out(latent)


def saved_latent(outputs: dict, output_dir: Path) -> torch.Tensor:
    from comfyui_tmd.tmd_core.safe_files import read_safetensors
    (entry,) = [o for o in outputs.values() if "latents" in o]
    (item,) = entry["latents"]
    tensors, _ = read_safetensors(output_dir / item["subfolder"] / item["filename"])
    return tensors["latent_tensor"]


def read_video(path: Path) -> torch.Tensor:
    """Decoded frames [T, H, W, 3] uint8 of a saved video."""
    import av
    with av.open(str(path)) as container:
        frames = [torch.from_numpy(frame.to_ndarray(format="rgb24")) for frame in container.decode(video=0)]
    return torch.stack(frames)


def saved_video(outputs: dict, output_dir: Path) -> Path:
    """The file a SaveVideo node reported in a prompt's outputs."""
    (entry,) = [o for o in outputs.values() if "images" in o]
    (item,) = entry["images"]
    return output_dir / item["subfolder"] / item["filename"]


def write_student(wan_path: Path, head_path: Path, outer_steps: int = 2) -> dict:
    """A tiny random Wan student (4 blocks, H = 2, trained N = 2 and M = `outer_steps`) saved as the pack's two
    files; returns {"student", "wan", "meta"}."""
    wan = random_wan(TINY_WAN, seed=11)
    student = TMDStudent.from_teacher(wan, FlowHeadSpec(head_blocks=2))
    perturb_extras(student, seed=12)
    save_wan(wan, wan_path)
    meta = FlowHeadMeta.describe_model(wan, student.extras.spec, outer_steps=outer_steps, inner_steps=2)
    save_flow_head(student, head_path, meta)
    return {"student": student, "wan": wan, "meta": meta}


def write_lora(student, path: Path):
    """A random LoRA on LORA_TARGETS in ComfyUI's generic key format; returns `student` with it merged by hand."""
    generator = torch.Generator().manual_seed(9)
    tensors, merged = {}, copy.deepcopy(student)
    for target in LORA_TARGETS:
        weight = merged.wan.get_parameter(f"{target}.weight")
        up = 0.05 * torch.randn(weight.shape[0], LORA_RANK, generator=generator)
        down = 0.05 * torch.randn(LORA_RANK, weight.shape[1], generator=generator)
        key = f"diffusion_model.{target}"
        tensors |= {f"{key}.lora_up.weight": up, f"{key}.lora_down.weight": down,
                    f"{key}.alpha": torch.tensor(LORA_ALPHA)}
        with torch.no_grad():
            weight += LORA_STRENGTH * (LORA_ALPHA / LORA_RANK) * (up @ down)
    write_safetensors(tensors, path)
    return merged


def patched_model(comfy, nodes, folder: Path, model=None):
    """The student through ComfyUI's UNETLoader path (or `model`), patched by the pack's apply node."""
    from comfyui_tmd.nodes.comfy_bridge import read_head_file
    model = model or comfy.sd.load_diffusion_model(str(folder / "wan_student.safetensors"))
    return nodes.TMDApplyFlowHead.execute(model, read_head_file(folder / "student_head.safetensors")).result[0]


def comfy_sample(comfy, model, sampler, sigmas, context, seed, cfg=1.0, batch=1):
    """ComfyUI's SamplerCustom path: seeded noise, conds, the guider, the sampler; latents in VAE space."""
    import comfy.sample
    latent = torch.zeros((batch,) + LATENT[1:])
    noise = comfy.sample.prepare_noise(latent, seed)
    positive, negative = [[context, {}]], [[torch.randn_like(context), {}]]
    with torch.inference_mode():
        return comfy.sample.sample_custom(model, noise, cfg, sampler, sigmas, positive, negative, latent, seed=seed)


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def http_json(url: str, body=None):
    """GET `url`, or POST `body` as JSON; the decoded JSON answer (None for an empty one)."""
    data = None if body is None else json.dumps(body).encode()
    request = urllib.request.Request(url, data=data, headers={"Content-Type": "application/json"})
    with urllib.request.urlopen(request, timeout=30) as response:
        answer = response.read()
    return json.loads(answer) if answer else None
