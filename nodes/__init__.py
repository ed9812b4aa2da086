# SPDX-License-Identifier: Apache-2.0
"""ComfyUI V3 nodes: thin adapters over tmd_core and toy. Imported only by the entry point, inside ComfyUI."""
import logging

from comfy_api.latest import ComfyExtension

from . import tmd_nodes, toy_nodes
from .comfy_contract import contract_breaks
from .tmd_nodes import register_model_folder

NODES = [*tmd_nodes.NODES, *toy_nodes.NODES]


class TMDExtension(ComfyExtension):
    async def get_node_list(self):
        return list(NODES)


async def entrypoint() -> TMDExtension:
    for sentence in contract_breaks():  # a ComfyUI release moved an internal the sampler needs: say which
        logging.warning("comfyui-tmd: %s", sentence)
    register_model_folder()
    return TMDExtension()
