# SPDX-License-Identifier: Apache-2.0
"""benchmarks/toy_quality.py --quick with tiny random checkpoints: every row, table, JSON and PNG
(no quality claims)."""
import json

import pytest

from comfyui_tmd.benchmarks import toy_quality
from comfyui_tmd.benchmarks.toy_quality import pick_captions
from comfyui_tmd.toy.world import COLOURS, DIRECTIONS, SHAPES, all_captions, parse_caption

from toy_checkpoints import write_toy_checkpoints

Image = pytest.importorskip("PIL.Image", reason="Pillow (in .[dev]) reads the PNG back")


def test_quick_run_writes_every_row(tmp_path):
    files = write_toy_checkpoints(tmp_path)
    out = tmp_path / "report"
    report = toy_quality.main(["--quick", "--teacher", str(files["teacher"]), "--tmd", str(files["tmd"]),
                               "--tmd-head", str(files["tmd_head"]), "--dmd2v", str(files["dmd2v"]), "--out", str(out)])
    names = [r["method"] for r in report["results"]]
    assert names[0] == "real clips (reference)" and len(names) == 8
    assert [r["nfe"] for r in report["results"][1:]] == [6.0, 4.0, 8.0, 1.0, 2.0, 1.25, 2.5]
    real = report["results"][0]
    assert real["adherence"]["all"] == 1.0 and real["mode_collapse"] == 0.0 and real["speckle"] == 0.0
    assert all(r["clips"] == 4 for r in report["results"])  # --quick: 2 prompts × 2 clips
    for r in report["results"]:
        for name, rate in r["adherence"].items():
            low, high = r["adherence_95"][name]
            assert 0.0 <= low <= rate <= high <= 1.0 and high - low > 0.3  # 4 clips cannot pin a rate down
    assert json.loads((out / "toy_quality.json").read_text()) == json.loads(json.dumps(report))
    table = (out / "toy_quality.md").read_text()
    assert all(name in table for name in names)
    with Image.open(out / "toy_quality.png") as png:  # 8 rows of 16 px, 2 prompts × 4 frames of 16 px, enlarged 4×
        assert png.size == (2 * 4 * 16 * 4, 8 * 16 * 4)


def test_picked_captions_are_distinct_and_cover_the_world():
    every = pick_captions(48)
    assert sorted(every) == sorted(all_captions())
    words = [parse_caption(c) for c in every]
    for block in range(0, 48, 4):
        assert {w[0] for w in words[block:block + 4]} == set(COLOURS)
        assert {w[2] for w in words[block:block + 4]} == set(DIRECTIONS)
    for first in range(46):
        assert {w[1] for w in words[first:first + 3]} == set(SHAPES)
    assert pick_captions(5) == every[:5]
