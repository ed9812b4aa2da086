# SPDX-License-Identifier: Apache-2.0
"""Tier 1: every example workflow is well formed, uses only pack nodes and stock nodes with the inputs they
have, carries the node properties ComfyUI-Manager reads and a thumbnail for ComfyUI's Templates browser, and
its API twin is exactly what the frontend would queue for it. The README's and the notes' M and NFE are the
training configs' ones."""
import copy
import json
import re
from pathlib import Path

import pytest

from comfyui_tmd import __version__
from comfyui_tmd.tmd_core.wan_config import NAMED_CONFIGS
from workflow_nodes import FRONTEND_ONLY, NODES, check_api_prompt, check_ui_workflow, ui_to_api

ROOT = Path(__file__).resolve().parents[1]
WORKFLOWS = ROOT / "example_workflows"  # the folder ComfyUI serves as the pack's templates
UI_FILES = sorted(WORKFLOWS.glob("*.json"))  # API twins live in example_workflows/api/: ComfyUI lists no subfolder
COMFYUI_VERSION = "0.3.64"  # the ComfyUI the workflows were saved against (cnr_id comfy-core, ver)
THUMBNAIL_LIMIT = 100_000  # bytes
CONFIGS = {"wan2.1_t2v_1.3B_tmd.json": "wan21_1_3b.yaml", "wan2.1_t2v_14B_tmd.json": "wan21_14b.yaml"}


def load(path: Path) -> dict:
    return json.loads(path.read_text(encoding="utf-8"))


def twin(path: Path) -> Path:
    return WORKFLOWS / "api" / path.name


def test_there_are_workflows_for_both_wan_sizes_each_with_an_api_twin_and_a_thumbnail():
    names = {p.name for p in UI_FILES}
    assert {"wan2.1_t2v_1.3B_tmd.json", "wan2.1_t2v_14B_tmd.json", "toy_tmd.json"} <= names
    assert {p.name for p in (WORKFLOWS / "api").glob("*.json")} == names
    assert {p.stem for p in WORKFLOWS.glob("*.jpg")} == {p.stem for p in UI_FILES}
    assert not (ROOT / "workflows").exists()  # ComfyUI would serve a second folder and log a rename hint


@pytest.mark.parametrize("path", UI_FILES, ids=lambda p: p.name)
def test_thumbnail_is_a_small_jpeg(path):
    thumbnail = path.with_suffix(".jpg")
    data = thumbnail.read_bytes()
    assert data[:3] == b"\xff\xd8\xff" and data[-2:] == b"\xff\xd9"  # JPEG start and end markers
    assert len(data) < THUMBNAIL_LIMIT


@pytest.mark.parametrize("path", UI_FILES, ids=lambda p: p.name)
def test_nodes_carry_the_properties_comfyui_manager_reads(path):
    """cnr_id and ver as the frontend saves them, so ComfyUI-Manager can offer "install missing nodes"."""
    for node in load(path)["nodes"]:
        properties = node["properties"]
        if node["type"] in FRONTEND_ONLY:
            assert "cnr_id" not in properties
            continue
        pack = NODES[node["type"]].pack
        assert list(properties)[:3] == ["cnr_id", "ver", "Node name for S&R"]
        assert properties["cnr_id"] == ("comfyui-tmd" if pack else "comfy-core")
        assert properties["ver"] == (__version__ if pack else COMFYUI_VERSION)
        assert properties["Node name for S&R"] == node["type"]


def test_pack_version_and_registry_id_are_the_pyproject_ones():
    tomllib = pytest.importorskip("tomllib", reason="tomllib is in the standard library from Python 3.11")
    pyproject = tomllib.loads((ROOT / "pyproject.toml").read_text(encoding="utf-8"))
    assert pyproject["project"]["version"] == __version__
    comfy = pyproject["tool"]["comfy"]
    assert comfy["PublisherId"] == "comfyui-tmd" and comfy["DisplayName"]
    icon = re.fullmatch(r"https://raw\.githubusercontent\.com/comfyui-tmd/comfyui-tmd/main/(example_workflows/[^/]+\.jpg)",
                        comfy["Icon"])
    assert icon and (ROOT / icon.group(1)).is_file()


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
def test_scheduler_takes_the_patched_model_and_the_head_s_trained_steps(path):
    api = load(twin(path))
    scheduler = next(e for e in api.values() if e["class_type"] == "TMDScheduler")
    origin, slot = scheduler["inputs"]["model"]
    assert api[origin]["class_type"] == "TMDApplyFlowHead" and slot == 0
    assert scheduler["inputs"]["steps"] == 0 and scheduler["inputs"]["gamma"] == 0  # 0: what the head was trained for


def effective_nfe(config: dict) -> float:
    """M·(1 + (N − 1)·H/L) of a training config's student."""
    model = config["model"]
    layers = NAMED_CONFIGS[model["wan"]].num_layers
    return model["outer_steps"] * (1 + (model["inner_steps"] - 1) * model["head_blocks"] / layers)


@pytest.mark.parametrize("name", sorted(CONFIGS))
def test_notes_and_readmes_state_the_trained_m_and_nfe(name):
    """The student a Wan workflow names is trained by its config: its note, example_workflows/README.md and the
    README give that config's N, H, M and effective NFE."""
    yaml = pytest.importorskip("yaml", reason="the training configs are YAML (pyyaml comes with .[dev])")
    config = yaml.safe_load((ROOT / "training" / "configs" / CONFIGS[name]).read_text(encoding="utf-8"))
    model = config["model"]
    tag = f"N{model['inner_steps']}H{model['head_blocks']}, M = {model['outer_steps']}"
    nfe = effective_nfe(config)

    def stated(text: str, pattern: str) -> list[float]:
        return [float(x) for x in re.findall(pattern.format(tag=re.escape(tag)), text)]

    note = next(n for n in load(WORKFLOWS / name)["nodes"] if n["type"] == "MarkdownNote")["widgets_values"][0]
    table = (WORKFLOWS / "README.md").read_text(encoding="utf-8")
    readme = (ROOT / "README.md").read_text(encoding="utf-8")
    for text, pattern in ((note, r"\({tag}: ([0-9.]+) effective NFE"),
                          (table, r"\| `" + re.escape(name) + r"` \|[^|]*\| {tag} \| ([0-9.]+) \|"),
                          (readme, r"{tag}[^0-9|]*: ([0-9.]+) effective NFE")):
        values = stated(text, pattern)
        assert values and all(abs(v - nfe) < 0.005 for v in values), (pattern, values, nfe)


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
