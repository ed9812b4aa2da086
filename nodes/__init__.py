# SPDX-License-Identifier: Apache-2.0
"""ComfyUI V3 nodes: thin adapters over tmd_core and toy. Imported only by the entry point, inside ComfyUI."""
from comfy_api.latest import ComfyExtension

from . import tmd_nodes, toy_nodes
from .tmd_nodes import register_model_folder

NODES = [*tmd_nodes.NODES, *toy_nodes.NODES]


class TMDExtension(ComfyExtension):
    async def get_node_list(self):
        return list(NODES)


async def entrypoint() -> TMDExtension:
    register_model_folder()
    return TMDExtension()
