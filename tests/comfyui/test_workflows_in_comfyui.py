# SPDX-License-Identifier: Apache-2.0
"""The example workflows run headless in ComfyUI on a CPU: in-process through ComfyUI's PromptExecutor, and
through the HTTP server (`main.py --cpu`, POST /prompt, GET /history); both give the same video."""
import asyncio
import json
import time
import urllib.request
import uuid
from pathlib import Path

import pytest

from .comfy_world import (FRAMES, SIDE, WORKFLOWS, core_latent, http_json, load_api, read_video, saved_latent,
                          saved_video, shrink)
from .conftest import TOY_WORKFLOW, WORKFLOW_NAMES


class RecordingServer:
    """What PromptExecutor needs of ComfyUI's server: it records the events a browser would receive."""

    def __init__(self):
        self.client_id, self.last_node_id, self.events = None, None, []

    def send_sync(self, event, data, sid=None):
        self.events.append((event, data))

    def progress(self, value, total, preview, prompt_id=None, node_id=None):
        from comfy_execution.utils import get_executing_context
        node_id = node_id or get_executing_context().node_id
        self.send_sync("progress", {"value": value, "max": total, "node": node_id})


def run_in_process(comfy_nodes, root: Path, prompt: dict):
    import comfy.utils
    import execution
    import folder_paths
    for folder in ("diffusion_models", "tmd", "vae", "loras"):
        folder_paths.add_model_folder_path(folder, str(root / "models" / folder))
    folder_paths.set_output_directory(str(root / "output"))
    prompt_id = str(uuid.uuid4())
    valid, error, outputs, node_errors = asyncio.run(execution.validate_prompt(prompt_id, prompt, None))
    assert valid, (error, node_errors)
    server = RecordingServer()
    executor = execution.PromptExecutor(server)
    comfy.utils.set_progress_bar_global_hook(server.progress)  # what main.py's hijack_progress installs
    try:
        asyncio.run(executor.execute_async(prompt, prompt_id, {}, outputs))
    finally:
        comfy.utils.set_progress_bar_global_hook(None)
    assert executor.success, [e for e in server.events if e[0] == "execution_error"]
    return executor.history_result["outputs"], server.events


@pytest.mark.parametrize("name", WORKFLOW_NAMES)
def test_workflow_runs_in_process(comfy_nodes, world, name):
    root, made = world
    outputs, events = run_in_process(comfy_nodes, root, shrink(load_api(name), f"inproc_{name}"))
    meta = made[name]["meta"]  # the 14B head says M = 1, as its training config does; the 1.3B one M = 2
    latent = saved_latent(outputs, root / "output")
    core = core_latent(comfy_nodes, made[name]["student"], load_api(name), meta)
    assert ((latent - core).norm() / core.norm()).item() < 1e-4  # the workflow samples what the core samples
    frames = read_video(saved_video(outputs, root / "output"))
    assert frames.shape == (FRAMES, SIDE, SIDE, 3)
    assert frames.float().std() > 0  # a real decode of a real sample, not a blank clip
    sampler_id = next(k for k, e in load_api(name).items() if e["class_type"] == "SamplerCustomAdvanced")
    progress = [(d["value"], d["max"]) for e, d in events if e == "progress" and d["node"] == sampler_id]
    # one tick per inner step (M outer × N inner; TMD Scheduler at steps 0 samples the head's M), and the
    # sampler node's own tick (with its preview) after each outer step: at M = N = 2 the bar reads 25, 50, 50,
    # 75, 100, 100 %
    m, n = meta.outer_steps, meta.inner_steps
    assert m == (1 if "14B" in name else 2)
    assert progress == [tick for i in range(m) for tick in [*((i * n + j, m * n) for j in range(1, n + 1)), (i + 1, m)]]


def test_object_info_shows_the_pack_nodes(server):
    url, _ = server
    info = http_json(f"{url}/object_info/TMDSampler")["TMDSampler"]
    assert info["input_order"]["required"] == ["inner_steps", "inner_gamma"] and info["output"] == ["SAMPLER"]
    assert info["category"] == "sampling/TMD"


def test_workflow_runs_through_the_http_server_and_matches_in_process(comfy_nodes, world, server):
    url, output_dir = server
    root, _ = world
    name = WORKFLOW_NAMES[0]
    queued = http_json(f"{url}/prompt", {"prompt": shrink(load_api(name), "http"), "client_id": "tmd-tests"})
    assert queued["node_errors"] == {}
    deadline = time.monotonic() + 300
    while not (history := http_json(f"{url}/history/{queued['prompt_id']}")):
        assert time.monotonic() < deadline, "the prompt did not finish in 5 minutes"
        time.sleep(0.5)
    entry = history[queued["prompt_id"]]
    assert entry["status"]["status_str"] == "success" and entry["status"]["completed"]
    outputs, _ = run_in_process(comfy_nodes, root, shrink(load_api(name), "inproc_again"))
    # Same seed, same sample: the latents (what the pack makes) are bit-identical. The decoded and encoded
    # videos are not across processes: in one two-core CI run ComfyUI's VAE decode and video encode differed
    # between the server and this process by 1.45 grey levels on average (max 42) for bit-identical latents.
    latent_http, latent = saved_latent(entry["outputs"], output_dir), saved_latent(outputs, root / "output")
    assert latent_http.equal(latent)
    over_http = read_video(saved_video(entry["outputs"], output_dir)).float()
    in_process = read_video(saved_video(outputs, root / "output")).float()
    assert over_http.shape == in_process.shape and (over_http - in_process).abs().mean() < 4.0


def test_a_bad_head_file_is_reported_by_the_server(server, world):
    """A pickle in models/tmd is refused with the pack's one-sentence error, shown as the node's error."""
    url, _ = server
    root, _ = world
    (root / "models" / "tmd" / "evil_head.safetensors").write_bytes(b"\x80\x04\x95" + bytes(64))
    prompt = shrink(load_api(WORKFLOW_NAMES[0]), "bad")
    loader = next(e for e in prompt.values() if e["class_type"] == "TMDFlowHeadLoader")
    loader["inputs"]["head_name"] = "evil_head.safetensors"
    queued = http_json(f"{url}/prompt", {"prompt": prompt, "client_id": "tmd-tests"})
    deadline = time.monotonic() + 120
    while not (history := http_json(f"{url}/history/{queued['prompt_id']}")):
        assert time.monotonic() < deadline
        time.sleep(0.5)
    status = history[queued["prompt_id"]]["status"]
    assert status["status_str"] == "error"
    (error,) = [data for kind, data in status["messages"] if kind == "execution_error"]
    assert error["node_type"] == "TMDFlowHeadLoader" and "pickle" in error["exception_message"]


def http_bytes(url: str) -> tuple[bytes, str]:
    """The body and Content-Type of a GET."""
    with urllib.request.urlopen(url, timeout=30) as response:
        return response.read(), response.headers.get("Content-Type", "")


def test_comfyui_lists_the_templates_with_their_thumbnails(server):
    """ComfyUI lists the pack's example_workflows/ on /workflow_templates (the Templates browser's list) and
    serves each workflow and the <name>.jpg thumbnail the browser shows for it; the API twins in
    example_workflows/api/ stay out of the list."""
    url, _ = server
    templates = http_json(f"{url}/workflow_templates")
    assert sorted(templates["comfyui_tmd"]) == sorted([*WORKFLOW_NAMES, TOY_WORKFLOW])
    for name in templates["comfyui_tmd"]:
        served = http_json(f"{url}/api/workflow_templates/comfyui_tmd/{name}.json")
        assert served == json.loads((WORKFLOWS / f"{name}.json").read_text(encoding="utf-8"))
        picture, kind = http_bytes(f"{url}/api/workflow_templates/comfyui_tmd/{name}.jpg")  # the browser's URL
        assert kind == "image/jpeg" and picture == (WORKFLOWS / f"{name}.jpg").read_bytes()
        assert picture[:3] == b"\xff\xd8\xff"

