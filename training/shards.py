# SPDX-License-Identifier: Apache-2.0
"""Training data: safetensors shards and a streaming reader with a resumable position.

A shard is one safetensors file holding
    latents           [N, 16, T, H, W]   clean VAE latents (Wan2.1 layout; 16×21×60×104 at 480p, 81 frames)
    context           [N, L, 4096]       umT5 embeddings of the N prompts, zero-padded to L tokens (Wan pads to 512)
    negative_context  [1, L, 4096]       umT5 embedding of the negative prompt (the CFG and dropout condition)
    noise             [N, 16, T, H, W]   optional: the initial noise the teacher sampled each latent from (noise–data
                                         pairs for the KD warm-up, `make_data --pairs`)
and a `tmd_shard` metadata entry (JSON: format version, count, optional prompts and source).

Making embeddings for real Wan (this pack ships no downloader): `encode_prompts` encodes a text file of
prompts with the umT5-XXL encoder that Wan2.1 uses, through ComfyUI's text encoder
(`umt5_xxl_fp8_e4m3fn_scaled.safetensors`, as CLIPLoader type "wan" and CLIPTextEncode run it) or Hugging
Face transformers, and writes the last hidden state of each prompt's tokens, [tokens, 4096], padded with zeros
to 512, plus Wan's default negative prompt (the paper's Table 8); `make_data` reads that file.
Latents come from the Wan2.1 VAE, or from the teacher itself through `make_data` (the paper trains on
teacher-generated videos).

The reader streams rows straight from the memory-mapped files. Its order is a pure function of
(seed, epoch): shards are shuffled, then rows within each shard; a global batch is the next
`batch_size` items of that order and each process takes its own slice. The position (epoch, cursor)
is all a checkpoint needs to continue exactly where a killed run stopped.
"""
from __future__ import annotations

import glob
import json
import os
from pathlib import Path

import torch
from safetensors import safe_open

from ..tmd_core.errors import CheckpointError
from ..tmd_core.safe_files import read_header, write_safetensors
from .errors import ShardError

SHARD_KEY = "tmd_shard"
SHARD_VERSION = 1
_DTYPE_NAMES = {"F32": torch.float32, "F16": torch.float16, "BF16": torch.bfloat16, "F64": torch.float64}


def write_shard(path: str | os.PathLike, latents: torch.Tensor, context: torch.Tensor, negative_context: torch.Tensor,
                prompts: list[str] | None = None, source: str = "", noise: torch.Tensor | None = None) -> Path:
    """Write one shard atomically; shapes as in the module docstring."""
    if latents.ndim != 5 or context.ndim != 3 or latents.shape[0] != context.shape[0]:
        raise ShardError(f"a shard needs latents [N, C, T, H, W] and context [N, L, D] with equal N, "
                         f"got {tuple(latents.shape)} and {tuple(context.shape)}.")
    if negative_context.shape != (1, *context.shape[1:]):
        raise ShardError(f"negative_context has shape {tuple(negative_context.shape)}, "
                         f"expected {(1, *context.shape[1:])}.")
    if noise is not None and noise.shape != latents.shape:
        raise ShardError(f"noise has shape {tuple(noise.shape)}, expected the latents' {tuple(latents.shape)}.")
    meta = {"version": SHARD_VERSION, "count": latents.shape[0], "prompts": prompts or [], "source": source}
    tensors = {"latents": latents, "context": context, "negative_context": negative_context}
    if noise is not None:
        tensors["noise"] = noise
    return write_safetensors(tensors, path, {SHARD_KEY: json.dumps(meta)})


def expand_shards(patterns: list[str]) -> list[Path]:
    """Shard paths from files or globs, sorted, each once."""
    paths = sorted({Path(p) for pattern in patterns for p in (glob.glob(pattern) or [pattern])})
    if not paths:
        raise ShardError("data.shards names no files; give shard files or globs such as data/*.safetensors.")
    return paths


def _inspect(path: Path) -> tuple[int, tuple[int, ...], int]:
    """(rows, latent shape [C, T, H, W], text tokens) of a shard, from its header alone."""
    try:
        header, metadata = read_header(path)
    except CheckpointError as err:
        raise ShardError(f"shard {path} cannot be read: {err}") from err
    if SHARD_KEY not in metadata:
        raise ShardError(f"{path} is not a training shard: it has no '{SHARD_KEY}' metadata.")
    missing = [k for k in ("latents", "context", "negative_context") if k not in header]
    if missing:
        raise ShardError(f"shard {path} has no '{missing[0]}' tensor.")
    for key in ("latents", "context", "negative_context"):
        if header[key]["dtype"] not in _DTYPE_NAMES:
            raise ShardError(f"shard {path} stores {key} as {header[key]['dtype']}, expected a float type.")
    lat, ctx, neg = (header[k]["shape"] for k in ("latents", "context", "negative_context"))
    if "noise" in header and header["noise"]["shape"] != lat:
        raise ShardError(f"shard {path} has noise {header['noise']['shape']} for latents {lat}.")
    if len(lat) != 5 or len(ctx) != 3 or lat[0] != ctx[0] or neg != [1, *ctx[1:]]:
        raise ShardError(f"shard {path} has latents {lat}, context {ctx} and negative_context {neg}, which do not "
                         "fit together ([N, C, T, H, W], [N, L, D], [1, L, D]).")
    return lat[0], tuple(lat[1:]), ctx[1]


class ShardReader:
    """Streams batches of (latents, context, negative_context) for one process of `world` processes."""

    def __init__(self, patterns: list[str], batch_size: int, rank: int = 0, world: int = 1, seed: int = 0,
                 latent_shape: list[int] | None = None, text_len: int | None = None):
        if batch_size % world:
            raise ShardError(f"the global batch {batch_size} does not split evenly over {world} processes.")
        self.paths = expand_shards(patterns)
        shapes = [_inspect(p) for p in self.paths]
        self.rows = [n for n, _, _ in shapes]
        first = self.paths[0]
        for path, (_, lat, tokens) in zip(self.paths, shapes, strict=True):
            if (lat, tokens) != shapes[0][1:]:
                raise ShardError(f"shard {path} holds latents {list(lat)} with {tokens} text tokens, but {first} "
                                 f"holds {list(shapes[0][1])} with {shapes[0][2]}.")
        if latent_shape is not None and list(shapes[0][1]) != list(latent_shape):
            raise ShardError(f"the shards hold latents {list(shapes[0][1])}, the config expects {list(latent_shape)}.")
        if text_len is not None and shapes[0][2] != text_len:
            raise ShardError(f"the shards hold {shapes[0][2]} text tokens, the config expects {text_len}.")
        if sum(self.rows) < batch_size:
            raise ShardError(f"the shards hold {sum(self.rows)} examples, fewer than one global batch of {batch_size}.")
        self.global_batch, self.local_batch = batch_size, batch_size // world
        self.rank, self.seed = rank, seed
        self.epoch, self.cursor = 0, 0
        self._order = self._epoch_order(0)
        self._handles: dict[int, object] = {}

    def _epoch_order(self, epoch: int) -> list[tuple[int, int]]:
        g = torch.Generator().manual_seed(self.seed * 1_000_003 + epoch)
        order = []
        for shard in torch.randperm(len(self.paths), generator=g).tolist():
            order += [(shard, row) for row in torch.randperm(self.rows[shard], generator=g).tolist()]
        return order

    def _row(self, shard: int, row: int) -> dict[str, torch.Tensor]:
        if shard not in self._handles:
            self._handles[shard] = safe_open(str(self.paths[shard]), framework="pt")
        handle = self._handles[shard]
        item = {"latents": handle.get_slice("latents")[row], "context": handle.get_slice("context")[row],
                "negative_context": handle.get_slice("negative_context")[0]}
        if "noise" in handle.keys():
            item["noise"] = handle.get_slice("noise")[row]
        for key, tensor in item.items():
            if not torch.isfinite(tensor).all():
                raise ShardError(f"shard {self.paths[shard]} row {row} has NaN or inf values in {key}.")
        return item

    def next_batch(self) -> dict[str, torch.Tensor]:
        """This process's slice of the next global batch, as float32: latents (and noise, where the shards hold it)
        [b, C, T, H, W], contexts [b, L, D]."""
        if self.cursor + self.global_batch > len(self._order):  # drop the incomplete tail of an epoch
            self.epoch, self.cursor = self.epoch + 1, 0
            self._order = self._epoch_order(self.epoch)
        start = self.cursor + self.rank * self.local_batch
        items = [self._row(*self._order[i]) for i in range(start, start + self.local_batch)]
        self.cursor += self.global_batch
        return {key: torch.stack([item[key] for item in items]).float() for key in items[0]}

    def state_dict(self) -> dict[str, int]:
        return {"epoch": self.epoch, "cursor": self.cursor, "seed": self.seed, "examples": len(self._order)}

    def load_state_dict(self, state: dict[str, int]) -> None:
        if (state["seed"], state["examples"]) != (self.seed, len(self._order)):
            raise ShardError(f"the checkpoint's data position is for {state['examples']} examples with seed "
                             f"{state['seed']}, the shards now hold {len(self._order)} with seed {self.seed}.")
        self.epoch, self.cursor = state["epoch"], state["cursor"]
        self._order = self._epoch_order(self.epoch)
