# SPDX-License-Identifier: Apache-2.0
"""Tier 2: the toy nodes inside ComfyUI, and the toy workflow run as it is (no umT5, no VAE) on the CPU."""
import torch

from comfyui_tmd.tmd_core import generate_tmd
from comfyui_tmd.toy.latent import decode, latent_shape
from comfyui_tmd.toy.text import encode_caption

from .comfy_world import _of_type, load_api, read_video, saved_latent, saved_video
from .conftest import TOY_WORKFLOW
from .test_workflows_in_comfyui import run_in_process


def test_toy_decoder_undoes_comfyui_s_wan21_latent_format(comfy_nodes):
    import comfy.latent_formats
    from comfyui_tmd.nodes.toy_nodes import TMDToyDecode
    z = torch.randn(2, 16, 3, 4, 5)
    images = TMDToyDecode.execute({"samples": comfy.latent_formats.Wan21().process_out(z)}).result[0]
    assert images.shape == (24, 4, 5, 3)  # 2 clips × 3 latent frames × 4 frames of 4 × 5 pixels
    assert torch.allclose(images, decode(z).flatten(0, 1), atol=1e-5)


def test_toy_text_node_gives_the_toy_encoder_s_context(comfy_nodes):
    from comfyui_tmd.nodes.toy_nodes import TMDToyTextEncode
    ((context, extra),) = TMDToyTextEncode.execute("a blue circle moving up").result[0]
    assert extra == {} and torch.equal(context, encode_caption("a blue circle moving up")[None])


def test_toy_workflow_runs_in_process_and_samples_what_the_core_samples(comfy_nodes, world):
    import comfy.latent_formats
    root, made = world
    api = load_api(TOY_WORKFLOW)
    sampler_id = _of_type(api, "SamplerCustomAdvanced")[0]
    prompt = {**api, "900": {"class_type": "SaveLatent", "inputs": {"samples": [sampler_id, 0],
                                                                     "filename_prefix": "toy"}}}
    outputs, _ = run_in_process(comfy_nodes, root, prompt)
    latent = comfy.latent_formats.Wan21().process_in(saved_latent(outputs, root / "output"))
    caption = _of_type(api, "TMDToyTextEncode")[1]["inputs"]["caption"]
    steps = _of_type(api, "TMDScheduler")[1]["inputs"]  # 0: the M and γ the head was trained for
    meta = made[TOY_WORKFLOW]["meta"]
    with torch.no_grad():
        core = generate_tmd(made[TOY_WORKFLOW]["student"], encode_caption(caption)[None], latent_shape(),
                            seed=_of_type(api, "RandomNoise")[1]["inputs"]["noise_seed"],
                            outer_steps=steps["steps"] or meta.outer_steps,
                            outer_gamma=steps["gamma"] or meta.outer_gamma)
    assert latent.shape == core.shape == latent_shape()  # EmptyHunyuanLatentVideo 128 × 128 × 1 is the toy latent
    assert ((latent - core).norm() / core.norm()).item() < 1e-4
    frames = read_video(saved_video(outputs, root / "output"))
    assert frames.shape == (4, 128, 128, 3) and frames.float().std() > 0
