# SPDX-License-Identifier: Apache-2.0
"""The pack's checkpoint format (DESIGN §4).

A TMD student is two safetensors files: a Wan-format diffusion-model file (UNETLoader loads it like
any Wan2.1 model) and a small flow-head file with the extras (fusion.*, delta_embedding.*) and a
`tmd` metadata entry (JSON) that says which model it belongs to and how it was trained. Loading a
head checks that metadata against the model and names what differs in one sentence.
"""
from __future__ import annotations

import dataclasses
import json
import os
from pathlib import Path

import torch
from torch import nn

from .errors import CheckpointError
from .flow_head import FlowHeadExtras, FlowHeadSpec
from .grids import check_gamma, check_head_blocks, check_step_count
from .inner_form import DEFAULT_INNER_FORM, check_inner_form
from .safe_files import read_safetensors, write_safetensors
from .student import TMDStudent
from .wan_loading import load_wan, save_wan

FORMAT_VERSION = 1
METADATA_KEY = "tmd"


@dataclasses.dataclass(frozen=True)
class FlowHeadMeta:
    """Everything a flow-head file states about itself."""

    dim: int
    num_layers: int
    num_heads: int
    in_dim: int
    out_dim: int
    head_blocks: int
    fusion: str = "gated"
    fusion_ffn_dim: int | None = None
    outer_steps: int = 2  # M it was trained for
    inner_steps: int = 2  # N it was trained for
    outer_gamma: float = 10.0
    inner_gamma: float = 10.0
    inner_form: str = DEFAULT_INNER_FORM  # how head_θ becomes u (inner_form.py); files without it are "y1"
    trained_from: str = "untrained"
    format_version: int = FORMAT_VERSION

    @classmethod
    def describe_model(cls, wan: nn.Module, spec: FlowHeadSpec, **training) -> "FlowHeadMeta":
        return cls(dim=wan.dim, num_layers=len(wan.blocks), num_heads=wan.blocks[0].self_attn.num_heads,
                   in_dim=wan.patch_embedding.weight.shape[1], out_dim=_out_dim(wan), head_blocks=spec.head_blocks,
                   fusion=spec.fusion, fusion_ffn_dim=spec.fusion_ffn_dim, **training)

    @property
    def spec(self) -> FlowHeadSpec:
        return FlowHeadSpec(self.head_blocks, self.fusion, self.fusion_ffn_dim)

    def check_matches(self, wan: nn.Module) -> None:
        """Raise one sentence if this head was made for a different Wan than `wan`."""
        mine = f"{self.num_layers}-layer dim-{self.dim}"
        theirs = f"{len(wan.blocks)}-layer dim-{wan.dim}"
        if mine != theirs:
            raise CheckpointError(f"flow head is for a {mine} Wan, the model is {theirs}.")
        if (self.in_dim, self.out_dim) != (wan.patch_embedding.weight.shape[1], _out_dim(wan)):
            raise CheckpointError(
                f"flow head is for a Wan with {self.in_dim} in / {self.out_dim} out latent channels, the model has "
                f"{wan.patch_embedding.weight.shape[1]} / {_out_dim(wan)}."
            )
        if self.num_heads != wan.blocks[0].self_attn.num_heads:
            raise CheckpointError(
                f"flow head is for a Wan with {self.num_heads} attention heads, the model has "
                f"{wan.blocks[0].self_attn.num_heads}."
            )

    def to_metadata(self) -> dict[str, str]:
        return {METADATA_KEY: json.dumps(dataclasses.asdict(self), sort_keys=True)}

    @classmethod
    def from_metadata(cls, metadata: dict[str, str], source: str) -> "FlowHeadMeta":
        if METADATA_KEY not in metadata:
            raise CheckpointError(f"{source} is not a TMD flow-head file: it has no '{METADATA_KEY}' metadata.")
        try:
            fields = json.loads(metadata[METADATA_KEY])
            meta = cls(**fields)
        except (json.JSONDecodeError, TypeError) as err:
            raise CheckpointError(f"{source} has unreadable TMD metadata ({err}).") from err
        if meta.format_version > FORMAT_VERSION:
            raise CheckpointError(
                f"{source} uses flow-head format {meta.format_version}; this version of the pack reads up to "
                f"{FORMAT_VERSION}."
            )
        check_head_blocks(meta.head_blocks, meta.num_layers)
        check_step_count("trained outer steps M", meta.outer_steps)
        check_step_count("trained inner steps N", meta.inner_steps)
        check_gamma("outer γ", meta.outer_gamma)
        check_gamma("inner γ", meta.inner_gamma)
        check_inner_form(meta.inner_form)
        return meta


def _out_dim(wan: nn.Module) -> int:
    return wan.head.head.weight.shape[0] // (wan.patch_size[0] * wan.patch_size[1] * wan.patch_size[2])


def save_flow_head(student: TMDStudent, path: str | os.PathLike, meta: FlowHeadMeta) -> Path:
    meta.check_matches(student.wan)
    if meta.spec != student.extras.spec:
        raise CheckpointError(f"metadata describes head {meta.spec}, the student has {student.extras.spec}.")
    return write_safetensors(student.extras.state_dict(), path, meta.to_metadata())


def read_flow_head(path: str | os.PathLike) -> tuple[dict[str, torch.Tensor], FlowHeadMeta]:
    """The extras tensors and their validated metadata (no model needed yet)."""
    tensors, metadata = read_safetensors(path)
    return tensors, FlowHeadMeta.from_metadata(metadata, Path(path).name)


def build_extras(wan: nn.Module, tensors: dict[str, torch.Tensor], meta: FlowHeadMeta,
                 source: str = "flow head", dtype: torch.dtype | None = None) -> FlowHeadExtras:
    """The flow-head extras for `wan` from read tensors, after checking they belong to it: in `dtype` (None:
    the dtype of the Wan's time embedding), on the device of the Wan's time embedding."""
    meta.check_matches(wan)
    like = wan.time_embedding[0].weight
    extras = FlowHeadExtras.for_model(wan, meta.spec).to(device=like.device, dtype=dtype or like.dtype)
    expected = extras.state_dict()
    missing = sorted(set(expected) - set(tensors))
    unexpected = sorted(set(tensors) - set(expected))
    if missing or unexpected:
        what = f"is missing {', '.join(missing[:3])}" if missing else f"has unknown keys {', '.join(unexpected[:3])}"
        raise CheckpointError(f"{source} {what} for a {meta.fusion}-fusion head.")
    for key, tensor in expected.items():
        if tensors[key].shape != tensor.shape:
            raise CheckpointError(f"{source} has {key} of shape {tuple(tensors[key].shape)}, "
                                  f"expected {tuple(tensor.shape)}.")
    extras.load_state_dict(tensors)
    return extras


def attach_flow_head(wan: nn.Module, tensors: dict[str, torch.Tensor], meta: FlowHeadMeta,
                     source: str = "flow head") -> TMDStudent:
    """The student on `wan` with the read extras."""
    return TMDStudent(wan, build_extras(wan, tensors, meta, source))


def load_flow_head(wan: nn.Module, path: str | os.PathLike) -> tuple[TMDStudent, FlowHeadMeta]:
    tensors, meta = read_flow_head(path)
    return attach_flow_head(wan, tensors, meta, Path(path).name), meta


def save_student(student: TMDStudent, wan_path: str | os.PathLike, head_path: str | os.PathLike,
                 meta: FlowHeadMeta) -> tuple[Path, Path]:
    """Both files of a student; each is written atomically."""
    head = save_flow_head(student, head_path, meta)
    return save_wan(student.wan, wan_path, {"tmd_flow_head": Path(head_path).name}), head


def load_student(wan_path: str | os.PathLike, head_path: str | os.PathLike,
                 dtype: torch.dtype | None = None, device: str = "cpu") -> tuple[TMDStudent, FlowHeadMeta]:
    tensors, meta = read_flow_head(head_path)  # validate the small file before reading the big one
    wan = load_wan(wan_path, dtype=dtype, device=device)
    return attach_flow_head(wan, tensors, meta, Path(head_path).name), meta  # extras follow wan's dtype and device
