# SPDX-License-Identifier: Apache-2.0
"""benchmarks/toy_motion_steering.py on models with known answers: one that follows the caption's direction,
one that returns the real clip whatever the caption, and a Wan that cannot read its caption at all."""
import json

import torch

from comfyui_tmd.benchmarks import toy_motion_steering as probe
from comfyui_tmd.tmd_core import WAN_TINY, WanDiT, save_wan
from comfyui_tmd.toy.clips import make_clips
from comfyui_tmd.toy.latent import encode
from comfyui_tmd.toy.text import encode_caption

CAPTION = "a green triangle moving down"


class CleanClipModel(torch.nn.Module):
    """v such that x_t − t·v is a real clip of the caption the context encodes (or always of `fixed`)."""

    def __init__(self, captions: list[str], fixed: str | None = None):
        super().__init__()
        self.contexts = {caption: encode_caption(caption) for caption in captions}
        self.clean = {caption: encode(make_clips(1, 7, caption)[0].frames[None]) for caption in captions}
        self.fixed = fixed

    def forward(self, x_t, timestep, context):
        caption = self.fixed or next(c for c, ctx in self.contexts.items() if torch.equal(ctx, context[0]))
        return (x_t - self.clean[caption]) / (timestep[0] / 1000)


def test_opposite_direction_reverses_only_the_direction():
    assert probe.opposite_direction("a red square moving left") == "a red square moving right"
    assert probe.opposite_direction("a blue circle moving up") == "a blue circle moving down"
    assert probe.opposite_direction(CAPTION) == "a green triangle moving up"


def test_a_model_that_follows_the_caption_scores_one_then_zero():
    follower = CleanClipModel([CAPTION, probe.opposite_direction(CAPTION)])
    table = probe.steering(follower, [CAPTION], clips=2)
    assert list(table) == [f"{t:g}" for t in probe.TIMES]
    assert all(cells == {"own caption": 1.0, "opposite direction": 0.0} for cells in table.values())


def test_a_model_that_ignores_the_caption_scores_the_same_under_both():
    keeper = CleanClipModel([CAPTION, probe.opposite_direction(CAPTION)], fixed=CAPTION)
    table = probe.steering(keeper, [CAPTION], clips=2)
    assert all(cells == {"own caption": 1.0, "opposite direction": 1.0} for cells in table.values())


def test_a_wan_blind_to_its_caption_scores_the_same_under_both_and_report_is_written(tmp_path):
    torch.manual_seed(3)
    wan = WanDiT(WAN_TINY)
    for block in wan.blocks:  # the caption reaches the tokens only through cross-attention's output projection
        torch.nn.init.zeros_(block.cross_attn.o.weight), torch.nn.init.zeros_(block.cross_attn.o.bias)
    save_wan(wan, tmp_path / "blind.safetensors")
    table = probe.main(["--wan", str(tmp_path / "blind.safetensors"), "--captions", "2", "--clips", "2",
                        "--out", str(tmp_path / "out")])
    assert all(cells["own caption"] == cells["opposite direction"] for cells in table.values())
    saved = json.loads((tmp_path / "out" / "toy_motion_steering.json").read_text())
    assert saved["results"] == table and saved["wan"] == "blind.safetensors"
    assert "| 0.95 |" in (tmp_path / "out" / "toy_motion_steering.md").read_text()
