# SPDX-License-Identifier: Apache-2.0
"""Each UI-format workflow opens in ComfyUI's own frontend (headless Debian Chromium driven by Playwright,
against the `--cpu` server) with every node known, every widget holding the file's value, and no
missing-node or missing-model dialog. The screenshots are the README's pictures of the graphs: set
TMD_SCREENSHOTS to a folder to keep them."""
import copy
import json
import os
import shutil
import time
from pathlib import Path

import pytest

from .comfy_world import WORKFLOWS, http_json
from .conftest import TOY_WORKFLOW, WORKFLOW_NAMES

CHROMIUM = Path("/usr/bin/chromium")  # Debian's chromium package
CHROMIUM_FLAGS = ["--no-sandbox", "--disable-gpu", "--disable-background-networking", "--disable-component-update",
                  "--disable-sync", "--no-first-run"]
ALERT_DIALOGS = ("Some Nodes Are Missing", "Missing Models")
VIEWPORT = {"width": 1700, "height": 1100}

LOADED_NODES_JS = """() => window.app.graph._nodes.map(n => ({
    id: n.id, type: n.type, missing: !LiteGraph.registered_node_types[n.type], errors: Boolean(n.has_errors),
    widgets: (n.widgets || []).map(w => w.value)}))"""
DIALOGS_JS = "() => Array.from(document.querySelectorAll('.p-dialog')).map(d => d.innerText)"


@pytest.fixture(scope="module")
def browser():
    sync_api = pytest.importorskip("playwright.sync_api", reason="the frontend check needs `pip install playwright`")
    if not CHROMIUM.exists():
        pytest.skip("the frontend check needs Debian's chromium package (/usr/bin/chromium)")
    with sync_api.sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=str(CHROMIUM), args=CHROMIUM_FLAGS)
        yield browser
        browser.close()


def open_in_frontend(browser, url: str, workflow: dict, screenshot: Path | None = None) -> tuple[list, list]:
    """Load `workflow` the way dropping its file on the canvas does; return the nodes and open dialogs."""
    http_json(f"{url}/settings/Comfy.TutorialCompleted", True)  # no first-run template gallery over the graph
    page = browser.new_page(viewport=VIEWPORT)
    try:
        page.goto(url)
        page.wait_for_function("window.app && window.app.graph && window.app.vueAppReady !== false", timeout=60_000)
        page.evaluate("workflow => window.app.loadGraphData(workflow)", workflow)
        time.sleep(1.0)  # dialogs and widget values settle after the load promise resolves
        nodes, dialogs = page.evaluate(LOADED_NODES_JS), page.evaluate(DIALOGS_JS)
        if screenshot is not None:
            page.screenshot(path=str(screenshot))
        return nodes, dialogs
    finally:
        page.close()


@pytest.mark.parametrize("name", [*WORKFLOW_NAMES, TOY_WORKFLOW])
def test_workflow_opens_cleanly_in_the_frontend(browser, server, tmp_path, name):
    url, _ = server
    workflow = json.loads((WORKFLOWS / f"{name}.json").read_text(encoding="utf-8"))
    picture = tmp_path / f"{name}.png"
    nodes, dialogs = open_in_frontend(browser, url, workflow, picture)
    assert [n for n in nodes if n["missing"] or n["errors"]] == []
    saved = {n["id"]: n.get("widgets_values", []) for n in workflow["nodes"]}
    assert {n["id"]: n["widgets"] for n in nodes} == saved  # every widget shows the file's value
    assert [d for d in dialogs if d.startswith(ALERT_DIALOGS)] == []
    if os.environ.get("TMD_SCREENSHOTS"):
        shutil.copy(picture, Path(os.environ["TMD_SCREENSHOTS"]) / picture.name)


def test_the_check_sees_a_missing_node(browser, server):
    """The same check on a workflow naming a node type no pack provides reports it (the check can fail)."""
    url, _ = server
    workflow = copy.deepcopy(json.loads((WORKFLOWS / f"{WORKFLOW_NAMES[0]}.json").read_text(encoding="utf-8")))
    next(n for n in workflow["nodes"] if n["type"] == "TMDSampler")["type"] = "TMDSamplerFromTheFuture"
    nodes, dialogs = open_in_frontend(browser, url, workflow)
    assert [n["type"] for n in nodes if n["missing"]] == ["TMDSamplerFromTheFuture"]
    assert any(d.startswith("Some Nodes Are Missing") and "TMDSamplerFromTheFuture" in d for d in dialogs)
