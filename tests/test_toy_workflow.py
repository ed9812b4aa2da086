# SPDX-License-Identifier: Apache-2.0
"""The toy workflow fits the toy world: its latent is the toy latent, its files are the toy checkpoints, and its
note states the M and N the toy head was trained for (the scheduler and sampler use them: steps 0)."""
import json
from pathlib import Path

from comfyui_tmd.tmd_core.checkpoint import read_flow_head
from comfyui_tmd.toy import checkpoints
from comfyui_tmd.toy.latent import latent_shape
from comfyui_tmd.toy.world import parse_caption

WORKFLOWS = Path(__file__).resolve().parents[1] / "example_workflows"
API = json.loads((WORKFLOWS / "api" / "toy_tmd.json").read_text(encoding="utf-8"))


def inputs_of(class_type: str) -> dict:
    return next(e["inputs"] for e in API.values() if e["class_type"] == class_type)


def test_empty_latent_is_the_toy_latent():
    size = inputs_of("EmptyHunyuanLatentVideo")
    frames = (size["length"] - 1) // 4 + 1
    assert (size["batch_size"], 16, frames, size["height"] // 8, size["width"] // 8) == latent_shape()


def test_loaders_name_the_toy_checkpoints_and_the_caption_is_of_the_world():
    assert inputs_of("UNETLoader")["unet_name"] == checkpoints.TMD_STUDENT.name
    assert inputs_of("TMDFlowHeadLoader")["head_name"] == checkpoints.TMD_HEAD.name
    parse_caption(inputs_of("TMDToyTextEncode")["caption"])
    assert inputs_of("TMDToyDecode")["samples"][0] in API


def test_note_states_the_m_and_n_the_toy_head_was_trained_for():
    _, meta = read_flow_head(checkpoints.TMD_HEAD)
    assert inputs_of("TMDScheduler")["steps"] == 0 and inputs_of("TMDSampler")["inner_steps"] == 0
    ui = json.loads((WORKFLOWS / "toy_tmd.json").read_text(encoding="utf-8"))
    note = next(n for n in ui["nodes"] if n["type"] == "MarkdownNote")["widgets_values"][0]
    assert f"(M = {meta.outer_steps}, N = {meta.inner_steps})" in note
    assert f"N{meta.inner_steps}, M = {meta.outer_steps}" in note
