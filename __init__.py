# SPDX-License-Identifier: Apache-2.0
"""comfyui-tmd: Transition Matching Distillation for Wan2.1 text-to-video, as a ComfyUI node pack.

Imported by ComfyUI as a custom-node package, and as `comfyui_tmd` everywhere else (training,
benchmarks, tests). Importing it never requires ComfyUI: the nodes register through the V3
`comfy_entrypoint` only, and nodes/ is imported only when ComfyUI calls it.
"""
__version__ = "0.1.0"


async def comfy_entrypoint():
    from .nodes import entrypoint

    return await entrypoint()
