# SPDX-License-Identifier: Apache-2.0
"""The N flow-head steps of an inner flow as one CUDA graph, captured once and replayed every outer step.

Per outer step only three tensors change: the backbone feature m, the embedded text and the inner noise
y1. They live in static buffers that the graph reads; each replay first copies the new values in. The
RoPE table and the inner grid's time conditioning come from InnerFlow's cache, whose tensors stay put
for a latent shape, so the graph is captured once per shape. Inference only (captured under no_grad),
and no host code runs between inner steps, so per-inner-step callbacks cannot fire inside it.
"""
from __future__ import annotations

import dataclasses
from typing import Callable

import torch

from .student import BackboneFeatures, HeadTime, TMDStudent


class GraphedInnerRollout:
    """`rollout(student, features, y1, times, grid)` (the sampler's `inner_rollout`) replayed from a CUDA graph;
    returns a fresh ŷ."""

    def __init__(self, student: TMDStudent, features: BackboneFeatures, y1: torch.Tensor, times: list[HeadTime],
                 grid: list[float], rollout: Callable, transformer_options: dict | None = None):
        if not y1.is_cuda:
            raise ValueError(f"CUDA-graph capture needs CUDA tensors, the latent is on {y1.device}; "
                             "turn cuda_graph off on this device.")
        self.features = dataclasses.replace(features, tokens=features.tokens.clone(), context=features.context.clone())
        self.y1 = y1.clone()

        def run() -> torch.Tensor:
            return rollout(student, self.features, self.y1, times, grid, transformer_options=transformer_options)

        with torch.no_grad():
            side = torch.cuda.Stream(y1.device)  # warm up off the capture stream: lazy inits, Triton builds, cuBLAS
            side.wait_stream(torch.cuda.current_stream(y1.device))
            with torch.cuda.stream(side):
                run()
            torch.cuda.current_stream(y1.device).wait_stream(side)
            self.graph = torch.cuda.CUDAGraph()
            with torch.cuda.graph(self.graph):
                self.y = run()  # [B, C, T, H, W], overwritten by every replay

    def fits(self, features: BackboneFeatures, y1: torch.Tensor) -> bool:
        """Whether new inputs can be copied into the captured buffers (same shapes, dtypes, device)."""
        pairs = ((self.features.tokens, features.tokens), (self.features.context, features.context), (self.y1, y1))
        return all(a.shape == b.shape and a.dtype == b.dtype and a.device == b.device for a, b in pairs)

    def __call__(self, features: BackboneFeatures, y1: torch.Tensor) -> torch.Tensor:
        self.features.tokens.copy_(features.tokens)  # [B, L, dim]
        self.features.context.copy_(features.context)  # [B, S, dim]
        self.y1.copy_(y1)  # [B, C, T, H, W]
        self.graph.replay()
        return self.y.clone()  # the next replay overwrites self.y
