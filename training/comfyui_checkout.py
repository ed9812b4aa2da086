# SPDX-License-Identifier: Apache-2.0
"""ComfyUI imported from a checkout the user names (`--comfyui PATH`), for offline tools only.

ComfyUI is not on PyPI, so the tools that use its code (the umT5 encoder of `encode_prompts`, the
ComfyUI-overhead benchmark) put the checkout on sys.path of their own process; the pack's nodes never
do this (inside ComfyUI they are imported by it).
"""
from __future__ import annotations

import sys
from pathlib import Path

from ..tmd_core.errors import TMDError


class ComfyUIPathError(TMDError, ValueError):
    """--comfyui is not a ComfyUI checkout."""


def check_comfyui(root: str) -> None:
    """One sentence, before anything is built, if `root` has no ComfyUI in it."""
    if not (Path(root) / "comfy" / "sample.py").is_file():
        what = "does not exist" if not Path(root).exists() else "has no comfy/sample.py"
        raise ComfyUIPathError(f"--comfyui {root} is not a ComfyUI checkout (it {what}); give the folder that holds "
                               "ComfyUI's main.py and comfy/.")


def import_comfyui(root: str, device: str):
    """ComfyUI's `comfy` package from a checkout, set up for `device` ("cpu" or "cuda")."""
    check_comfyui(root)
    sys.path.insert(0, str(Path(root).resolve()))
    from comfy.cli_args import args
    args.cpu = device == "cpu"
    import comfy.sample
    import comfy.sd
    return comfy
