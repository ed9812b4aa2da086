# SPDX-License-Identifier: Apache-2.0
"""Each example workflow, fetched from the template route ComfyUI's Templates browser uses, opens in ComfyUI's own
frontend (headless Debian Chromium driven by Playwright, against the `--cpu` server) with every node known,
every widget holding the file's value, and no missing-node or missing-model dialog; the browser decodes its
thumbnail. The screenshots are the README's pictures of the graphs and, scaled down, the templates'
thumbnails: set TMD_SCREENSHOTS to a folder to keep both (<name>.png and <name>.jpg)."""
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
THUMBNAIL_CROP = (66, 80, 1580, 830)  # the canvas without the frontend's menus, in VIEWPORT pixels
THUMBNAIL_WIDTH, THUMBNAIL_QUALITY = 640, 80  # example_workflows/<name>.jpg: about 25 KB
TEMPLATES = "/api/workflow_templates/comfyui_tmd"  # the pack's folder name in the test world

LOADED_NODES_JS = """() => window.app.graph._nodes.map(n => ({
    id: n.id, type: n.type, missing: !LiteGraph.registered_node_types[n.type], errors: Boolean(n.has_errors),
    widgets: (n.widgets || []).map(w => w.value)}))"""
DIALOGS_JS = "() => Array.from(document.querySelectorAll('.p-dialog')).map(d => d.innerText)"
THUMBNAIL_JS = """src => new Promise(done => {
    const img = new Image(); img.onload = () => done([img.naturalWidth, img.naturalHeight]);
    img.onerror = () => done(null); img.src = src; })"""


@pytest.fixture(scope="module")
def browser():
    sync_api = pytest.importorskip("playwright.sync_api", reason="the frontend check needs `pip install playwright`")
    if not CHROMIUM.exists():
        pytest.skip("the frontend check needs Debian's chromium package (/usr/bin/chromium)")
    with sync_api.sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=str(CHROMIUM), args=CHROMIUM_FLAGS)
        yield browser
        browser.close()


def open_in_frontend(browser, url: str, workflow: dict, screenshot: Path | None = None,
                     thumbnail: str | None = None) -> tuple[list, list, list | None]:
    """Load `workflow` the way dropping its file on the canvas (or picking its template) does; return the nodes,
    the open dialogs and the pixel size the browser decodes the `thumbnail` URL to (None if it cannot)."""
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
        size = page.evaluate(THUMBNAIL_JS, thumbnail) if thumbnail else None
        return nodes, dialogs, size
    finally:
        page.close()


def save_thumbnail(screenshot: Path, jpeg: Path) -> None:
    """The Templates browser's picture of a workflow: its screenshot's canvas scaled to THUMBNAIL_WIDTH, as a JPEG."""
    from PIL import Image
    with Image.open(screenshot) as image:
        canvas = image.convert("RGB").crop(THUMBNAIL_CROP)
        height = round(canvas.height * THUMBNAIL_WIDTH / canvas.width)
        canvas.resize((THUMBNAIL_WIDTH, height), Image.LANCZOS).save(jpeg, "JPEG", quality=THUMBNAIL_QUALITY,
                                                                      optimize=True)


@pytest.mark.parametrize("name", [*WORKFLOW_NAMES, TOY_WORKFLOW])
def test_workflow_opens_cleanly_in_the_frontend(browser, server, tmp_path, name):
    url, _ = server
    workflow = http_json(f"{url}{TEMPLATES}/{name}.json")  # what picking it under Templates loads
    assert workflow == json.loads((WORKFLOWS / f"{name}.json").read_text(encoding="utf-8"))
    picture = tmp_path / f"{name}.png"
    nodes, dialogs, thumbnail = open_in_frontend(browser, url, workflow, picture, f"{TEMPLATES}/{name}.jpg")
    if os.environ.get("TMD_SCREENSHOTS"):
        folder = Path(os.environ["TMD_SCREENSHOTS"])
        shutil.copy(picture, folder / picture.name)
        save_thumbnail(picture, folder / f"{name}.jpg")
    assert [n for n in nodes if n["missing"] or n["errors"]] == []
    saved = {n["id"]: n.get("widgets_values", []) for n in workflow["nodes"]}
    assert {n["id"]: n["widgets"] for n in nodes} == saved  # every widget shows the file's value
    assert [d for d in dialogs if d.startswith(ALERT_DIALOGS)] == []
    assert thumbnail is not None and thumbnail[0] > 0  # the Templates browser can show its picture


def test_the_check_sees_a_missing_node(browser, server):
    """The same check on a workflow naming a node type no pack provides reports it (the check can fail)."""
    url, _ = server
    workflow = copy.deepcopy(json.loads((WORKFLOWS / f"{WORKFLOW_NAMES[0]}.json").read_text(encoding="utf-8")))
    next(n for n in workflow["nodes"] if n["type"] == "TMDSampler")["type"] = "TMDSamplerFromTheFuture"
    nodes, dialogs, _ = open_in_frontend(browser, url, workflow)
    assert [n["type"] for n in nodes if n["missing"]] == ["TMDSamplerFromTheFuture"]
    assert any(d.startswith("Some Nodes Are Missing") and "TMDSamplerFromTheFuture" in d for d in dialogs)
