# SPDX-License-Identifier: Apache-2.0
"""benchmarks/toy_word_sensitivity.py: swaps, a model blind to its caption reads 0, an untrained one reads every
word."""
import json

import torch

from comfyui_tmd.benchmarks import toy_word_sensitivity as probe
from comfyui_tmd.tmd_core import WAN_TINY, WanDiT, save_wan


def test_swaps_replace_one_attribute_with_each_other_value():
    assert probe.swaps("a red square moving left", "direction") == [
        "a red square moving right", "a red square moving up", "a red square moving down"]
    swapped = ["a red circle moving left", "a red triangle moving left"]
    assert probe.swaps("a red square moving left", "shape") == swapped


def test_a_model_without_cross_attention_output_ignores_every_word():
    torch.manual_seed(1)
    wan = WanDiT(WAN_TINY)
    for block in wan.blocks:  # the caption reaches the tokens only through cross-attention's output projection
        torch.nn.init.zeros_(block.cross_attn.o.weight), torch.nn.init.zeros_(block.cross_attn.o.bias)
    table = probe.sensitivity(wan, ["a blue circle moving up"], clips=1)
    assert all(value == 0.0 for cells in table.values() for value in cells.values())


def test_untrained_model_reads_every_word_and_report_is_written(tmp_path):
    torch.manual_seed(2)
    save_wan(WanDiT(WAN_TINY), tmp_path / "wan.safetensors")
    results = probe.main(["--wan", str(tmp_path / "wan.safetensors"), "--captions", "1", "--clips", "1",
                          "--out", str(tmp_path / "out")])
    trained, untrained = results.values()
    assert list(trained) == [f"{t:g}" for t in probe.TIMES]
    for table in (trained, untrained):
        assert all(0.001 < value < 1.0 for cells in table.values() for value in cells.values())
    saved = json.loads((tmp_path / "out" / "toy_word_sensitivity.json").read_text())
    assert saved["results"] == results  # JSON round-trips floats exactly
    assert "| untrained (seed 0) | 0.95 |" in (tmp_path / "out" / "toy_word_sensitivity.md").read_text()
