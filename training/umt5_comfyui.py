# SPDX-License-Identifier: Apache-2.0
"""umT5 through ComfyUI's own text encoder, imported lazily from a checkout (never from the pack's nodes).

What ComfyUI gives (0.3.64, `comfy/text_encoders/wan.py`): CLIPLoader with type "wan" builds umT5-XXL from its
own config; the tokenizer (the `spiece_model` stored in the file) adds the end token and pads with token 0 to at
least 512 tokens, never cutting; the encoder masks the padding and zeroes the hidden states after the end token.
So CLIPTextEncode's conditioning is [1, max(512, n), 4096]: for n <= 512 already Wan's official layout. This
class keeps the first n rows (`encode_prompts` writes the zeros), so the layout does not rest on ComfyUI's
zeroing, and cuts longer prompts to 512 tokens as Wan does before encoding.

ComfyUI recognises umT5-XXL by its 24th block being 4096 wide and takes the rest of the sizes from its XXL
config; this class passes the file's own head count, head width, feed-forward width and vocabulary through
ComfyUI's `umt5xxl_model_config` model option (the same values for every umT5-XXL file, so nothing changes
for real weights; it lets a small-FFN umT5 of that depth and width load, as the tests do).
"""
from __future__ import annotations

import os
from pathlib import Path
from typing import Sequence

import torch

from ..tmd_core.wan_config import UMT5_TOKENS
from .comfyui_checkout import import_comfyui
from .errors import PromptEncodingError
from .umt5_files import read_umt5_shape

XXL_WIDTH, XXL_LAYERS = 4096, 24  # what ComfyUI's text-encoder detection takes for Wan's umT5
TOKENS_KEY = "umt5xxl"  # ComfyUI's name for Wan's umT5, the key of its token and model-option dicts


class ComfyUIUMT5:
    """ComfyUI's umT5-XXL from a umt5_xxl_*.safetensors file; `width` is 4096."""

    def __init__(self, path: str | os.PathLike, comfyui: str | os.PathLike, device: str = "cpu"):
        path = Path(path)
        shape = read_umt5_shape(path)
        if (shape.width, shape.layers) != (XXL_WIDTH, XXL_LAYERS):
            raise PromptEncodingError(f"{path.name} is a umT5 encoder of {shape.layers} blocks of width "
                                      f"{shape.width}; ComfyUI's Wan loader takes umT5-XXL only ({XXL_LAYERS} blocks "
                                      f"of width {XXL_WIDTH}); use --encoder transformers for other sizes.")
        if not shape.has_tokenizer:
            raise PromptEncodingError(f"{path.name} carries no tokenizer (spiece_model), which ComfyUI's Wan loader "
                                      "reads from the file; use ComfyUI's umt5_xxl_*.safetensors, or "
                                      "--encoder transformers with --tokenizer.")
        comfy = import_comfyui(str(comfyui), "cpu" if device == "cpu" else "cuda")
        config = {"d_ff": shape.ffn, "num_heads": shape.heads, "d_kv": shape.head_dim, "vocab_size": shape.vocab,
                  "relative_attention_num_buckets": shape.buckets}
        self.clip = comfy.sd.load_clip([str(path)], clip_type=comfy.sd.CLIPType.WAN,
                                       model_options={f"{TOKENS_KEY}_model_config": config})
        tokenizer = getattr(self.clip.tokenizer, self.clip.tokenizer.clip)  # its umT5 tokenizer (clip_umt5xxl)
        self.end, self.pad = tokenizer.end_token, tokenizer.pad_token
        self.width = shape.width

    def tokenize(self, text: str) -> list[tuple]:
        """(token, weight) pairs up to and with the end token, as CLIPTextEncode's `clip.tokenize` makes them."""
        sections = self.clip.tokenize(text)[TOKENS_KEY]  # one section: ComfyUI's umT5 tokenizer never splits
        tokens = [pair[0] for pair in sections[0]]
        return sections[0][:tokens.index(self.end) + 1]

    def encode(self, batch: Sequence[list[tuple]]) -> list[torch.Tensor]:
        states = []
        for pairs in batch:  # one prompt a call, as CLIPTextEncode encodes
            padded = list(pairs) + [(self.pad, 1.0)] * (UMT5_TOKENS - len(pairs))  # as ComfyUI's tokenizer pads
            cond = self.clip.encode_from_tokens_scheduled({TOKENS_KEY: [padded]})[0][0]  # [1, 512, 4096]
            states.append(cond[0, :len(pairs)].float().cpu())  # [n, 4096]
        return states
