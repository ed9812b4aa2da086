# SPDX-License-Identifier: Apache-2.0
"""encode_prompts through Hugging Face transformers on a tiny random umT5 and a tokenizer trained in the test:
Wan's layout (the real tokens' hidden states, zeros after, 512 rows, the file's width following the encoder),
equality with a float64 forward of the unpadded tokens, Wan's cut at 512 tokens, the default negative prompt,
the metadata, make_data reading the file, and one-sentence errors for bad input."""
import copy
import json
from types import SimpleNamespace

import pytest
import torch

from comfyui_tmd.tmd_core import save_wan
from comfyui_tmd.tmd_core.command_line import run_command
from comfyui_tmd.tmd_core.safe_files import read_safetensors
from comfyui_tmd.training import encode_prompts, make_data
from comfyui_tmd.training.encode_prompts import WAN_NEGATIVE_PROMPT

from factories import random_wan
from training_factories import SHARD_LATENT
from umt5_factories import random_umt5, reference_states, save_umt5, train_spiece

pytest.importorskip("transformers", reason="the transformers encoder path needs `pip install transformers`")
pytest.importorskip("sentencepiece", reason="the tiny test tokenizer is a sentencepiece model")

PROMPTS = ["a red circle moves left", "", "  the green triangle jumps over a yellow star  ",
           "two small dots spin", "   "]
WIDTH = 32
TOLERANCE = dict(rtol=1e-5, atol=1e-5)  # float32 run against the float64 reference, hidden states of size ~1


@pytest.fixture(scope="module")
def umt5(tmp_path_factory):
    """A tiny umT5: the model, its float64 copy, its weights file, the tokenizer folder and tokenizer."""
    from transformers import T5Tokenizer
    folder = tmp_path_factory.mktemp("umt5")
    tokenizer_folder = train_spiece(folder / "tokenizer")
    model = random_umt5(width=WIDTH)
    weights = save_umt5(model, folder / "umt5_tiny.safetensors")
    return SimpleNamespace(model=model, model64=copy.deepcopy(model).double(), weights=weights,
                           tokenizer_folder=tokenizer_folder, tokenizer=T5Tokenizer.from_pretrained(tokenizer_folder))


def run(tmp_path, umt5, prompts=PROMPTS, extra=()):
    prompt_file = tmp_path / "prompts.txt"
    prompt_file.write_text("\n".join(prompts) + "\n", encoding="utf-8")
    out = tmp_path / "prompts.safetensors"
    encode_prompts.main([str(prompt_file), "--out", str(out), "--encoder", "transformers", "--text-encoder",
                         str(umt5.weights), "--tokenizer", str(umt5.tokenizer_folder), "--device", "cpu", *extra])
    return read_safetensors(out)


def test_contexts_are_the_real_tokens_states_then_zeros_to_512(tmp_path, umt5):
    tensors, metadata = run(tmp_path, umt5)
    prompts = [p.strip() for p in PROMPTS if p.strip()]
    assert tensors["context"].shape == (len(prompts), 512, WIDTH)  # the width is the encoder's
    assert tensors["negative_context"].shape == (1, 512, WIDTH)
    rows = [*zip(prompts, tensors["context"], strict=True), (WAN_NEGATIVE_PROMPT, tensors["negative_context"][0])]
    for text, context in rows:
        ids = umt5.tokenizer(text)["input_ids"]
        assert ids[-1] == umt5.tokenizer.eos_token_id and 3 < len(ids) < 512
        torch.testing.assert_close(context[:len(ids)], reference_states(umt5.model64, ids).float(), **TOLERANCE)
        assert context[:len(ids)].abs().amin(dim=-1).gt(0).any() and context[:len(ids)].norm(dim=-1).gt(1).all()
        assert not context[len(ids):].any()  # Wan's zero padding
    assert json.loads(metadata["prompts"]) == prompts
    assert metadata["negative_prompt"] == WAN_NEGATIVE_PROMPT
    assert metadata["text_encoder"] == "transformers: umt5_tiny.safetensors"


def test_batches_give_the_contexts_of_one_prompt_at_a_time(tmp_path, umt5):
    one = run(tmp_path, umt5, extra=["--batch", "1"])[0]["context"]
    together = run(tmp_path, umt5, extra=["--batch", "3"])[0]["context"]
    torch.testing.assert_close(together, one, rtol=1e-6, atol=1e-6)


def test_a_prompt_over_512_tokens_is_cut_as_wan_cuts_it_with_one_warning(tmp_path, umt5, capsys):
    long = " ".join(["red circle blue square"] * 200)
    tensors, _ = run(tmp_path, umt5, prompts=[long, "a red circle", long + " left"])
    assert capsys.readouterr().err.count("warning: 2 of 3 prompts are longer than 512 tokens") == 1
    ids = umt5.tokenizer(long)["input_ids"]
    assert len(ids) > 600
    cut = ids[:511] + [umt5.tokenizer.eos_token_id]  # what Wan's tokenizer (max_length 512, truncation) keeps
    torch.testing.assert_close(tensors["context"][0], reference_states(umt5.model64, cut).float(), **TOLERANCE)


def test_negative_prompt_option_and_save_dtype(tmp_path, umt5):
    tensors, metadata = run(tmp_path, umt5, extra=["--negative", "a blue square", "--save-dtype", "bf16"])
    assert metadata["negative_prompt"] == "a blue square" and tensors["context"].dtype == torch.bfloat16
    ids = umt5.tokenizer("a blue square")["input_ids"]
    expected = reference_states(umt5.model64, ids).to(torch.bfloat16)
    torch.testing.assert_close(tensors["negative_context"][0, :len(ids)], expected, rtol=1e-2, atol=1e-2)


def test_hugging_face_folders_give_the_single_files_contexts(tmp_path, umt5):
    """A model folder (config.json + weights) and a saved tokenizer folder (tokenizer_config.json) load through
    from_pretrained and give what the ComfyUI-layout file and the spiece.model folder give."""
    umt5.model.save_pretrained(tmp_path / "model")
    umt5.tokenizer.save_pretrained(tmp_path / "tokenizer")
    from_file = run(tmp_path, umt5)[0]["context"]
    folders = SimpleNamespace(weights=tmp_path / "model", tokenizer_folder=tmp_path / "tokenizer")
    torch.testing.assert_close(run(tmp_path, folders)[0]["context"], from_file, rtol=1e-6, atol=1e-6)


def test_make_data_reads_the_file(tmp_path, teacher_file):
    """A 4096-wide tiny umT5 (Wan's context width) encodes two prompts; make_data's loader reads them back and
    make_data generates a shard from them with the small teacher."""
    folder = train_spiece(tmp_path / "tokenizer")
    weights = save_umt5(random_umt5(width=4096, layers=2, heads=2, head_dim=4, ffn=8), tmp_path / "umt5.safetensors")
    (tmp_path / "prompts.txt").write_text("a red circle moves left\ntwo small dots spin\n", encoding="utf-8")
    out = tmp_path / "prompts.safetensors"
    encode_prompts.main([str(tmp_path / "prompts.txt"), "--out", str(out), "--encoder", "transformers",
                         "--text-encoder", str(weights), "--tokenizer", str(folder), "--device", "cpu"])
    context, negative, prompts = make_data.load_prompt_file(out)
    written, _ = read_safetensors(out)
    assert context.shape == (2, 512, 4096) and negative.shape == (1, 512, 4096)
    assert torch.equal(context, written["context"]) and torch.equal(negative, written["negative_context"])
    assert prompts == ["a red circle moves left", "two small dots spin"]
    latent = ",".join(str(v) for v in SHARD_LATENT)
    make_data.main(["--teacher", str(teacher_file), "--prompts", str(out), "--out", str(tmp_path / "data"),
                    "--latent", latent, "--steps", "2", "--device", "cpu", "--dtype", "fp32"])
    shard, meta = read_safetensors(tmp_path / "data" / "shard-00000.safetensors")
    assert torch.equal(shard["context"], context) and json.loads(meta["tmd_shard"])["prompts"] == prompts


def _t5_file(model, path):
    """The tiny encoder with block 1's own position bias removed: T5's layout, not umT5's."""
    t5 = copy.deepcopy(model)
    del t5.encoder.block[1].layer[0].SelfAttention.relative_attention_bias
    return save_umt5(t5, path)


BAD_INPUT = {  # case: (how to make it, words the one-line error must hold)
    "missing prompt file": (lambda t, u: ["missing.txt"], "no prompt file at"),
    "blank prompt file": (lambda t, u: [_write(t / "p.txt", "\n  \n")], "holds no prompts"),
    "binary prompt file": (lambda t, u: [str(u.weights)], "is not a UTF-8 text file"),
    "Wan model as text encoder": (lambda t, u: ["--text-encoder", str(save_wan(random_wan(), t / "wan.safetensors"))],
                                  "is a Wan diffusion model, not a umT5 text encoder"),
    "pickle as text encoder": (lambda t, u: ["--text-encoder", _torch_save(t / "umt5-enc.pth")], "pickle"),
    "T5 as text encoder": (lambda t, u: ["--text-encoder", str(_t5_file(u.model, t / "t5.safetensors"))],
                           "not umT5"),
    "fp8 scaled for transformers": (lambda t, u: ["--text-encoder", _fp8_scaled_file(u.model, t)],
                                    "use --encoder comfyui"),
    "tokenizer not a folder": (lambda t, u: ["--tokenizer", str(u.weights)], "is not a folder"),
    "tokenizer folder without one": (lambda t, u: ["--tokenizer", str(t)], "holds neither tokenizer_config.json"),
    "model folder without config": (lambda t, u: ["--text-encoder", str(t)], "is a folder without config.json"),
    "tiny umT5 for ComfyUI": (lambda t, u: ["--encoder", "comfyui", "--comfyui", str(t)],
                              "ComfyUI's Wan loader takes umT5-XXL only"),
    "dtype for ComfyUI": (lambda t, u: ["--encoder", "comfyui", "--dtype", "fp16"], "--dtype applies to"),
    "batch 0": (lambda t, u: ["--batch", "0"], "--batch 0 must be at least 1"),
}


def _fp8_scaled_file(model, folder):
    """The tiny encoder with the marker of ComfyUI's fp8 scaled files."""
    return str(save_umt5(model, folder / "fp8.safetensors", scaled_fp8=torch.zeros(0, dtype=torch.float8_e4m3fn)))


def _write(path, text):
    path.write_text(text, encoding="utf-8")
    return str(path)


def _torch_save(path):
    torch.save({"w": torch.randn(2)}, path)
    return str(path)


@pytest.mark.parametrize("case", BAD_INPUT)
def test_bad_input_is_one_sentence_and_writes_nothing(case, tmp_path, umt5, capsys):
    make, words = BAD_INPUT[case]
    argv = [_write(tmp_path / "prompts.txt", "a red circle\n"), "--out", str(tmp_path / "out.safetensors"),
            "--encoder", "transformers", "--text-encoder", str(umt5.weights), "--tokenizer",
            str(umt5.tokenizer_folder), "--device", "cpu"]
    extra = make(tmp_path, umt5)
    if not extra[0].startswith("--"):  # a prompt file replaces the good one
        argv[0], extra = extra[0], extra[1:]
    assert run_command(encode_prompts.main, [*argv, *extra]) == 2
    err = capsys.readouterr().err
    assert err.startswith("error: ") and words in err and err.count("\n") == 1 and "Traceback" not in err
    assert not (tmp_path / "out.safetensors").exists()


def test_comfyui_path_without_a_checkout_says_so(tmp_path, umt5, monkeypatch, capsys):
    monkeypatch.delenv("COMFYUI_PATH", raising=False)
    prompt_file = _write(tmp_path / "prompts.txt", "a red circle\n")
    argv = [prompt_file, "--out", str(tmp_path / "out.safetensors"), "--text-encoder", str(umt5.weights)]
    assert run_command(encode_prompts.main, argv) == 2
    assert "needs a ComfyUI checkout: give --comfyui PATH or set COMFYUI_PATH" in capsys.readouterr().err
