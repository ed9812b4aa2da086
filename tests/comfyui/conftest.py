# SPDX-License-Identifier: Apache-2.0
"""Tier 2: tests inside a real ComfyUI checkout named by COMFYUI_PATH (never vendored); skipped without one."""
import os
import sys
from pathlib import Path

import pytest

COMFYUI_PATH = os.environ.get("COMFYUI_PATH")


def pytest_collection_modifyitems(config, items):
    here = Path(__file__).parent
    skip = pytest.mark.skip(reason="tier 2 needs a ComfyUI checkout: set COMFYUI_PATH")
    for item in items:
        if here in Path(item.fspath).parents:
            item.add_marker(pytest.mark.comfyui)
            if not COMFYUI_PATH:
                item.add_marker(skip)


@pytest.fixture(scope="session")
def comfy():
    """ComfyUI's modules, imported from the checkout in CPU mode (tests may touch sys.path; the pack never does)."""
    root = str(Path(COMFYUI_PATH).resolve())
    if root not in sys.path:
        sys.path.insert(0, root)
    from comfy.cli_args import args
    args.cpu = True
    import comfy.ldm.wan.model
    import comfy.ops
    import comfy.sd
    return comfy
