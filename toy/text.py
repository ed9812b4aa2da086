# SPDX-License-Identifier: Apache-2.0
"""A deterministic toy text encoder: caption -> Wan-shaped context [L, 4096] (L = CONTEXT_TOKENS).

Token i of a caption (its words, then an end token) is (word vector + position vector of i) / √2;
later rows are zero, as Wan's padded umT5 output is. The position term makes word order matter, so
"a red square" and "a square red" differ, and each attribute is bound to its slot.

Every vector is a pure function of a string: a SplitMix64 stream seeded by zlib.crc32 of the string,
mapped to uniform values of unit variance. Only integer arithmetic and exact float scaling are used, so
the context is bit-identical on every machine, numpy and torch version.

Unknown words are an error (ToyVocabularyError names the word and the vocabulary), not a silent
fallback: a caption the toy world cannot draw should never reach the model unnoticed.
"""
from __future__ import annotations

import zlib

import numpy as np
import torch

from ..tmd_core.errors import TMDError
from .world import COLOURS, DIRECTIONS, SHAPES

CONTEXT_TOKENS = 16
TEXT_DIM = 4096
END_TOKEN = "<end>"
VOCABULARY = ("a", "an", "the", "moving", *COLOURS, *SHAPES, *DIRECTIONS)
# The unconditional caption: condition dropout in training and the negative prompt of CFG both use it.
NEGATIVE_PROMPT = ""

_GOLDEN = np.uint64(0x9E3779B97F4A7C15)
_MIX1 = np.uint64(0xBF58476D1CE4E5B9)
_MIX2 = np.uint64(0x94D049BB133111EB)
_UNIT_VARIANCE = np.sqrt(12.0)  # a uniform on [-1/2, 1/2) has variance 1/12


class ToyVocabularyError(TMDError, ValueError):
    """A caption with a word the toy text encoder has no vector for, or with too many words."""


def hashed_vector(key: str, size: int = TEXT_DIM) -> np.ndarray:
    """A fixed pseudo-random vector of unit-variance values for `key`: [size] float64."""
    index = np.arange(1, size + 1, dtype=np.uint64)
    with np.errstate(over="ignore"):  # SplitMix64 relies on arithmetic modulo 2**64
        z = np.uint64(zlib.crc32(key.encode("utf-8"))) + index * _GOLDEN
        z = (z ^ (z >> np.uint64(30))) * _MIX1
        z = (z ^ (z >> np.uint64(27))) * _MIX2
        z = z ^ (z >> np.uint64(31))
    uniform = (z >> np.uint64(11)).astype(np.float64) * 2.0**-53  # [0, 1), exact
    return (uniform - 0.5) * _UNIT_VARIANCE


def tokenize(caption: str) -> list[str]:
    """Lower-cased words of the caption and the end token; one-sentence error for unknown or too many words."""
    words = caption.lower().split()
    for word in words:
        if word not in VOCABULARY:
            raise ToyVocabularyError(f"the toy text encoder does not know the word {word!r}; "
                                     f"it knows {', '.join(VOCABULARY)}.")
    if len(words) >= CONTEXT_TOKENS:
        raise ToyVocabularyError(f"caption {caption!r} has {len(words)} words; "
                                 f"the toy encoder takes at most {CONTEXT_TOKENS - 1}.")
    return [*words, END_TOKEN]


def encode_caption(caption: str) -> torch.Tensor:
    """Caption -> context [CONTEXT_TOKENS, 4096] float32."""
    context = np.zeros((CONTEXT_TOKENS, TEXT_DIM))
    for position, token in enumerate(tokenize(caption)):
        context[position] = (hashed_vector(token) + hashed_vector(f"<position {position}>")) / np.sqrt(2.0)
    return torch.from_numpy(context.astype(np.float32))


def encode_captions(captions: list[str]) -> torch.Tensor:
    """Captions -> context [B, CONTEXT_TOKENS, 4096] float32."""
    return torch.stack([encode_caption(caption) for caption in captions])
