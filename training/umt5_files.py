# SPDX-License-Identifier: Apache-2.0
"""What a umT5 text-encoder file holds, read from its safetensors header alone (no tensor data is loaded).

Both encoder paths of `encode_prompts` take the key layout of Hugging Face's T5 classes, which ComfyUI's
umt5_xxl_*.safetensors files use too: `shared.weight` [vocab, width], then per block
`encoder.block.{i}.layer.0.SelfAttention.{q,k,v,o,relative_attention_bias}.weight` and
`encoder.block.{i}.layer.1.DenseReluDense.{wi_0,wi_1,wo}.weight`. ComfyUI's files also carry the tokenizer as
a byte tensor `spiece_model`, and its fp8 "scaled" files a `scaled_fp8` marker. umT5 differs from T5 in giving
every block its own relative-position bias (T5 keeps one, in block 0): that is how the two are told apart.
"""
from __future__ import annotations

import dataclasses
import os
from pathlib import Path

from ..tmd_core.safe_files import read_header
from .errors import PromptEncodingError

FIRST_QUERY = "encoder.block.0.layer.0.SelfAttention.q.weight"
TOKENIZER_KEY = "spiece_model"
SCALED_FP8_KEY = "scaled_fp8"


@dataclasses.dataclass(frozen=True)
class UMT5Shape:
    """The sizes of a umT5 encoder as its weights give them."""
    width: int  # d_model: every hidden state's width, the context width (4096 for umT5-XXL, what Wan takes)
    layers: int
    heads: int
    head_dim: int  # d_kv
    ffn: int  # d_ff of the gated feed-forward
    vocab: int
    buckets: int  # relative-position buckets
    scaled_fp8: bool  # ComfyUI's fp8 weights with per-tensor scales
    has_tokenizer: bool  # carries `spiece_model`, the sentencepiece tokenizer ComfyUI reads


def _kind(keys: set[str]) -> str:
    """What a file that is not a umT5 encoder seems to be, for the error sentence."""
    if any("patch_embedding" in k or k.startswith(("blocks.", "model.diffusion_model.")) for k in keys):
        return "a Wan diffusion model"
    if any(k.startswith("text_model.") for k in keys):
        return "a CLIP text encoder"
    return f"not a text encoder in the Hugging Face T5 layout (it has no {FIRST_QUERY})"


def read_umt5_shape(path: str | os.PathLike) -> UMT5Shape:
    """The sizes of the umT5 encoder in a safetensors file, or one sentence saying why the file is not one."""
    path = Path(path)
    header, _ = read_header(path)  # one sentence for a missing, pickled, truncated or non-safetensors file
    keys = set(header)
    if FIRST_QUERY not in keys:
        raise PromptEncodingError(f"{path.name} is {_kind(keys)}, not a umT5 text encoder; give Wan's umT5-XXL "
                                  "encoder, e.g. ComfyUI's umt5_xxl_fp8_e4m3fn_scaled.safetensors.")
    layers = sum(f"encoder.block.{i}.layer.0.SelfAttention.q.weight" in keys for i in range(len(keys)))
    bias = "encoder.block.{}.layer.0.SelfAttention.relative_attention_bias.weight"
    gate = "encoder.block.0.layer.1.DenseReluDense.wi_0.weight"
    if gate not in keys or (layers > 1 and bias.format(1) not in keys):
        raise PromptEncodingError(f"{path.name} is a T5 encoder but not umT5 (its blocks share one position bias "
                                  "or its feed-forward is not gated); Wan2.1 uses umT5-XXL.")
    embedding = header.get("shared.weight") or header.get("encoder.embed_tokens.weight")
    if embedding is None:
        raise PromptEncodingError(f"{path.name} has umT5 blocks but no token embedding (shared.weight); "
                                  "the file is incomplete.")
    vocab, width = embedding["shape"]
    buckets, heads = header[bias.format(0)]["shape"]
    return UMT5Shape(width=width, layers=layers, heads=heads, head_dim=header[FIRST_QUERY]["shape"][0] // heads,
                     ffn=header[gate]["shape"][0], vocab=vocab, buckets=buckets, scaled_fp8=SCALED_FP8_KEY in keys,
                     has_tokenizer=TOKENIZER_KEY in keys)
