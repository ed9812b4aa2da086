# SPDX-License-Identifier: Apache-2.0
"""A custom-node pack for tier-2 tests only: Wan-shaped random conditioning in place of the 5.7 B-parameter
umT5 encoder, which cannot be downloaded here (ComfyUI hard-codes its size)."""
import torch


class TMDTestRandomConditioning:
    CATEGORY = "testing"
    FUNCTION = "make"
    RETURN_TYPES = ("CONDITIONING",)

    @classmethod
    def INPUT_TYPES(cls):
        return {"required": {"seed": ("INT", {"default": 0, "min": 0, "max": 2**31}),
                             "tokens": ("INT", {"default": 512, "min": 1, "max": 512})}}

    def make(self, seed, tokens):
        context = torch.randn(1, tokens, 4096, generator=torch.Generator().manual_seed(seed))  # umT5's [1, L, 4096]
        return ([[context, {}]],)


NODE_CLASS_MAPPINGS = {"TMDTestRandomConditioning": TMDTestRandomConditioning}
