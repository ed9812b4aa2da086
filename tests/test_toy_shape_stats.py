# SPDX-License-Identifier: Apache-2.0
"""benchmarks/toy_shape_stats.py: real clips read as their own shapes with the statistics the detector's rule
expects (fill 1 for squares, about π/4 for circles, negative skew for triangles); a teacher run's mechanics."""
import json
import math

from comfyui_tmd.benchmarks import toy_shape_stats

from toy_checkpoints import write_toy_checkpoints


def test_real_clips_read_as_their_shapes(tmp_path):
    report = toy_shape_stats.main(["--real", "--prompts", "6", "--clips", "3", "--out", str(tmp_path)])
    shapes = report["shapes"]
    assert set(shapes) == {"square", "circle", "triangle"}
    for shape, row in shapes.items():
        assert row["read"][shape] == row["clips"] == 6  # 6 prompts hold every shape twice, 3 clips each
        assert row["template_read"][shape] == row["readers_agree"] == 6
    assert shapes["square"]["fill"] > 0.98 and abs(shapes["circle"]["fill"] - math.pi / 4) < 0.05
    assert shapes["triangle"]["skew"] < -0.4 < 0.1 > abs(shapes["square"]["skew"])
    assert 25 < shapes["square"]["mass"] < 64  # sizes 5–8 px: areas 25–64
    assert json.loads((tmp_path / "toy_shape_stats.json").read_text())["shapes"] == shapes


def test_teacher_run_counts_every_clip(tmp_path):
    teacher = write_toy_checkpoints(tmp_path)["teacher"]
    report = toy_shape_stats.main(["--teacher", str(teacher), "--steps", "2", "--prompts", "3", "--clips", "2",
                                   "--out", str(tmp_path / "out")])
    assert report["method"].startswith("teacher Euler 2 steps")
    assert all(sum(row["read"].values()) == row["clips"] == 2 for row in report["shapes"].values())
