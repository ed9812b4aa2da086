# SPDX-License-Identifier: Apache-2.0
"""The TMD student over any Wan-structured module: main backbone and flow head (tmd-method §2).

backbone = patch/time/text embeddings + blocks[0 : L-H]; it runs once per outer step and returns
`BackboneFeatures`, everything the N inner steps reuse (feature m, embedded text, RoPE table).
flow head = fusion(m, PatchEmbed(y_s)) + blocks[L-H : L] + Wan's output head, conditioned on
e(s) + e'(s − r); its raw output `head_θ` approximates the teacher velocity (Eq. 14).
"""
from __future__ import annotations

import dataclasses

import torch
from torch import nn

from .flow_head import FlowHeadExtras, FlowHeadSpec
from .wan_layers import sinusoidal_embedding
from .wan_model import check_inputs, embed_time, embed_tokens, patch_grid, rope_for, run_block


@dataclasses.dataclass
class BackboneFeatures:
    """What one backbone pass leaves on the device for the inner loop of its outer step."""

    tokens: torch.Tensor  # m: [B, L, dim]
    context: torch.Tensor  # embedded text: [B, S, dim]
    freqs: torch.Tensor  # RoPE: [1, L, 1, head_dim/2, 2, 2]
    grid: tuple[int, int, int]  # patch grid (T, H/2, W/2)


@dataclasses.dataclass
class HeadTime:
    """The head's time conditioning e(s) + e'(s − r), precomputable for a whole inner grid."""

    e: torch.Tensor  # for the output head: [B, 1, dim]
    e0: torch.Tensor  # for the blocks and the fusion: [B, 1, 6, dim]


class TMDStudent(nn.Module):
    """A Wan module split into backbone and flow head, plus the flow-head extras.

    `wan` may be this pack's WanDiT or ComfyUI's WanModel: only the official attribute names and
    ComfyUI's block signature are used.
    """

    def __init__(self, wan: nn.Module, extras: FlowHeadExtras):
        super().__init__()
        self.wan = wan
        self.extras = extras
        self.split = len(wan.blocks) - extras.spec.head_blocks

    @classmethod
    def from_teacher(cls, wan: nn.Module, spec: FlowHeadSpec | None = None) -> "TMDStudent":
        """A student that reproduces `wan` exactly (it shares, not copies, the teacher's weights)."""
        return cls(wan, FlowHeadExtras.for_teacher(wan, spec or FlowHeadSpec()))

    @property
    def head_blocks(self) -> int:
        return len(self.wan.blocks) - self.split

    def embed_context(self, context: torch.Tensor) -> torch.Tensor:
        """umT5 context [B, S, 4096] -> [B, S, dim]; constant over a whole sampling run."""
        return self.wan.text_embedding(context)

    def backbone(self, x: torch.Tensor, t: torch.Tensor, context: torch.Tensor,
                 embedded_context: torch.Tensor | None = None, freqs: torch.Tensor | None = None,
                 transformer_options: dict | None = None) -> BackboneFeatures:
        """x_t [B, C, T, H, W] at outer time t [B] (0 = data, 1 = noise) -> features of blocks[0 : L-H].

        Pass `embedded_context` / `freqs` from an earlier outer step to skip recomputing them.
        """
        check_inputs(self.wan, x, context)
        _, e0 = embed_time(self.wan, 1000.0 * t, x.dtype)  # [B, 1, 6, dim]
        tokens = embed_tokens(self.wan, x)  # [B, L, dim]
        ctx = self.embed_context(context) if embedded_context is None else embedded_context  # [B, S, dim]
        if freqs is None:
            freqs = rope_for(self.wan, x)
        for index in range(self.split):
            tokens = run_block(self.wan, index, tokens, e0, freqs, ctx, transformer_options)
        return BackboneFeatures(tokens, ctx, freqs, patch_grid(self.wan, x.shape[2:]))

    def head_time(self, s: torch.Tensor, r: torch.Tensor, dtype: torch.dtype) -> HeadTime:
        """Inner time s [B] and flow-map target r [B] -> the head's conditioning (sum of the two embeddings)."""
        freq_dim = self.wan.freq_dim
        e = (self.wan.time_embedding(sinusoidal_embedding(freq_dim, 1000.0 * s).to(dtype))
             + self.extras.delta_embedding(sinusoidal_embedding(freq_dim, 1000.0 * (s - r)).to(dtype))).unsqueeze(1)
        return HeadTime(e, self.wan.time_projection(e).unflatten(-1, (6, self.wan.dim)))  # [B,1,dim], [B,1,6,dim]

    def head(self, features: BackboneFeatures, y_s: torch.Tensor, time: HeadTime,
             transformer_options: dict | None = None) -> torch.Tensor:
        """head_θ(y_s, s, r; m): inner state y_s [B, C, T, H, W] -> velocity-like output of the same shape."""
        x = self.extras.fusion(features.tokens, embed_tokens(self.wan, y_s), time.e0)  # [B, L, dim]
        for index in range(self.split, len(self.wan.blocks)):
            x = run_block(self.wan, index, x, time.e0, features.freqs, features.context, transformer_options)
        return self.wan.unpatchify(self.wan.head(x, time.e), features.grid)  # [B, C, T, H, W]
