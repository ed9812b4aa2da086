# SPDX-License-Identifier: Apache-2.0
"""Short umT5 contexts are zero-padded to the model's text length (512 for Wan2.1, as official Wan and ComfyUI
pad), so the core gives the padded reference's answer; the length travels in the Wan file's metadata."""
import dataclasses

import torch

from comfyui_tmd.tmd_core import FlowHeadSpec, TMDStudent, generate_teacher, generate_tmd, load_wan, save_wan
from comfyui_tmd.tmd_core.wan_config import config_metadata, detect_wan_config
from comfyui_tmd.tmd_core.wan_model import pad_context

from factories import SMALL, perturb_extras, random_wan

PADDED = dataclasses.replace(SMALL, text_len=32)  # a small stand-in for Wan's 512
LATENT = (1, 16, 2, 4, 4)


def relative_error(a, b):
    return ((a - b).norm() / b.norm()).item()


def contexts(tokens: int = 7):
    context = torch.randn(1, tokens, 4096, generator=torch.Generator().manual_seed(1))
    return context, pad_context(context, PADDED.text_len)


def test_pad_context_appends_zero_tokens_and_leaves_long_contexts():
    short, padded = contexts()
    assert padded.shape == (1, 32, 4096) and torch.equal(padded[:, :7], short) and not padded[:, 7:].any()
    long = torch.randn(1, 40, 4096)
    assert pad_context(long, 32) is long and pad_context(short, None) is short


def test_tmd_on_a_short_context_equals_the_padded_reference():
    student = perturb_extras(TMDStudent.from_teacher(random_wan(PADDED, seed=2), FlowHeadSpec(head_blocks=2)))
    short, padded = contexts()
    with torch.no_grad():
        ours = generate_tmd(student, short, LATENT, seed=3)
        reference = generate_tmd(student, padded, LATENT, seed=3)
        student.wan.text_len = None  # what the core did before: the context as given
        unpadded = generate_tmd(student, short, LATENT, seed=3)
    assert relative_error(ours, reference) < 1e-6
    assert relative_error(unpadded, reference) > 1e-3  # padding matters: the pad tokens take part in attention


def test_teacher_cfg_pads_positive_and_negative_contexts_of_different_lengths():
    wan = random_wan(PADDED, seed=4)
    short, padded = contexts()
    negative = torch.randn(1, 3, 4096, generator=torch.Generator().manual_seed(5))
    with torch.no_grad():
        ours = generate_teacher(wan, short, negative, LATENT, seed=6, steps=3)
        reference = generate_teacher(wan, padded, pad_context(negative, 32), LATENT, seed=6, steps=3)
    assert relative_error(ours, reference) < 1e-6


def test_text_length_travels_in_the_metadata(tmp_path):
    save_wan(random_wan(PADDED, seed=7), tmp_path / "wan.safetensors")
    assert load_wan(tmp_path / "wan.safetensors").text_len == 32
    state = random_wan(SMALL, seed=7).state_dict()
    assert detect_wan_config(state).text_len == 512  # official and ComfyUI files carry no such metadata
    older = {"config": '{"transformer": {"num_heads": 2}}'}  # what this pack wrote before the field
    assert detect_wan_config(state, older).text_len is None
    assert detect_wan_config(state, config_metadata(PADDED)) == PADDED
