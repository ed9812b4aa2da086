# SPDX-License-Identifier: Apache-2.0
"""encode_prompts through ComfyUI's own umT5 (load_clip with the WAN type, CLIPTextEncode's tokenize and encode)
on a umT5 of umT5-XXL's depth and width (24 blocks of 4096, so ComfyUI detects it as Wan's text encoder) with a
tiny feed-forward, 2 heads and a tokenizer trained in the test, stored in the file as ComfyUI's files store it:
the same tokens and hidden states as the transformers path on the same weights, and what CLIPTextEncode gives."""
import pytest
import torch

from comfyui_tmd.tmd_core.safe_files import read_safetensors
from comfyui_tmd.training import encode_prompts
from comfyui_tmd.training.umt5_comfyui import ComfyUIUMT5
from comfyui_tmd.training.umt5_transformers import TransformersUMT5

from umt5_factories import random_umt5, save_umt5, train_spiece

from .conftest import COMFYUI_PATH

pytest.importorskip("transformers", reason="the comparison runs the transformers path too")
pytest.importorskip("sentencepiece", reason="the tiny test tokenizer is a sentencepiece model")

LONG = " ".join(["two small dots spin around each other"] * 80)  # over 512 tokens: cut as Wan cuts
PROMPTS = ["a red circle moves left across the frame", "色调艳丽，过曝，静态，细节模糊不清", LONG]


@pytest.fixture(scope="module")
def xxl_shaped(tmp_path_factory):
    """(weights file with the tokenizer inside, tokenizer folder) of a random 24-block, 4096-wide umT5."""
    folder = tmp_path_factory.mktemp("umt5_xxl_shaped")
    tokenizer = train_spiece(folder / "tokenizer")
    model = random_umt5(width=4096, layers=24, heads=2, head_dim=4, ffn=8)
    return save_umt5(model, folder / "umt5_xxl_tiny.safetensors", tokenizer), tokenizer


def encode(tmp_path, weights, *options):
    (tmp_path / "prompts.txt").write_text("\n".join(PROMPTS), encoding="utf-8")
    out = tmp_path / f"{options[1]}.safetensors"
    encode_prompts.main([str(tmp_path / "prompts.txt"), "--out", str(out), "--text-encoder", str(weights),
                         "--device", "cpu", *options])
    return read_safetensors(out)[0]


def test_comfyui_path_matches_the_transformers_path(comfy, xxl_shaped, tmp_path, capsys):
    weights, tokenizer = xxl_shaped
    comfy_side = ComfyUIUMT5(weights, COMFYUI_PATH, "cpu")
    hf_side = TransformersUMT5(weights, tokenizer)
    for text in PROMPTS:
        assert [pair[0] for pair in comfy_side.tokenize(text)] == hf_side.tokenize(text)
    a = encode(tmp_path, weights, "--encoder", "comfyui", "--comfyui", COMFYUI_PATH)
    assert "warning: 1 of 3 prompts are longer than 512 tokens" in capsys.readouterr().err
    b = encode(tmp_path, weights, "--encoder", "transformers", "--tokenizer", str(tokenizer))
    for key in ("context", "negative_context"):
        assert a[key].shape == b[key].shape and a[key].shape[1:] == (512, 4096)
        assert torch.equal(a[key] == 0, b[key] == 0)  # the same real lengths, zeros after
        torch.testing.assert_close(a[key], b[key], rtol=1e-4, atol=1e-4)  # two float32 implementations
    lengths = (a["context"].abs().sum(-1) > 0).sum(-1).tolist()
    assert lengths == [len(hf_side.tokenize(PROMPTS[0])), len(hf_side.tokenize(PROMPTS[1])), 512]


def test_comfyui_path_stores_what_clip_text_encode_gives(comfy_nodes, xxl_shaped, tmp_path):
    """CLIPTextEncode's conditioning (prompt weights included) is the stored context, before its zero rows."""
    weights, _ = xxl_shaped
    text = "a (red:1.3) circle moves left"
    (tmp_path / "prompts.txt").write_text(text + "\n", encoding="utf-8")
    out = tmp_path / "weighted.safetensors"
    encode_prompts.main([str(tmp_path / "prompts.txt"), "--out", str(out), "--text-encoder", str(weights),
                         "--device", "cpu", "--comfyui", COMFYUI_PATH])
    stored = read_safetensors(out)[0]["context"][0]
    clip = ComfyUIUMT5(weights, COMFYUI_PATH, "cpu").clip  # load_clip as CLIPLoader runs it
    conditioning = comfy_nodes.CLIPTextEncode().encode(clip, text)[0][0][0][0]  # [512, 4096]
    torch.testing.assert_close(stored, conditioning, rtol=0, atol=0)
