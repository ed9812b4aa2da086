# SPDX-License-Identifier: Apache-2.0
"""umT5 through Hugging Face transformers, run as Wan2.1's official text encoder runs it.

Wan2.1 (`wan/modules/t5.py`, `T5EncoderModel`) cleans each prompt (ftfy's repair, HTML entities unescaped
twice, whitespace runs made one space), tokenizes it with the umT5 tokenizer adding the end-of-sequence token,
pads it to 512 with the padding masked out, runs umT5-XXL's encoder and keeps the last hidden state of the real
tokens. This class does the same (ftfy's repair only where ftfy is installed; it changes only mis-decoded text).

Weights: a Hugging Face model folder (config.json and weights), or one safetensors file in the Hugging Face T5
layout such as ComfyUI's umt5_xxl_fp16.safetensors / _bf16; the model's sizes are then read from the weights,
so any umT5 works and the context width is the file's. fp8 "scaled" files need ComfyUI's fp8 arithmetic: use
`--encoder comfyui` for those. Needs `transformers` (the `prompts` extra; it brings `sentencepiece` for
tokenizer folders that hold only spiece.model).
"""
from __future__ import annotations

import html
import importlib.util
import os
import re
from pathlib import Path
from typing import Sequence

import torch
from torch import nn

from ..tmd_core.safe_files import read_safetensors
from ..tmd_core.wan_config import UMT5_TOKENS
from .errors import PromptEncodingError
from .umt5_files import TOKENIZER_KEY, UMT5Shape, read_umt5_shape

DTYPES = {"fp32": torch.float32, "bf16": torch.bfloat16, "fp16": torch.float16}


def _transformers():
    if importlib.util.find_spec("transformers") is None:
        raise PromptEncodingError("--encoder transformers needs the transformers package: "
                                  "pip install 'comfyui-tmd[prompts]' (or use --encoder comfyui).")
    import transformers
    return transformers


def clean_prompt(text: str) -> str:
    """Wan's 'whitespace' cleaning of a prompt before tokenizing."""
    if importlib.util.find_spec("ftfy") is not None:
        import ftfy
        text = ftfy.fix_text(text)
    text = html.unescape(html.unescape(text)).strip()
    return re.sub(r"\s+", " ", text).strip()


def load_tokenizer(path: str | os.PathLike):
    """The umT5 tokenizer from a folder: a Hugging Face tokenizer folder, or one holding only spiece.model.
    It must end every prompt with the end-of-sequence token, as Wan's tokenizer call does."""
    folder = Path(path)
    if not folder.is_dir():
        raise PromptEncodingError(f"--tokenizer {path} is not a folder; give the umT5 tokenizer's folder "
                                  "(google/umt5-xxl's, or a folder holding its spiece.model).")
    transformers = _transformers()
    if (folder / "tokenizer_config.json").is_file():
        tokenizer = transformers.AutoTokenizer.from_pretrained(folder)
    elif (folder / "spiece.model").is_file():
        tokenizer = transformers.T5Tokenizer.from_pretrained(folder)
    else:
        raise PromptEncodingError(f"--tokenizer {path} holds neither tokenizer_config.json nor spiece.model.")
    ids = tokenizer("a")["input_ids"]
    if tokenizer.eos_token_id is None or ids[-1] != tokenizer.eos_token_id:
        raise PromptEncodingError(f"the tokenizer in {path} adds no end-of-sequence token; umT5's does (</s>).")
    return tokenizer


def _from_file(path: Path, shape: UMT5Shape, dtype: torch.dtype) -> nn.Module:
    """A UMT5EncoderModel sized by the weights in one safetensors file (`shape`, read from its header)."""
    transformers = _transformers()
    config = transformers.UMT5Config(vocab_size=shape.vocab, d_model=shape.width, d_kv=shape.head_dim,
                                     d_ff=shape.ffn, num_layers=shape.layers, num_heads=shape.heads,
                                     relative_attention_num_buckets=shape.buckets, feed_forward_proj="gated-gelu",
                                     is_encoder_decoder=False)
    state, _ = read_safetensors(path)
    state.pop(TOKENIZER_KEY, None)
    for key in state:  # one tensor at a time, so the file's dtype and the model's are never both held whole
        state[key] = state[key].to(dtype)
    state.setdefault("shared.weight", state.get("encoder.embed_tokens.weight"))
    state.setdefault("encoder.embed_tokens.weight", state["shared.weight"])  # tied in umT5
    with torch.device("meta"):  # no memory for weights about to be replaced
        model = transformers.UMT5EncoderModel(config)
    missing = model.load_state_dict(state, strict=False, assign=True).missing_keys  # a decoder, if any, is unused
    if missing:
        raise PromptEncodingError(f"{path.name} lacks {len(missing)} umT5 encoder weights, e.g. {missing[0]}.")
    return model


def _check_weights(weights: Path) -> UMT5Shape | None:
    """The sizes of a umT5 weights file (None for a model folder), or one sentence on why it cannot be used."""
    if weights.is_dir():
        if not (weights / "config.json").is_file():
            raise PromptEncodingError(f"--text-encoder {weights} is a folder without config.json; give a Hugging "
                                      "Face model folder or a umT5 safetensors file.")
        return None
    shape = read_umt5_shape(weights)
    if shape.scaled_fp8:
        raise PromptEncodingError(f"{weights.name} holds fp8 scaled weights, which only ComfyUI's arithmetic reads; "
                                  "use --encoder comfyui, or a bf16/fp16 umT5 file.")
    return shape


class TransformersUMT5:
    """A umT5 encoder and its tokenizer; `width` is the encoder's hidden size (4096 for umT5-XXL)."""

    def __init__(self, weights: str | os.PathLike, tokenizer: str | os.PathLike, device: str = "cpu",
                 dtype: str = "fp32"):
        weights = Path(weights)
        shape = _check_weights(weights)  # a wrong file is named before anything loads
        self.tokenizer = load_tokenizer(tokenizer)
        if shape is None:
            model = _transformers().UMT5EncoderModel.from_pretrained(weights, torch_dtype=DTYPES[dtype])
        else:
            model = _from_file(weights, shape, DTYPES[dtype])
        self.model = model.to(device).eval().requires_grad_(False)
        self.width = self.model.config.d_model
        self.device = torch.device(device)

    def tokenize(self, text: str) -> list[int]:
        return self.tokenizer(clean_prompt(text))["input_ids"]  # ends with </s>

    def encode(self, batch: Sequence[list[int]]) -> list[torch.Tensor]:
        ids = torch.full((len(batch), UMT5_TOKENS), self.tokenizer.pad_token_id, dtype=torch.long)  # [b, 512]
        mask = torch.zeros_like(ids)
        for row, tokens in enumerate(batch):
            ids[row, :len(tokens)] = torch.tensor(tokens)
            mask[row, :len(tokens)] = 1
        hidden = self.model(input_ids=ids.to(self.device), attention_mask=mask.to(self.device)).last_hidden_state
        return [states[:len(tokens)].float().cpu() for states, tokens in zip(hidden, batch, strict=True)]
