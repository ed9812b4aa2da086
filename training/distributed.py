# SPDX-License-Identifier: Apache-2.0
"""Processes, devices and wrapping roles for DDP or FSDP2, with PyTorch's own tools only.

Under `torchrun` (WORLD_SIZE > 1) the process group is started from its environment (NCCL on GPUs,
gloo on CPUs). A role's computations are not always its `forward` (the TMD student runs its backbone
once and its head N times), but DDP and FSDP2 only hook `forward`; so every role is wrapped in `Role`,
whose forward runs any function of the module, and all calls go through it.

- ddp: trainable roles in DistributedDataParallel; frozen roles replicated.
- fsdp: every Wan block, then the whole role, `fully_shard`ed (frozen teacher too), bf16 parameters
  with fp32 gradient reduction when precision is bf16 on CUDA. FSDP2 cannot shard 0-dimensional
  parameters (the gated fusion's scalar gate); those stay replicated (`ignored_params`) and
  `average_replicated_grads` averages their gradients over the processes after each backward.
- activation checkpointing: each Wan block recomputed in backward (torch.distributed's composable
  `checkpoint`, which keeps parameter names unchanged, so checkpoints load into any layout).
"""
from __future__ import annotations

import contextlib
import dataclasses
import datetime
import os
from typing import Callable

import torch
import torch.distributed as dist
from torch import nn
from torch.distributed._composable import checkpoint as checkpoint_block
from torch.nn.parallel import DistributedDataParallel

from ..tmd_core.wan_layers import WanBlock


@dataclasses.dataclass(frozen=True)
class Env:
    """Where this process runs and how roles are wrapped."""

    rank: int = 0
    world: int = 1
    device: torch.device = torch.device("cpu")
    strategy: str = "single"  # "single", "ddp" or "fsdp"
    precision: str = "fp32"  # "bf16" only takes effect on CUDA
    activation_checkpointing: bool = False

    @property
    def is_main(self) -> bool:
        return self.rank == 0

    @property
    def bf16(self) -> bool:
        return self.precision == "bf16" and self.device.type == "cuda"

    def autocast(self):
        """bf16 autocast on CUDA with precision bf16; float32 everywhere else (CPU tests)."""
        if self.bf16:
            return torch.autocast("cuda", dtype=torch.bfloat16)
        return contextlib.nullcontext()

    def barrier(self) -> None:
        if self.world > 1:
            dist.barrier()


def setup_env(strategy: str, precision: str, activation_checkpointing: bool) -> Env:
    """The Env of this process; starts the process group when launched by torchrun with several processes."""
    world = int(os.environ.get("WORLD_SIZE", "1"))
    rank, local_rank = int(os.environ.get("RANK", "0")), int(os.environ.get("LOCAL_RANK", "0"))
    device = torch.device("cuda", local_rank) if torch.cuda.is_available() else torch.device("cpu")
    if device.type == "cuda":
        torch.cuda.set_device(device)
    if world > 1 and not dist.is_initialized():
        dist.init_process_group("nccl" if device.type == "cuda" else "gloo", timeout=datetime.timedelta(minutes=30))
    return Env(rank, world, device, strategy if world > 1 else "single", precision, activation_checkpointing)


class Role(nn.Module):
    """Runs any function of the wrapped module inside forward(), where DDP and FSDP2 hooks fire."""

    def __init__(self, module: nn.Module):
        super().__init__()
        self.module = module

    def forward(self, fn: Callable, *args, **kwargs):
        return fn(self.module, *args, **kwargs)


def wrap_role(module: nn.Module, env: Env, trainable: bool) -> nn.Module:
    """The callable a role is used through: Role(module), checkpointed and wrapped for the strategy."""
    if env.activation_checkpointing:
        for block in module.modules():
            if isinstance(block, WanBlock):
                checkpoint_block(block)
    role = Role(module)
    if env.strategy == "fsdp":
        from torch.distributed.fsdp import MixedPrecisionPolicy, fully_shard

        policy = MixedPrecisionPolicy(param_dtype=torch.bfloat16, reduce_dtype=torch.float32) if env.bf16 else None
        kwargs = {"mp_policy": policy} if policy is not None else {}
        for block in module.modules():
            if isinstance(block, WanBlock):
                fully_shard(block, **kwargs)
        return fully_shard(role, ignored_params=set(replicated_params(module)) or None, **kwargs)
    if env.strategy == "ddp" and trainable:
        return DistributedDataParallel(role, device_ids=[env.device.index] if env.device.type == "cuda" else None)
    return role


def replicated_params(module: nn.Module) -> list[nn.Parameter]:
    """Parameters FSDP2 leaves unsharded: the 0-dimensional ones."""
    return [p for p in module.parameters() if p.ndim == 0]


def average_replicated_grads(module: nn.Module, env: Env) -> None:
    """Under FSDP2, average the gradients of the unsharded scalar parameters over all processes."""
    if env.strategy != "fsdp":
        return
    for p in replicated_params(module):
        if p.grad is not None:
            dist.all_reduce(p.grad)
            p.grad.div_(env.world)


def unwrap(wrapped: nn.Module) -> nn.Module:
    """The module inside a Role, whatever wraps the Role (DDP adds one more `.module`)."""
    role = wrapped.module if isinstance(wrapped, DistributedDataParallel) else wrapped
    return role.module


def shutdown(env: Env) -> None:
    """Leave the process group together: a rank that destroys it while another still works can hang that one."""
    if env.world > 1 and dist.is_initialized():
        dist.barrier()
        dist.destroy_process_group()
