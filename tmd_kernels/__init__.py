# SPDX-License-Identifier: Apache-2.0
"""Triton kernels for the hot path, each with a torch reference and an impl switch.

Kept, by counted memory traffic (each kernel's docstring has the count): the fused residual add →
LayerNorm → AdaLN modulation (three per Wan block) and the fused q/k RMSNorm → RoPE. Not kernels:
the block's last gated residual (torch's addcmul is already one pass) and the inner flow-map update
(a 16×21×60×104 latent is ~4 MB, microseconds per step against ~100 ms of head blocks).
"""
from .adaln import add_norm_modulate, norm_modulate
from .qk_norm_rope import rms_norm_rope
from .triton_gate import IMPLS, INTERPRETER, TRITON_IMPORTED, triton_unusable_reason, use_triton

__all__ = ["IMPLS", "INTERPRETER", "TRITON_IMPORTED", "add_norm_modulate", "norm_modulate", "rms_norm_rope",
           "triton_unusable_reason", "use_triton"]
