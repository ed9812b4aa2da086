# SPDX-License-Identifier: Apache-2.0
"""Dense FLOPs of the Wan2.1 DiT, the TMD student and each sampler, counted analytically.

Counts every matrix product (linear layers, the patch-embedding convolution, attention's QKᵀ and AV)
at 2 FLOPs per multiply-add, as torch.utils.flop_counter does; element-wise work (norms, RoPE, GELU,
residuals) is left out. Divided by a device's measured matmul rate, a count gives the dense-FLOP floor:
the time the sampler would take if every product ran at that rate and nothing else cost anything.
"""
from __future__ import annotations

import math

from ..tmd_core.wan_config import WanConfig


def linear(rows: int, fan_in: int, fan_out: int) -> int:
    return 2 * rows * fan_in * fan_out


def attention(queries: int, keys: int, dim: int) -> int:
    """QKᵀ and the weighted sum of V over all heads (heads·head_dim = dim)."""
    return 2 * 2 * queries * keys * dim


def tokens_of(c: WanConfig, latent: tuple[int, ...]) -> int:
    """Patch tokens of one latent [C, T, H, W] (or [B, C, T, H, W]; the batch is not counted)."""
    return math.prod(size // patch for size, patch in zip(latent[-3:], c.patch_size, strict=True))


def block(c: WanConfig, tokens: int, text_tokens: int) -> int:
    """One WanBlock for one sample: self-attention, cross-attention to text, FFN."""
    d = c.dim
    self_attn = 4 * linear(tokens, d, d) + attention(tokens, tokens, d)
    cross_attn = 2 * linear(tokens, d, d) + 2 * linear(text_tokens, d, d) + attention(tokens, text_tokens, d)
    return self_attn + cross_attn + linear(tokens, d, c.ffn_dim) + linear(tokens, c.ffn_dim, d)


def patch_embedding(c: WanConfig, tokens: int) -> int:
    return linear(tokens, c.in_dim * math.prod(c.patch_size), c.dim)


def text_embedding(c: WanConfig, text_tokens: int) -> int:
    return linear(text_tokens, c.text_dim, c.dim) + linear(text_tokens, c.dim, c.dim)


def time_embedding(c: WanConfig) -> int:
    """Time MLP and the 6-way projection for one timestep."""
    return linear(1, c.freq_dim, c.dim) + linear(1, c.dim, c.dim) + linear(1, c.dim, 6 * c.dim)


def output_head(c: WanConfig, tokens: int) -> int:
    return linear(tokens, c.dim, math.prod(c.patch_size) * c.out_dim)


def wan_forward(c: WanConfig, tokens: int, text_tokens: int) -> int:
    """WanDiT.forward for one sample, text embedding included."""
    return (patch_embedding(c, tokens) + text_embedding(c, text_tokens) + time_embedding(c)
            + c.num_layers * block(c, tokens, text_tokens) + output_head(c, tokens))


def backbone(c: WanConfig, tokens: int, text_tokens: int, head_blocks: int) -> int:
    """TMDStudent.backbone with the embedded text passed in (as the sampler does after the first step)."""
    return patch_embedding(c, tokens) + time_embedding(c) + (c.num_layers - head_blocks) * block(c, tokens, text_tokens)


def head_step(c: WanConfig, tokens: int, text_tokens: int, head_blocks: int, fusion_ffn_dim: int | None = None) -> int:
    """One TMDStudent.head call with the gated fusion (its time conditioning is precomputed per inner grid)."""
    ffn = fusion_ffn_dim or c.ffn_dim
    fusion = (patch_embedding(c, tokens) + linear(tokens, c.dim, ffn) + linear(tokens, ffn, c.dim)
              + linear(tokens, c.dim, c.dim))
    return fusion + head_blocks * block(c, tokens, text_tokens) + output_head(c, tokens)


def head_times(c: WanConfig, inner_steps: int) -> int:
    """InnerFlow.prepare: e(s) + e'(s − r) and the projection, once per inner step per run (cached)."""
    return inner_steps * (time_embedding(c) + linear(1, c.freq_dim, c.dim) + linear(1, c.dim, c.dim))


def euler_sampler(c: WanConfig, tokens: int, text_tokens: int, steps: int, cfg: bool) -> int:
    """sample_euler over CFGDenoiser: one forward per step, two with CFG."""
    return steps * (2 if cfg else 1) * wan_forward(c, tokens, text_tokens)


def tmd_sampler(c: WanConfig, tokens: int, text_tokens: int, outer_steps: int, inner_steps: int,
                head_blocks: int) -> int:
    """sample_euler over TMDDenoiser: text once, head times once, then per outer step a backbone and N head steps."""
    head = head_step(c, tokens, text_tokens, head_blocks)
    per_outer = backbone(c, tokens, text_tokens, head_blocks) + inner_steps * head
    return text_embedding(c, text_tokens) + head_times(c, inner_steps) + outer_steps * per_outer
