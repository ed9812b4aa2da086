# SPDX-License-Identifier: Apache-2.0
"""The pack loads through ComfyUI's own custom-node loader and its nodes show the expected inputs."""
import asyncio
from pathlib import Path

import pytest

PACK_ROOT = Path(__file__).resolve().parents[2]
EXPECTED = {
    "TMDFlowHeadLoader": (["head_name"], ["TMD_HEAD"]),
    "TMDApplyFlowHead": (["model", "head"], ["MODEL"]),
    "TMDScheduler": (["steps", "gamma"], ["SIGMAS"]),
    "TMDSampler": (["inner_steps", "inner_gamma"], ["SAMPLER"]),
}


@pytest.fixture(scope="module")
def comfy_nodes(comfy):
    import utils.extra_config  # noqa: F401  (ComfyUI needs it imported before its `nodes` module)
    import nodes
    assert asyncio.run(nodes.load_custom_node(str(PACK_ROOT)))
    return nodes


@pytest.mark.parametrize("node_id", sorted(EXPECTED))
def test_node_is_registered_with_its_inputs(comfy_nodes, node_id):
    info = comfy_nodes.NODE_CLASS_MAPPINGS[node_id].GET_NODE_INFO_V1()  # what /object_info serves
    inputs, outputs = EXPECTED[node_id]
    assert info["input_order"]["required"] == inputs
    assert list(info["output"]) == outputs
    assert info["category"] == "sampling/TMD"
    for name in inputs:
        assert info["input"]["required"][name][1].get("tooltip"), f"{node_id}.{name} has no tooltip"


def test_models_tmd_folder_is_registered(comfy_nodes):
    import folder_paths
    paths, extensions = folder_paths.folder_names_and_paths["tmd"]
    assert any(Path(p).name == "tmd" for p in paths) and ".safetensors" in extensions
