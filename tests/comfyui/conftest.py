# SPDX-License-Identifier: Apache-2.0
"""Tier 2: tests inside a real ComfyUI checkout named by COMFYUI_PATH (never vendored); skipped without one."""
import asyncio
import contextlib
import os
import subprocess
import sys
import time
from pathlib import Path

import pytest

COMFYUI_PATH = os.environ.get("COMFYUI_PATH")
PACK_ROOT = Path(__file__).resolve().parents[2]
TESTING_PACK = Path(__file__).resolve().parent / "testing_pack"
WORKFLOW_NAMES = ["wan2.1_t2v_1.3B_tmd", "wan2.1_t2v_14B_tmd"]
TOY_WORKFLOW = "toy_tmd"  # runs as it is (no umT5, no VAE), so it is tested apart from the Wan ones
SERVER_START_S = 120


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


@pytest.fixture(scope="session")
def comfy_nodes(comfy):
    """ComfyUI's node registry with its built-in extra nodes, this pack and the testing pack, loaded by
    ComfyUI's own custom-node loader."""
    import utils.extra_config  # noqa: F401  (ComfyUI needs it imported before its `nodes` module)
    import nodes
    asyncio.run(nodes.init_extra_nodes(init_custom_nodes=False, init_api_nodes=False))
    assert asyncio.run(nodes.load_custom_node(str(PACK_ROOT)))
    assert asyncio.run(nodes.load_custom_node(str(TESTING_PACK)))
    return nodes


@pytest.fixture(scope="session")
def student_files(comfy, tmp_path_factory):
    """Folder with wan_student.safetensors + student_head.safetensors, and the core student they hold."""
    from .comfy_world import write_student
    folder = tmp_path_factory.mktemp("tmd")
    return folder, write_student(folder / "wan_student.safetensors", folder / "student_head.safetensors")["student"]


@pytest.fixture(scope="session")
def lora(comfy, student_files):
    """A random LoRA file registered in ComfyUI's loras folder, and the student with it merged by hand."""
    import folder_paths
    from .comfy_world import write_lora
    folder, student = student_files
    merged = write_lora(student, folder / "loras" / "tiny_lora.safetensors")
    folder_paths.add_model_folder_path("loras", str(folder / "loras"))
    return "tiny_lora.safetensors", merged


@pytest.fixture
def nodes(comfy):
    from comfyui_tmd.nodes import tmd_nodes
    return tmd_nodes


@pytest.fixture(scope="session")
def world(comfy, tmp_path_factory):
    """A ComfyUI base folder holding every file the example and toy workflows name (see comfy_world.build_base)."""
    from .comfy_world import build_base, load_api
    root = tmp_path_factory.mktemp("comfy_base")
    made = {}
    for name in [*WORKFLOW_NAMES, TOY_WORKFLOW]:
        made[name] = build_base(comfy, root, load_api(name))
    (root / "output").mkdir()
    return root, made


@pytest.fixture(scope="session")
def server(comfy, world):
    """`python main.py --cpu` on a free port with the test world's models and custom nodes."""
    root, _ = world
    with running_server(root, ["--cpu"], root / "server_output") as url:
        yield url, root / "server_output"


@contextlib.contextmanager
def running_server(root: Path, flags: list[str], output: Path):
    """ComfyUI's `main.py` with `flags` on a free port, serving the world in `root`; yields its URL."""
    from .comfy_world import free_port, http_json
    port = free_port()
    log = open(root / f"server_{port}.log", "w")  # noqa: SIM115 (closed below, after the process ends)
    process = subprocess.Popen(
        [sys.executable, "main.py", *flags, "--listen", "127.0.0.1", "--port", str(port), "--disable-auto-launch",
         "--extra-model-paths-config", str(root / "extra_model_paths.yaml"), "--output-directory", str(output)],
        cwd=COMFYUI_PATH, stdout=log, stderr=subprocess.STDOUT)
    url = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + SERVER_START_S
        while True:
            try:
                http_json(f"{url}/system_stats")
                break
            except OSError:
                if process.poll() is not None or time.monotonic() > deadline:
                    raise RuntimeError(f"ComfyUI did not start; see {log.name}") from None
                time.sleep(0.5)
        yield url
    finally:
        process.terminate()
        process.wait(timeout=30)
        log.close()
