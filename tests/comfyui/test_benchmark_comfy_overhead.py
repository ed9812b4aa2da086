# SPDX-License-Identifier: Apache-2.0
"""The ComfyUI-vs-core benchmark runs (one repeat, small Wan, CPU) and both paths sample the same video."""
from comfyui_tmd.benchmarks import comfy_overhead

from .conftest import COMFYUI_PATH


def test_benchmark_times_both_paths_on_the_same_work(comfy, capsys):
    result = comfy_overhead.main(["--comfyui", COMFYUI_PATH, "--device", "cpu", "--repeats", "1"])
    assert result["relative_difference_of_outputs"] < 1e-4
    assert result["core_s"] > 0 and result["comfyui_s"] > 0
    assert capsys.readouterr().out.strip().splitlines()[-1].startswith('{"benchmark": "comfy_overhead"')
