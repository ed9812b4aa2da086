# SPDX-License-Identifier: Apache-2.0
"""ComfyUI V3 nodes: thin adapters over tmd_core. Imported only by the entry point, inside ComfyUI."""
from comfy_api.latest import ComfyExtension

from .tmd_nodes import NODES, register_model_folder


class TMDExtension(ComfyExtension):
    async def get_node_list(self):
        return list(NODES)


async def entrypoint() -> TMDExtension:
    register_model_folder()
    return TMDExtension()
