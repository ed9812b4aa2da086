# SPDX-License-Identifier: Apache-2.0
"""The CPU speed benchmark runs end to end and ends with one JSON line (no timing is asserted here)."""
import json

import pytest

from comfyui_tmd.benchmarks import cpu_speed


def test_benchmark_prints_a_table_and_a_final_json_line(capsys, monkeypatch):
    small = dict(dim=64, layers=6, latent=(1, 16, 1, 4, 4), text_tokens=8, repeats=1, teacher_steps=2)
    monkeypatch.setattr(cpu_speed, "run", lambda real=cpu_speed.run, **kw: real(**{**kw, **small}))
    cpu_speed.main([])
    lines = capsys.readouterr().out.strip().splitlines()
    result = json.loads(lines[-1])
    assert "one inner head step" in "\n".join(lines[:-1])
    for key in ("inner_step_over_forward", "nfe_ratio", "e2e_speedup", "e2e_speedup_batched_cfg"):
        assert result[key] > 0
    assert result["tmd_nfe"] == pytest.approx(2 * (1 + 5 / 6))
    assert result["nfe_ratio"] == pytest.approx(4 / result["tmd_nfe"])
