# SPDX-License-Identifier: Apache-2.0
"""The toy world (docs/method.md §8): captioned clips of coloured shapes, an exact 16-channel latent format, a
deterministic toy text encoder, an analytic detector and quality metrics.

A top-level folder of its own (not under training/) because the ComfyUI nodes import it (the toy text
encoder and decoder nodes), and nodes must never import training/. Plain torch and numpy, no ComfyUI.
"""
from .clips import Clip, ClipSpec, make_clips, random_spec, render
from .detector import Detection, detect
from .latent import LATENT_CHANNELS, decode, encode, latent_shape
from .text import NEGATIVE_PROMPT, ToyVocabularyError, encode_caption, encode_captions
from .world import COLOURS, DIRECTIONS, FRAMES, SHAPES, SIDE, caption_of, parse_caption

__all__ = [
    "COLOURS", "Clip", "ClipSpec", "DIRECTIONS", "Detection", "FRAMES", "LATENT_CHANNELS", "NEGATIVE_PROMPT", "SHAPES",
    "SIDE", "ToyVocabularyError", "caption_of", "decode", "detect", "encode", "encode_caption", "encode_captions",
    "latent_shape", "make_clips", "parse_caption", "random_spec", "render",
]
