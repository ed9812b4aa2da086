# SPDX-License-Identifier: Apache-2.0
"""The pack loads through ComfyUI's own custom-node loader; its nodes, and the stock nodes our workflows
use, show exactly the inputs tier 1's table (tests/workflow_nodes.py) records."""
from pathlib import Path

import pytest
import torch

from workflow_nodes import NODES, WIDGET_KINDS


def object_info(cls) -> dict:
    """The parts of a node's /object_info entry we compare, for V3 and V1 nodes alike."""
    if hasattr(cls, "GET_NODE_INFO_V1"):
        return cls.GET_NODE_INFO_V1()
    return {"input": cls.INPUT_TYPES(), "output": cls.RETURN_TYPES}


def live_signature(info: dict) -> list[tuple]:
    """(name, kind, optional, seed control) per input, in order, from an /object_info entry."""
    signature = []
    for part in ("required", "optional"):
        for name, spec in info["input"].get(part, {}).items():
            kind = spec[0] if isinstance(spec[0], str) else "COMBO"  # V1 combos are a list of options
            options = spec[1] if len(spec) > 1 else {}
            signature.append((name, kind, part == "optional", bool(options.get("control_after_generate"))))
    return signature


@pytest.mark.parametrize("node_id", sorted(NODES))
def test_table_matches_what_comfyui_serves(comfy_nodes, node_id):
    info = object_info(comfy_nodes.NODE_CLASS_MAPPINGS[node_id])
    node = NODES[node_id]
    assert live_signature(info) == [(i.name, i.kind, i.optional, i.seed_control) for i in node.inputs]
    assert tuple(info["output"]) == node.outputs
    assert all(i.kind in WIDGET_KINDS or i.kind.isupper() for i in node.inputs)


def test_the_pack_registers_exactly_the_table_s_pack_nodes(comfy_nodes):
    from comfyui_tmd.nodes import NODES as PACK_NODES
    registered = {cls.GET_SCHEMA().node_id for cls in PACK_NODES}
    assert registered == {name for name, node in NODES.items() if node.pack}
    assert registered <= set(comfy_nodes.NODE_CLASS_MAPPINGS)


@pytest.mark.parametrize("node_id", sorted(name for name, node in NODES.items() if node.pack))
def test_pack_node_has_category_and_tooltips(comfy_nodes, node_id):
    info = comfy_nodes.NODE_CLASS_MAPPINGS[node_id].GET_NODE_INFO_V1()
    assert info["category"] in ("sampling/TMD", "sampling/TMD/toy") and info["description"]
    for name, spec in info["input"]["required"].items():
        assert spec[1].get("tooltip"), f"{node_id}.{name} has no tooltip"


def test_models_tmd_folder_is_made_and_lists_safetensors_only(comfy_nodes, tmp_path, monkeypatch):
    """On start the pack makes models/tmd (kept paths from extra_model_paths.yaml) and lists only .safetensors
    files: the flow-head loader refuses anything else, so .pt/.ckpt files are not offered."""
    import folder_paths
    from comfyui_tmd.nodes.tmd_nodes import register_model_folder
    paths, extensions = folder_paths.folder_names_and_paths["tmd"]
    assert extensions == {".safetensors"} and Path(folder_paths.models_dir, "tmd").is_dir()
    assert any(Path(p).name == "tmd" for p in paths)
    for already_set in (False, True):  # first start, and a 'tmd' entry made by extra_model_paths.yaml
        models = tmp_path / f"models_{already_set}"
        extra = tmp_path / "extra_heads"
        names = {k: v for k, v in folder_paths.folder_names_and_paths.items() if k != "tmd"}
        if already_set:
            names["tmd"] = ([str(extra)], set())
        monkeypatch.setattr(folder_paths, "models_dir", str(models))
        monkeypatch.setattr(folder_paths, "folder_names_and_paths", names)
        monkeypatch.setattr(folder_paths, "filename_list_cache", {})
        register_model_folder()
        assert (models / "tmd").is_dir()
        for file in ("a_head.safetensors", "b_head.pt", "c_head.ckpt", "d_head.bin"):
            (models / "tmd" / file).write_bytes(b"x")
        assert folder_paths.get_filename_list("tmd") == ["a_head.safetensors"]
        assert folder_paths.folder_names_and_paths["tmd"][0] == ([str(extra)] if already_set else []) + [
            str(models / "tmd")]


@pytest.fixture(scope="module")
def head_trained_for_one_step(comfy, tmp_path_factory):
    """A tiny student whose head says it was trained for M = 1 (as the 14B config trains)."""
    from .comfy_world import write_student
    folder = tmp_path_factory.mktemp("m1")
    write_student(folder / "wan_student.safetensors", folder / "student_head.safetensors", outer_steps=1)
    return folder


@pytest.mark.parametrize("trained", [2, 1])
def test_scheduler_defaults_to_the_head_s_trained_m_and_gamma(comfy, nodes, student_files, head_trained_for_one_step,
                                                             trained):
    """steps 0 and gamma 0 are the head's own M and outer γ, through clones after TMD Apply Flow Head
    (ModelSamplingSD3 here); other values override them."""
    from comfyui_tmd.tmd_core import tmd_sigmas
    from comfy_extras.nodes_model_advanced import ModelSamplingSD3

    from .comfy_world import patched_model
    folder = student_files[0] if trained == 2 else head_trained_for_one_step
    model = patched_model(comfy, nodes, folder)
    shifted = ModelSamplingSD3().patch(model, 10.0)[0]  # a clone, as any MODEL node after the TMD one makes
    for m in (model, shifted):
        assert torch.equal(nodes.TMDScheduler.execute(m, 0, 0.0).result[0], tmd_sigmas(trained, 10.0))
    assert torch.equal(nodes.TMDScheduler.execute(model, 3, 5.0).result[0], tmd_sigmas(3, 5.0))
    assert torch.equal(nodes.TMDScheduler.execute(model, 0, 5.0).result[0], tmd_sigmas(trained, 5.0))
    info = nodes.TMDScheduler.GET_NODE_INFO_V1()
    required = info["input"]["required"]
    assert required["steps"][1]["default"] == 0 and required["gamma"][1]["default"] == 0


def test_scheduler_refuses_a_model_without_a_flow_head(comfy, nodes, student_files):
    from comfyui_tmd.tmd_core import TMDError
    plain = comfy.sd.load_diffusion_model(str(student_files[0] / "wan_student.safetensors"))
    with pytest.raises(TMDError) as refused:
        nodes.TMDScheduler.execute(plain, 0, 0.0)
    assert str(refused.value) == ("TMD Scheduler needs a model with a TMD flow head: connect its model input after "
                                  "'TMD Apply Flow Head'.")
