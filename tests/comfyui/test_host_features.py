# SPDX-License-Identifier: Apache-2.0
"""The patched model stays a good ComfyUI citizen: LoRAs (before or after the patch) reach backbone and head
blocks, torch.compile wrappers and attention overrides reach every block call, and the stock KSampler
(euler, simple, cfg 1) samples TMD on a shift-γ model."""
import pytest
import torch

from comfyui_tmd.tmd_core import TMDDenoiser, generate_tmd, sample_euler, tmd_sigmas
from comfyui_tmd.tmd_core.sampler import seeded_noise

from .comfy_world import LATENT, LORA_STRENGTH, TINY_WAN, comfy_sample, patched_model



def relative_error(a, b):
    return ((a - b).norm() / b.norm()).item()


def tmd_sample(comfy, nodes, model, seed=5):
    context = torch.randn(1, 5, 4096, generator=torch.Generator().manual_seed(6))
    sampler = nodes.TMDSampler.execute(0, 0.0).result[0]
    sigmas = nodes.TMDScheduler.execute(model, 2, 10.0).result[0]
    return comfy_sample(comfy, model, sampler, sigmas, context, seed), context


def core_sample(comfy, student, context, seed=5):
    import comfy.latent_formats
    with torch.no_grad():
        latent = generate_tmd(student, context, LATENT, seed=seed)
    return comfy.latent_formats.Wan21().process_out(latent)


@pytest.mark.parametrize("order", ["lora then TMD", "TMD then lora"])
def test_lora_reaches_backbone_and_head_blocks(comfy, comfy_nodes, nodes, student_files, lora, order):
    folder, student = student_files
    lora_name, merged = lora
    apply_lora = comfy_nodes.LoraLoaderModelOnly().load_lora_model_only
    plain = comfy.sd.load_diffusion_model(str(folder / "wan_student.safetensors"))
    if order == "lora then TMD":
        model = patched_model(comfy, nodes, folder, apply_lora(plain, lora_name, LORA_STRENGTH)[0])
    else:
        model = apply_lora(patched_model(comfy, nodes, folder, plain), lora_name, LORA_STRENGTH)[0]
    ours, context = tmd_sample(comfy, nodes, model)
    assert relative_error(ours, core_sample(comfy, merged, context)) < 1e-4
    assert relative_error(ours, core_sample(comfy, student, context)) > 1e-3  # the LoRA changed the video


class RecordingBackend:
    """A torch.compile backend that runs each captured graph eagerly and counts graphs and their runs."""

    def __init__(self):
        self.graphs, self.runs = 0, 0

    def __call__(self, graph_module, example_inputs):
        self.graphs += 1

        def run(*args):
            self.runs += 1
            return graph_module.forward(*args)
        return run


PER_BLOCK_KEYS = [f"diffusion_model.blocks.{i}" for i in range(TINY_WAN.num_layers)]


@pytest.mark.parametrize("keys", [["diffusion_model"], PER_BLOCK_KEYS], ids=["whole model", "per block"])
def test_torch_compile_wrapper_reaches_the_blocks(comfy, nodes, student_files, keys):
    from comfy_api.torch_helpers import set_torch_compile_wrapper
    folder, student = student_files
    torch._dynamo.reset()
    model = patched_model(comfy, nodes, folder)
    backend = RecordingBackend()
    set_torch_compile_wrapper(model, backend=backend, keys=keys)
    ours, context = tmd_sample(comfy, nodes, model)
    assert relative_error(ours, core_sample(comfy, student, context)) < 1e-4
    block_calls = 2 * (2 + 2 * 2)  # M × (backbone blocks + N × head blocks)
    assert backend.graphs >= 1 and backend.runs >= (block_calls if len(keys) > 1 else 2)


def test_attention_override_sees_every_attention_call(comfy, nodes, student_files):
    folder, student = student_files
    model = patched_model(comfy, nodes, folder)
    calls = []

    def override(attention, *args, **kwargs):
        calls.append(args[0].shape)
        return attention(*args, **kwargs)

    model.model_options["transformer_options"]["optimized_attention_override"] = override
    ours, context = tmd_sample(comfy, nodes, model)
    assert relative_error(ours, core_sample(comfy, student, context)) < 1e-4
    assert len(calls) == 2 * (2 + 2 * 2) * 2  # M × (backbone + N × head blocks) × (self + cross attention)


def test_stock_ksampler_samples_tmd_on_a_shift_gamma_model(comfy, comfy_nodes, nodes, student_files):
    """KSampler(euler, simple, steps M, cfg 1) after ModelSamplingSD3(shift γ) is Euler on shift_γ of a uniform
    grid — the TMD grid with its top at 1 instead of 0.999 — and the patch makes every step a TMD step."""
    import comfy.latent_formats
    import comfy.samplers
    folder, student = student_files
    shifted = comfy_nodes.NODE_CLASS_MAPPINGS["ModelSamplingSD3"]().patch(
        comfy.sd.load_diffusion_model(str(folder / "wan_student.safetensors")), 10.0)[0]
    model = patched_model(comfy, nodes, folder, shifted)
    context = torch.randn(1, 5, 4096, generator=torch.Generator().manual_seed(8))
    latent = {"samples": torch.zeros(LATENT)}
    with torch.inference_mode():
        (out,) = comfy_nodes.KSampler().sample(model, 21, 2, 1.0, "euler", "simple", [[context, {}]],
                                               [[torch.randn_like(context), {}]], latent)
    sigmas = comfy.samplers.calculate_sigmas(model.get_model_object("model_sampling"), "simple", 2)
    assert torch.allclose(sigmas, torch.tensor([1.0, 10 * 0.5 / (1 + 9 * 0.5), 0.0]), atol=1e-6)
    noise, generator = seeded_noise(LATENT, 21)
    with torch.no_grad():
        core = sample_euler(TMDDenoiser(student, context, 2, 10.0, generator), sigmas[0] * noise, sigmas)
    assert relative_error(out["samples"], comfy.latent_formats.Wan21().process_out(core)) < 1e-4


class BlockPatch:
    """A block-replacement patch as other packs register them: records each call, scales one block's update."""

    def __init__(self, index: int, scale: float):
        self.index, self.scale, self.calls = index, scale, []

    def __call__(self, args, extra):
        self.calls.append(args["img"].shape)
        out = extra["original_block"](args)["img"]
        return {"img": args["img"] + self.scale * (out - args["img"])}


@pytest.mark.parametrize("index", [1, 3], ids=["backbone block", "head block"])
def test_block_replacement_patches_reach_backbone_and_head_blocks(comfy, nodes, student_files, index):
    """`patches_replace["dit"]` as ComfyUI's WanModel honours it: the patch runs once per backbone pass for a
    backbone block and once per inner step for a head block, and the video is the core's with the same patch."""
    folder, student = student_files
    model = patched_model(comfy, nodes, folder)
    patch = BlockPatch(index, scale=0.7)
    model.set_model_patch_replace(patch, "dit", "double_block", index)
    ours, context = tmd_sample(comfy, nodes, model)
    assert len(patch.calls) == (2 if index < 2 else 2 * 2)  # M backbone passes, or M × N head steps
    import comfy.latent_formats
    core_patch = BlockPatch(index, scale=0.7)
    with torch.no_grad():
        denoiser = TMDDenoiser(student, context, 2, 10.0, seeded_noise(LATENT, 5)[1])
        original_velocity = denoiser.velocity
        denoiser.velocity = lambda x, sigma, ctx, emb=None, transformer_options=None: original_velocity(
            x, sigma, ctx, emb, {"patches_replace": {"dit": {("double_block", index): core_patch}}})
        noise, _ = seeded_noise(LATENT, 5)
        sigmas = tmd_sigmas(2, 10.0)
        core = sample_euler(denoiser, sigmas[0] * noise, sigmas)
    core = comfy.latent_formats.Wan21().process_out(core)
    assert relative_error(ours, core) < 1e-4
    assert relative_error(ours, core_sample(comfy, student, context)) > 1e-3  # the patch changed the video
