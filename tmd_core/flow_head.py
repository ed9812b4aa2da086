# SPDX-License-Identifier: Apache-2.0
"""The new parameters of a TMD student: the fusion layer and the (s − r) time embedding (tmd-method §2.2–2.3).

Everything else in the student (backbone, head blocks, output layer) is the teacher's Wan module itself,
so these "extras" are all a flow-head file has to carry.
"""
from __future__ import annotations

import dataclasses

import torch
from torch import nn

from .errors import CheckpointError
from .fusion import FUSION_TYPES, ConcatFusion, GatedFusion, OffloadableLinear
from .grids import check_head_blocks


@dataclasses.dataclass(frozen=True)
class FlowHeadSpec:
    """Shape of the flow head: how many of the last Wan blocks it takes, and how it fuses y_s."""

    head_blocks: int = 5
    fusion: str = "gated"
    fusion_ffn_dim: int | None = None  # hidden width of the gated fusion's MLP; None = the Wan FFN width

    def __post_init__(self):
        if self.fusion not in FUSION_TYPES:
            raise CheckpointError(f"fusion type {self.fusion!r} is unknown; expected one of {', '.join(FUSION_TYPES)}.")


class FlowHeadExtras(nn.Module):
    """fusion.* (gated or concat) and delta_embedding.* (embeds s − r, summed with the embedding of s).

    Every layer follows its input's device (OffloadableLinear), so a host may leave any part offloaded."""

    def __init__(self, dim: int, ffn_dim: int, freq_dim: int, num_layers: int, spec: FlowHeadSpec):
        super().__init__()
        check_head_blocks(spec.head_blocks, num_layers)
        self.spec = spec
        self.fusion = GatedFusion(dim, spec.fusion_ffn_dim or ffn_dim) if spec.fusion == "gated" else ConcatFusion(dim)
        self.delta_embedding = nn.Sequential(OffloadableLinear(freq_dim, dim), nn.SiLU(), OffloadableLinear(dim, dim))
        nn.init.zeros_(self.delta_embedding[2].weight)
        nn.init.zeros_(self.delta_embedding[2].bias)

    @classmethod
    def for_model(cls, wan: nn.Module, spec: FlowHeadSpec) -> "FlowHeadExtras":
        """Extras shaped for a Wan module (weights to be loaded from a flow-head file)."""
        ffn_dim = dict(wan.blocks[0].ffn.named_parameters())["0.weight"].shape[0]
        return cls(wan.dim, ffn_dim, wan.freq_dim, len(wan.blocks), spec)

    @classmethod
    def for_teacher(cls, wan: nn.Module, spec: FlowHeadSpec) -> "FlowHeadExtras":
        """Fresh extras for a Wan module: the (s − r) embedding starts as a copy of the teacher's first time layer
        with a zero output layer (zero output, but live gradients), so the student equals the teacher."""
        first = wan.time_embedding[0]
        extras = cls.for_model(wan, spec).to(device=first.weight.device, dtype=first.weight.dtype)
        with torch.no_grad():
            extras.delta_embedding[0].weight.copy_(first.weight)
            extras.delta_embedding[0].bias.copy_(first.bias)
        return extras
