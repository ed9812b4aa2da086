# SPDX-License-Identifier: Apache-2.0
"""The patched model on a (emulated) GPU host: after any chain of model nodes, the flow head that runs is the one
ComfyUI manages, it exists once, state lives per run, and sampling with forced offloading (`--novram`,
`--lowvram`) touches no weight ComfyUI left behind. See gpu_host.py for what the emulation does."""
import pytest
import torch

from comfyui_tmd.tmd_core import FlowHeadMeta, FlowHeadSpec, TMDStudent, generate_tmd, save_flow_head, tmd_sigmas

from factories import perturb_extras

from .comfy_world import LATENT, LORA_STRENGTH, comfy_sample, patched_model
from .gpu_host import ManagedModules, OffloadedWeightError, modules_and_tensors, offloaded_host

CHAINS = {
    "no node": [],
    "LoraLoaderModelOnly": ["lora"],
    "ModelSamplingSD3": ["shift"],
    "TorchCompileModel": ["compile"],
    "all three": ["lora", "shift", "compile"],
}
M, N, HEAD_BLOCKS, BACKBONE_BLOCKS = 2, 2, 2, 2


def relative_error(a, b):
    return ((a - b).norm() / b.norm()).item()


def after(comfy_nodes, model, chain, lora_name):
    """`model` through the chain's nodes, in order, as a graph would wire them."""
    from comfy_extras.nodes_torch_compile import TorchCompileModel
    for step in chain:
        if step == "lora":
            model = comfy_nodes.LoraLoaderModelOnly().load_lora_model_only(model, lora_name, LORA_STRENGTH)[0]
        elif step == "shift":
            model = comfy_nodes.NODE_CLASS_MAPPINGS["ModelSamplingSD3"]().patch(model, 10.0)[0]
        else:
            torch._dynamo.reset()
            model = TorchCompileModel.execute(model, "eager").result[0]  # eager: dynamo's graphs, no compiler needed
    return model


def sample(comfy, nodes, model, seed=5, inner_steps=0):
    context = torch.randn(1, 5, 4096, generator=torch.Generator().manual_seed(6))
    sampler = nodes.TMDSampler.execute(inner_steps, 0.0).result[0]
    return comfy_sample(comfy, model, sampler, tmd_sigmas(M, 10.0), context, seed), context


def core(comfy, student, context, seed=5, inner_steps=N):
    import comfy.latent_formats
    with torch.no_grad():
        latent = generate_tmd(student, context, LATENT, seed=seed, inner_steps=inner_steps)
    return comfy.latent_formats.Wan21().process_out(latent)


@pytest.mark.parametrize("chain", list(CHAINS), ids=list(CHAINS))
def test_the_managed_head_is_the_one_that_runs(comfy, comfy_nodes, nodes, student_files, lora, chain):
    from comfyui_tmd.nodes.comfy_bridge import managed_head
    folder, student = student_files
    patched = patched_model(comfy, nodes, folder)
    model = after(comfy_nodes, patched, CHAINS[chain], lora[0])
    head = managed_head(model)
    assert head is managed_head(patched)  # clones share the one module
    assert modules_and_tensors(model.model_options) == []  # nothing a clone could deep-copy into a second head
    probe = ManagedModules(model)
    try:
        ours, context = sample(comfy, nodes, model)
    finally:
        probe.close()
    assert probe.calls(head.fusion) == M * N and probe.calls(head.delta_embedding) == N  # head times: once per run
    expected = lora[1] if "lora" in CHAINS[chain] else student
    assert relative_error(ours, core(comfy, expected, context)) < 1e-4


@pytest.mark.parametrize("budget", [0.1, 2e6], ids=["novram", "lowvram 2 MB"])
@pytest.mark.parametrize("chain", ["no node", "all three"])
def test_offloaded_sampling_equals_the_core(comfy, comfy_nodes, nodes, student_files, lora, monkeypatch, budget, chain):
    folder, student = student_files
    model = after(comfy_nodes, patched_model(comfy, nodes, folder), CHAINS[chain], lora[0])
    with offloaded_host(monkeypatch, model, budget):
        ours, context = sample(comfy, nodes, model)
        assert model.model.model_lowvram  # the emulation really loaded Wan partially
    expected = lora[1] if "lora" in CHAINS[chain] else student
    assert relative_error(ours, core(comfy, expected, context)) < 1e-4


def test_the_emulation_catches_a_head_comfyui_cannot_offload(comfy, nodes, student_files, monkeypatch):
    """Control: flow-head layers that do not fetch their offloaded weights (plain nn.Linear) stay behind under
    --novram, and the emulated host reports it as a GPU would."""
    from comfyui_tmd.tmd_core.fusion import OffloadableLinear
    folder, _ = student_files
    monkeypatch.setattr(OffloadableLinear, "forward", torch.nn.Linear.forward)
    model = patched_model(comfy, nodes, folder)
    with pytest.raises(OffloadedWeightError, match="still on the offload device"):
        with offloaded_host(monkeypatch, model):
            sample(comfy, nodes, model)


def test_two_branches_with_different_heads_and_n_keep_their_own_state(comfy, nodes, student_files, tmp_path):
    """One Wan model, two TMD branches (as in one graph): each samples with its own head and N, interleaved."""
    from comfyui_tmd.nodes.comfy_bridge import RUN_KEY, read_head_file
    folder, student = student_files
    other = perturb_extras(TMDStudent.from_teacher(student.wan, FlowHeadSpec(head_blocks=HEAD_BLOCKS)), seed=31)
    save_flow_head(other, tmp_path / "other_head.safetensors",
                   FlowHeadMeta.describe_model(student.wan, other.extras.spec, outer_steps=M, inner_steps=3))
    plain = comfy.sd.load_diffusion_model(str(folder / "wan_student.safetensors"))
    first = nodes.TMDApplyFlowHead.execute(plain, read_head_file(folder / "student_head.safetensors")).result[0]
    second = nodes.TMDApplyFlowHead.execute(plain, read_head_file(tmp_path / "other_head.safetensors")).result[0]
    a1, context = sample(comfy, nodes, first, seed=1)
    b1, _ = sample(comfy, nodes, second, seed=1)
    a2, _ = sample(comfy, nodes, first, seed=2)
    assert relative_error(a1, core(comfy, student, context, seed=1)) < 1e-4
    assert relative_error(b1, core(comfy, other, context, seed=1, inner_steps=3)) < 1e-4  # N from its head file
    assert relative_error(a2, core(comfy, student, context, seed=2)) < 1e-4
    for model in (plain, first, second):
        assert RUN_KEY not in model.model_options["transformer_options"]  # no run state outlives its run


def test_applying_a_second_head_replaces_the_first(comfy, nodes, student_files, tmp_path):
    from comfyui_tmd.nodes.comfy_bridge import HEAD_KEY, read_head_file
    folder, student = student_files
    other = perturb_extras(TMDStudent.from_teacher(student.wan, FlowHeadSpec(head_blocks=HEAD_BLOCKS)), seed=32)
    save_flow_head(other, tmp_path / "other_head.safetensors",
                   FlowHeadMeta.describe_model(student.wan, other.extras.spec, outer_steps=M, inner_steps=N))
    twice = nodes.TMDApplyFlowHead.execute(patched_model(comfy, nodes, folder),
                                           read_head_file(tmp_path / "other_head.safetensors")).result[0]
    assert len(twice.get_additional_models_with_key(HEAD_KEY)) == 1
    ours, context = sample(comfy, nodes, twice)
    assert relative_error(ours, core(comfy, other, context)) < 1e-4


def test_the_diffusion_wrapper_outside_a_sampling_run_is_refused(comfy, nodes, student_files):
    """Only a sampling run makes a TMDRun; a caller that runs the wrappers without one gets a sentence."""
    from comfyui_tmd.nodes.comfy_bridge import _diffusion_wrapper
    from comfyui_tmd.tmd_core import TMDError
    folder, _ = student_files
    model = patched_model(comfy, nodes, folder)
    with pytest.raises(TMDError, match="outside a ComfyUI sampling run"):
        _diffusion_wrapper(None, torch.randn(LATENT), torch.tensor([500.0]), torch.randn(1, 5, 4096),
                           transformer_options=model.model_options["transformer_options"])
