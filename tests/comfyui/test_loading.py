# SPDX-License-Identifier: Apache-2.0
"""The pack loads through ComfyUI's own custom-node loader; its nodes, and the stock nodes our workflows
use, show exactly the inputs tier 1's table (tests/workflow_nodes.py) records."""
from pathlib import Path

import pytest

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


def test_models_tmd_folder_is_registered(comfy_nodes):
    import folder_paths
    paths, extensions = folder_paths.folder_names_and_paths["tmd"]
    assert any(Path(p).name == "tmd" for p in paths) and ".safetensors" in extensions
