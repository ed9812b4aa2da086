# SPDX-License-Identifier: Apache-2.0
"""Benchmarks write where --out (or --json) says and replace a published result only with --force; the check
comes before any work, so a refused run writes nothing. comfy_overhead refuses a path that is not ComfyUI."""
from pathlib import Path

import pytest

from comfyui_tmd.benchmarks import comfy_overhead, cpu_speed, output, toy_motion_steering, toy_quality
from comfyui_tmd.tmd_core.command_line import run_command

REPOSITORY_RESULTS = Path(__file__).resolve().parents[1] / "benchmarks" / "results"


def test_the_published_results_folder_is_the_repositorys():
    assert output.RESULTS == REPOSITORY_RESULTS
    with pytest.raises(output.BenchmarkOutputError, match="--force"):
        output.check_output([REPOSITORY_RESULTS / "toy_quality" / "toy_quality.json"], force=False)


@pytest.fixture
def published(tmp_path, monkeypatch):
    """A stand-in for benchmarks/results/ holding one result per benchmark, so no test can touch the real ones."""
    results = tmp_path / "results"
    for name in ("toy_quality/toy_quality.json", "toy_motion_steering/toy_motion_steering.md", "cpu_speed.json"):
        (results / name).parent.mkdir(parents=True, exist_ok=True)
        (results / name).write_text("published\n")
    monkeypatch.setattr(output, "RESULTS", results)
    return results


def snapshot(folder: Path) -> dict:
    return {p: p.read_bytes() if p.is_file() else None for p in sorted(folder.rglob("*"))}


# benchmark: (its main, arguments pointing at a published result)
CASES = {
    "toy_quality": (toy_quality.main, ["--out", "{results}/toy_quality"]),
    "toy_motion_steering": (toy_motion_steering.main, ["--out", "{results}/toy_motion_steering"]),
    "cpu_speed": (cpu_speed.main, ["--json", "{results}/cpu_speed.json"]),
}


@pytest.mark.parametrize("case", CASES)
def test_a_published_result_is_refused_before_any_work(case, published, capsys):
    main, argv = CASES[case]
    before = snapshot(published.parent)
    assert run_command(main, [a.format(results=published) for a in argv]) == 2
    err = capsys.readouterr().err
    assert err.startswith("error: ") and "is a published result" in err and "--force" in err and err.count("\n") == 1
    assert snapshot(published.parent) == before


def test_force_allows_replacing_and_a_new_file_needs_no_force(published):
    output.check_output([published / "cpu_speed.json"], force=True)
    output.check_output([published / "gpu_speed-1.3b-new-device.json"], force=False)


def test_toy_quality_default_out_is_outside_the_published_results():
    assert toy_quality.parse_args([]).out == str(Path("runs") / "benchmarks" / "toy_quality")


def test_comfy_overhead_refuses_a_missing_comfyui_before_anything(tmp_path, capsys):
    missing = tmp_path / "nonexistent"
    assert run_command(comfy_overhead.main, ["--comfyui", str(missing), "--json", str(tmp_path / "r.json")]) == 2
    err = capsys.readouterr().err
    assert err == f"error: --comfyui {missing} is not a ComfyUI checkout (it does not exist); give the folder that " \
                  "holds ComfyUI's main.py and comfy/.\n"
    assert not any(tmp_path.iterdir())
