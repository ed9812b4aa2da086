# SPDX-License-Identifier: Apache-2.0
"""The toy text encoder: deterministic (also across processes), Wan-shaped, order-aware, strict vocabulary."""
import hashlib
import itertools
import random
import subprocess
import sys

import pytest
import torch

from comfyui_tmd.toy.text import (CONTEXT_TOKENS, NEGATIVE_PROMPT, ToyVocabularyError, encode_caption, encode_captions,
                                  hashed_vector)
from comfyui_tmd.toy.world import all_captions

CAPTIONS = random.sample(all_captions(), 6)  # a fresh handful each run


def digest(context: torch.Tensor) -> str:
    return hashlib.sha256(context.numpy().tobytes()).hexdigest()


def test_same_caption_same_context_and_wan_shape():
    for caption in CAPTIONS:
        context = encode_caption(caption)
        assert context.shape == (CONTEXT_TOKENS, 4096) and context.dtype == torch.float32
        assert torch.equal(context, encode_caption(caption))
        words = len(caption.split())
        assert (context[: words + 1].abs().sum(1) > 0).all() and (context[words + 1:] == 0).all()  # zero padding
    assert encode_captions(CAPTIONS).shape == (len(CAPTIONS), CONTEXT_TOKENS, 4096)


def test_every_caption_and_the_negative_prompt_differ():
    contexts = [encode_caption(c) for c in [*all_captions(), NEGATIVE_PROMPT]]
    for a, b in itertools.combinations(contexts, 2):
        assert (a - b).abs().max() > 0.1


def test_word_order_matters():
    assert not torch.equal(encode_caption("a red square moving left"), encode_caption("a square red moving left"))


def test_vectors_are_unit_variance_and_independent():
    a, b = torch.from_numpy(hashed_vector("red")), torch.from_numpy(hashed_vector("blue"))
    assert abs(a.mean()) < 0.1 and abs(a.var() - 1) < 0.1
    assert abs(torch.dot(a, b) / 4096) < 0.1


def test_identical_in_a_fresh_process():
    code = ("import hashlib, sys; from comfyui_tmd.toy.text import encode_caption; "
            "print(*(hashlib.sha256(encode_caption(c).numpy().tobytes()).hexdigest() for c in sys.argv[1:]))")
    child = subprocess.run([sys.executable, "-c", code, *CAPTIONS], capture_output=True, text=True, check=True)
    assert child.stdout.split() == [digest(encode_caption(c)) for c in CAPTIONS]


@pytest.mark.parametrize("caption, named", [("a purple square moving left", "'purple'"),
                                            ("a red square moving left " * 4, "words")])
def test_unknown_words_and_long_captions_are_refused_by_name(caption, named):
    with pytest.raises(ToyVocabularyError, match=named):
        encode_caption(caption)
