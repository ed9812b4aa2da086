# SPDX-License-Identifier: Apache-2.0
"""The GPU benchmark's CPU dry run (--small) goes through every code path it can without a GPU: samplers in the
torch and kernel modes (Triton's interpreter), the FLOP floor, the JSON file. No timing is asserted."""
import json

import pytest

from comfyui_tmd.benchmarks import flops, gpu_speed
from comfyui_tmd.tmd_kernels import triton_gate


def test_small_dry_run_writes_a_table_and_json(tmp_path, capsys, monkeypatch):
    few = lambda teacher_steps, real=gpu_speed.samplers: real(teacher_steps)[::4]  # teacher, TMD N2H5 M=2 # noqa: E731
    monkeypatch.setattr(gpu_speed, "samplers", few)
    result = gpu_speed.main(["--small", "--repeats", "1", "--out", str(tmp_path)])
    lines = capsys.readouterr().out.strip().splitlines()
    written = json.loads(next(tmp_path.glob("gpu_speed-small-cpu-*.json")).read_text())
    assert json.loads(lines[-1]) == written == json.loads(json.dumps(result))
    assert lines[0].startswith("DRY RUN")
    rows = {(row["sampler"], row["mode"]): row for row in result["samplers"]}
    names = ("teacher 2 steps, CFG", gpu_speed.TARGET)
    assert set(rows) == {(name, mode) for name in names for mode in gpu_speed.MODES}
    tokens, config = flops.tokens_of(gpu_speed.SMALL_MODEL, gpu_speed.SMALL_LATENT), gpu_speed.SMALL_MODEL
    assert rows[gpu_speed.TARGET, "torch"]["flops"] == flops.tmd_sampler(config, tokens, 8, 2, 2, 5)
    assert rows[gpu_speed.TARGET, "torch"]["nfe"] == pytest.approx(2 * (1 + 5 / 6))
    assert rows[gpu_speed.TARGET, "kernels+graph"]["skipped"] == "CUDA graphs need a GPU"
    assert rows["teacher 2 steps, CFG", "kernels+graph"]["skipped"] == "graphs apply to TMD's inner loop only"
    ran_kernels = triton_gate.INTERPRETER
    for mode in ("torch", "kernels") if ran_kernels else ("torch",):
        row = rows[gpu_speed.TARGET, mode]
        assert row["seconds"] > 0 and row["over_floor"] == pytest.approx(row["seconds"] / row["floor_s"])
    assert all(("speedup" in k) == ran_kernels for k in result["kernels"]) and len(result["kernels"]) == 5
