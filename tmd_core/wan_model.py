# SPDX-License-Identifier: Apache-2.0
"""The Wan2.1 T2V DiT: patch/time/text embeddings, a stack of WanBlocks and the output head.

Attribute names and parameter keys follow official Wan2.1 (and so ComfyUI's WanModel), so a
`diffusion_pytorch_model.safetensors` or a ComfyUI `diffusion_models/*.safetensors` file loads as is.
The module-level helpers take any Wan-structured module (this one or ComfyUI's WanModel): they only
touch the official attribute names, so the TMD student runs on either.
"""
from __future__ import annotations

import torch
from torch import nn

from .errors import LatentShapeError, SamplingConfigError
from .wan_config import WanConfig
from .wan_layers import WanBlock, WanHead, rope_table, sinusoidal_embedding


def check_inputs(wan: nn.Module, x: torch.Tensor, context: torch.Tensor) -> None:
    """One-sentence errors for a latent or text context the Wan module cannot take."""
    in_dim, text_dim = wan.patch_embedding.weight.shape[1], wan.text_embedding[0].weight.shape[1]
    if x.ndim != 5 or x.shape[1] != in_dim:
        raise LatentShapeError(
            f"latent has shape {tuple(x.shape)}, expected [batch, {in_dim}, frames, height, width] for this Wan model."
        )
    for name, size, patch in zip(("frames", "height", "width"), x.shape[2:], wan.patch_size, strict=True):
        if size % patch:
            raise LatentShapeError(f"latent {name} {size} is not a multiple of the patch size {patch}.")
    if context.ndim != 3 or context.shape[-1] != text_dim or context.shape[0] != x.shape[0]:
        raise LatentShapeError(
            f"text context has shape {tuple(context.shape)}, expected [{x.shape[0]}, tokens, {text_dim}] "
            "(one umT5 embedding per latent in the batch)."
        )


def run_block(wan: nn.Module, index: int, tokens: torch.Tensor, e0: torch.Tensor, freqs: torch.Tensor,
              context: torch.Tensor, transformer_options: dict | None) -> torch.Tensor:
    """Block `index` of `wan` on tokens [B, L, dim], through a host's block-replacement patch if one is set.

    ComfyUI's convention, honoured as its WanModel honours it: `transformer_options["patches_replace"]["dit"]`
    maps ("double_block", index) to `patch(args, {"original_block": run})`, which returns {"img": tokens}.
    The flow head's blocks keep their Wan indices, so a patch reaches them on every inner step."""
    opts = {} if transformer_options is None else transformer_options
    block = wan.blocks[index]
    patch = opts.get("patches_replace", {}).get("dit", {}).get(("double_block", index))
    if patch is None:
        return block(tokens, e=e0, freqs=freqs, context=context, context_img_len=None, transformer_options=opts)

    def original_block(args: dict) -> dict:
        return {"img": block(args["img"], e=args["vec"], freqs=args["pe"], context=args["txt"], context_img_len=None,
                             transformer_options=args["transformer_options"])}

    args = {"img": tokens, "txt": context, "vec": e0, "pe": freqs, "transformer_options": opts}
    return patch(args, {"original_block": original_block})["img"]


def embed_time(wan: nn.Module, timestep: torch.Tensor, dtype: torch.dtype) -> tuple[torch.Tensor, torch.Tensor]:
    """timestep [B] in DiT units (1000·t) -> (e [B, 1, dim] for the output head, e0 [B, 1, 6, dim] for the blocks)."""
    e = wan.time_embedding(sinusoidal_embedding(wan.freq_dim, timestep).to(dtype)).unsqueeze(1)  # [B, 1, dim]
    return e, wan.time_projection(e).unflatten(-1, (6, wan.dim))  # [B, 1, 6, dim]


def embed_tokens(wan: nn.Module, x: torch.Tensor) -> torch.Tensor:
    """Latent [B, C, T, H, W] -> frame-major patch tokens [B, T·H/2·W/2, dim] (patch embedding in its own dtype)."""
    return wan.patch_embedding(x.to(wan.patch_embedding.weight.dtype)).to(x.dtype).flatten(2).transpose(1, 2)


def rope_for(wan: nn.Module, x: torch.Tensor) -> torch.Tensor:
    """The RoPE table for latent x, in float32 (float64 for a float64 model, as the reference tests run)."""
    return wan.rope_encode(*x.shape[2:], device=x.device, dtype=torch.promote_types(x.dtype, torch.float32))


def patch_grid(wan: nn.Module, latent_shape: tuple[int, ...]) -> tuple[int, int, int]:
    """(T, H, W) of a latent -> (T, H, W) of its patch grid."""
    return tuple(size // patch for size, patch in zip(latent_shape, wan.patch_size, strict=True))


class WanDiT(nn.Module):
    def __init__(self, config: WanConfig):
        super().__init__()
        c = config
        self.config = c
        self.dim, self.freq_dim, self.patch_size = c.dim, c.freq_dim, c.patch_size
        self.patch_embedding = nn.Conv3d(c.in_dim, c.dim, kernel_size=c.patch_size, stride=c.patch_size)
        self.text_embedding = nn.Sequential(nn.Linear(c.text_dim, c.dim), nn.GELU(approximate="tanh"),
                                            nn.Linear(c.dim, c.dim))
        self.time_embedding = nn.Sequential(nn.Linear(c.freq_dim, c.dim), nn.SiLU(), nn.Linear(c.dim, c.dim))
        self.time_projection = nn.Sequential(nn.SiLU(), nn.Linear(c.dim, 6 * c.dim))
        self.blocks = nn.ModuleList(WanBlock(c.dim, c.ffn_dim, c.num_heads, c.eps) for _ in range(c.num_layers))
        self.head = WanHead(c.dim, c.out_dim, c.patch_size, c.eps)

    # ---- pieces shared with the TMD student -------------------------------------------------

    def rope_encode(self, t: int, h: int, w: int, device: torch.device | None = None,
                    dtype: torch.dtype = torch.float32) -> torch.Tensor:
        """RoPE rotation table for a latent of t×h×w (before patching): [1, L, 1, head_dim/2, 2, 2]."""
        return rope_table(patch_grid(self, (t, h, w)), self.config.head_dim, device=device, dtype=dtype)

    def unpatchify(self, x: torch.Tensor, grid_sizes: tuple[int, int, int]) -> torch.Tensor:
        """Head tokens [B, L, pt·ph·pw·C] -> latent [B, C, T, H, W] (the channel is the fastest index)."""
        pt, ph, pw = self.patch_size
        f, h, w = grid_sizes
        x = x.reshape(x.shape[0], f, h, w, pt, ph, pw, -1)
        return torch.einsum("bfhwpqrc->bcfphqwr", x).reshape(x.shape[0], -1, f * pt, h * ph, w * pw)

    # ---- the plain forward ---------------------------------------------------------------------

    def forward(self, x: torch.Tensor, timestep: torch.Tensor, context: torch.Tensor,
                transformer_options: dict | None = None, skip_blocks: tuple[int, ...] = ()) -> torch.Tensor:
        """Velocity v = noise - data. x [B, C, T, H, W], timestep [B] = 1000·t, context [B, S, 4096].

        `skip_blocks` leaves those blocks out (skip-layer guidance runs its unconditional pass that way)."""
        check_inputs(self, x, context)
        for index in skip_blocks:
            if not 0 <= index < len(self.blocks):
                raise SamplingConfigError(f"skip block {index} does not exist in a {len(self.blocks)}-block Wan.")
        e, e0 = embed_time(self, timestep, x.dtype)
        tokens = embed_tokens(self, x)  # [B, L, dim]
        ctx = self.text_embedding(context)  # [B, S, dim]
        freqs = rope_for(self, x)
        for index in range(len(self.blocks)):
            if index not in skip_blocks:
                tokens = run_block(self, index, tokens, e0, freqs, ctx, transformer_options)
        return self.unpatchify(self.head(tokens, e), patch_grid(self, x.shape[2:]))  # [B, C, T, H, W]
