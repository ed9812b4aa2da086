# SPDX-License-Identifier: Apache-2.0
"""On a CUDA host: the 1.3B example workflow, with a LoRA and TorchCompileModel after the TMD patch, runs in
ComfyUI's server with offloading forced (`--novram`, `--lowvram`) and samples what the core samples. Skipped
without a GPU; it names the device it ran on."""
import time

import pytest
import torch

from .comfy_world import core_latent, http_json, load_api, saved_latent, shrink, write_lora
from .conftest import WORKFLOW_NAMES, running_server

pytestmark = [pytest.mark.gpu,
              pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")]
# ComfyUI picks a 16-bit compute dtype for the tiny Wan on CUDA; the core runs it in float32 on the CPU.
TOLERANCE = 5e-2


def with_lora_and_compile(prompt: dict, lora_name: str) -> dict:
    """TMD Apply Flow Head → LoraLoaderModelOnly → TorchCompileModel(inductor) → the guider."""
    apply_id = next(k for k, e in prompt.items() if e["class_type"] == "TMDApplyFlowHead")
    guider = next(e for e in prompt.values() if e["class_type"] == "BasicGuider")
    prompt["901"] = {"class_type": "LoraLoaderModelOnly",
                     "inputs": {"model": [apply_id, 0], "lora_name": lora_name, "strength_model": 0.8}}
    prompt["902"] = {"class_type": "TorchCompileModel", "inputs": {"model": ["901", 0], "backend": "inductor"}}
    guider["inputs"]["model"] = ["902", 0]
    return prompt


@pytest.mark.parametrize("flag", ["--novram", "--lowvram"])
def test_workflow_on_cuda_with_forced_offloading(comfy, world, flag, tmp_path, record_property):
    root, made = world
    name = WORKFLOW_NAMES[0]
    merged = write_lora(made[name]["student"], root / "models" / "loras" / "gpu_lora.safetensors")
    prompt = with_lora_and_compile(shrink(load_api(name), f"gpu{flag}"), "gpu_lora.safetensors")
    with running_server(root, [flag], tmp_path) as url:
        queued = http_json(f"{url}/prompt", {"prompt": prompt, "client_id": "tmd-gpu-tests"})
        assert queued["node_errors"] == {}
        deadline = time.monotonic() + 600
        while not (history := http_json(f"{url}/history/{queued['prompt_id']}")):
            assert time.monotonic() < deadline, "the prompt did not finish in 10 minutes"
            time.sleep(0.5)
        device = http_json(f"{url}/system_stats")["devices"][0]["name"]
    entry = history[queued["prompt_id"]]
    assert entry["status"]["status_str"] == "success", (device, entry["status"]["messages"])
    latent, core = saved_latent(entry["outputs"], tmp_path), core_latent(comfy, merged, load_api(name))
    error = ((latent - core).norm() / core.norm()).item()
    record_property("device", device)  # in the JUnit report the standing GPU check keeps
    record_property("relative_error", error)
    assert error < TOLERANCE, f"{flag} on {device}: relative error {error:.3f}"
