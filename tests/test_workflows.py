# SPDX-License-Identifier: Apache-2.0
"""Tier 1: every workflow file is well formed, uses only pack nodes and stock nodes with the inputs they
have, and its API twin is exactly what the frontend would queue for it."""
import copy
import json
from pathlib import Path

import pytest

from workflow_nodes import check_api_prompt, check_ui_workflow, ui_to_api

WORKFLOWS = Path(__file__).resolve().parents[1] / "workflows"
UI_FILES = sorted(WORKFLOWS.glob("*.json"))  # API twins live in workflows/api/, out of ComfyUI's template list


def load(path: Path) -> dict:
    return json.loads(path.read_text(encoding="utf-8"))


def twin(path: Path) -> Path:
    return WORKFLOWS / "api" / path.name


def test_there_are_workflows_for_both_wan_sizes_each_with_an_api_twin():
    names = {p.name for p in UI_FILES}
    assert {"wan2.1_t2v_1.3B_tmd.json", "wan2.1_t2v_14B_tmd.json"} <= names
    assert {p.name for p in (WORKFLOWS / "api").glob("*.json")} == names


@pytest.mark.parametrize("path", UI_FILES, ids=lambda p: p.name)
def test_ui_workflow_is_valid(path):
    workflow = load(path)
    assert workflow["version"] == 0.4
    ids = [n["id"] for n in workflow["nodes"]]
    assert len(ids) == len(set(ids)) and workflow["last_node_id"] == max(ids)
    assert workflow["last_link_id"] == max(link[0] for link in workflow["links"])
    assert check_ui_workflow(workflow) == []


@pytest.mark.parametrize("path", UI_FILES, ids=lambda p: p.name)
def test_api_twin_is_what_the_frontend_queues(path):
    api = load(twin(path))
    assert api == ui_to_api(load(path))
    assert check_api_prompt(api) == []


@pytest.mark.parametrize("path", UI_FILES, ids=lambda p: p.name)
def test_workflow_samples_tmd_without_cfg(path):
    api = load(twin(path))
    types = {entry["class_type"] for entry in api.values()}
    assert {"TMDFlowHeadLoader", "TMDApplyFlowHead", "TMDScheduler", "TMDSampler", "BasicGuider"} <= types
    assert "KSampler" not in types and "CFGGuider" not in types


@pytest.mark.parametrize("path", UI_FILES, ids=lambda p: p.name)
def test_read_me_note_names_the_files_the_loaders_use(path):
    workflow = load(path)
    note = next(n for n in workflow["nodes"] if n["type"] == "MarkdownNote")["widgets_values"][0]
    api = load(twin(path))
    student = next(e["inputs"]["unet_name"] for e in api.values() if e["class_type"] == "UNETLoader")
    head = next(e["inputs"]["head_name"] for e in api.values() if e["class_type"] == "TMDFlowHeadLoader")
    assert f"diffusion_models/{student}" in note and f"tmd/{head}" in note
    assert head.removesuffix("_head.safetensors") in student  # one student, one name stem


# The checks above must be able to fail: each broken copy of a workflow is reported.
def _first(workflow: dict, node_type: str) -> dict:
    return next(n for n in workflow["nodes"] if n["type"] == node_type)


def _unknown_type(w):
    _first(w, "BasicGuider")["type"] = "TMDGuider"


def _extra_widget(w):
    _first(w, "TMDScheduler")["widgets_values"].append(3)


def _retyped_link(w):
    w["links"][0][5] = "LATENT"


def _dropped_link(w):
    _first(w, "SamplerCustomAdvanced")["inputs"][2]["link"] = None


@pytest.mark.parametrize("breaks", [_unknown_type, _extra_widget, _retyped_link, _dropped_link])
def test_ui_check_reports_a_broken_workflow(breaks):
    workflow = copy.deepcopy(load(UI_FILES[0]))
    breaks(workflow)
    assert check_ui_workflow(workflow)


@pytest.mark.parametrize("edit", ["missing input", "unknown input", "wrong output", "wrong widget type"])
def test_api_check_reports_a_broken_prompt(edit):
    prompt = copy.deepcopy(load(twin(UI_FILES[0])))
    sampler = next(e for e in prompt.values() if e["class_type"] == "SamplerCustomAdvanced")
    scheduler = next(e for e in prompt.values() if e["class_type"] == "TMDScheduler")
    if edit == "missing input":
        del sampler["inputs"]["sigmas"]
    elif edit == "unknown input":
        scheduler["inputs"]["denoise"] = 1.0
    elif edit == "wrong output":
        sampler["inputs"]["sigmas"] = sampler["inputs"]["sampler"]
    else:
        scheduler["inputs"]["steps"] = "2"
    assert check_api_prompt(prompt)
