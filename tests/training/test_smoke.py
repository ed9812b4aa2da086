# SPDX-License-Identifier: Apache-2.0
"""The first-GPU-hour smoke at toy size (every stage, a finite export sample, the table), its refusal of a budget
that cannot fit, and memory_check's measurement of the weights against memory.py's exact parameter counts."""
import json
from pathlib import Path

import pytest

from comfyui_tmd.tmd_core.command_line import run_command
from comfyui_tmd.training import memory_check, smoke
from comfyui_tmd.training.stage_measure import StageMeasurement

REPO = Path(__file__).resolve().parents[2]
TOY = ["--config", str(REPO / "training/configs/toy.yaml"),
       "--teacher", str(REPO / "toy/checkpoints/toy_teacher.safetensors")]


def test_toy_smoke_runs_every_stage_samples_the_export_and_prints_the_table(tmp_path, capsys):
    result = smoke.main([*TOY, "--out", str(tmp_path / "run"), "--json", str(tmp_path / "smoke.json")])
    assert [r["stage"] for r in result["rows"]] == ["data", "1", "2", "sample"]
    assert result["export_finite"] is True
    assert (tmp_path / "run" / "2" / "export" / "student_head.safetensors").is_file()
    rows = {r["stage"]: r for r in result["rows"]}
    assert rows["2"]["roles"] == "student, fake_score, discriminator, teacher (frozen)"
    for row in result["rows"]:
        assert row["peak_gib"] > 0 and row["seconds_per_iteration"] > 0, row
    for stage in ("1", "2"):  # projected to the toy config's latent [16, 1, 16, 16] and batch 32 on 8 GPUs
        assert rows[stage]["projected_gib"] > 0 and rows[stage]["projected_hours"] > 0
    table = capsys.readouterr().out
    assert "random Wan-shaped contexts" in table  # no --prompts: said so
    for stage in ("data", "1", "2", "sample"):
        assert f"\n| {stage} | " in table
    assert json.loads((tmp_path / "smoke.json").read_text()) == json.loads(json.dumps(result))


def test_a_budget_that_cannot_fit_is_refused_in_one_sentence_before_any_work(tmp_path, capsys):
    out = tmp_path / "run"
    assert run_command(smoke.main, [*TOY, "--gpu-gib", "0.001", "--out", str(out)]) == 2
    error = capsys.readouterr().err.strip()
    assert error.startswith("error: stage 1 needs ~0.0898 GiB per GPU at micro-batch 4 on 8 GPUs with DDP; "
                            "it does not fit 0.001 GiB") and error.count("\n") == 0
    assert error.endswith("use more GPUs, FSDP2 (--set run.distributed=fsdp) or larger GPUs.")
    assert not out.exists()


def test_a_micro_batch_too_large_is_refused_with_the_one_that_fits_before_the_teacher_is_read(tmp_path, capsys):
    # DDP on 8 GPUs with 8 samples at a time; the refusal comes before the (absent) teacher file is read
    args = ["--config", str(REPO / "training/configs/wan21_1_3b.yaml"), "--teacher", str(tmp_path / "absent"),
            "--set", "data.micro_batch=8", "--out", str(tmp_path / "run")]
    assert run_command(smoke.main, args) == 2
    error = capsys.readouterr().err.strip()
    assert error.startswith("error: stage 1 needs ~88.5 GiB per GPU at micro-batch 8 on 8 GPUs with DDP; it does not "
                            "fit 80 GiB") and error.endswith("--set data.micro_batch=4 fits.")


def test_stage_two_seconds_weigh_one_student_step_against_every_minus_one_critic_steps():
    steps = [(1, 30.0), (2, 1.0), (3, 1.4), (4, 1.2), (5, 6.0), (6, 1.1), (7, 1.3), (8, 1.0), (9, 1.2), (10, 4.0)]
    measured = StageMeasurement("2", [], 1, 1, 1, steps, None)
    critic = sorted([1.0, 1.4, 1.2, 1.1, 1.3, 1.0, 1.2])[3]  # the median, the first iteration left out
    assert measured.seconds_per_iteration(5) == pytest.approx((5.0 + 4 * critic) / 5)
    assert measured.seconds_per_iteration() == pytest.approx(1.2)  # one kind: the median of iterations 2..10


def test_memory_check_measures_the_weights_memory_py_counts(tmp_path):
    result = memory_check.main(["--out", str(tmp_path), "--widths", "64", "--layers", "2", "--latent", "16,1,4,4",
                                "--batch", "1", "--stages", "fm,1"])
    for row in result["rows"]:  # parameter counts are exact, so the weights built before training must agree
        assert row["measured_weights_gib"] == pytest.approx(row["estimated_parts_gib"]["weights"], rel=1e-3), row
        assert 0.5 < row["ratio"] < 2.0, row
    assert json.loads((tmp_path / "memory_check.json").read_text())["rows"][0]["stage"] == "fm"
