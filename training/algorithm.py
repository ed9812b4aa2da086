# SPDX-License-Identifier: Apache-2.0
"""What every training algorithm shares: named roles, an optimiser and LR schedule per trainable role
(the stage's own `optim` settings), gradient clipping, an optional EMA of the exported role, and one
documented RNG.

A subclass builds its roles in __init__ (`add_role`), calls `finish_setup()` and implements
`step(batch, iteration) -> {name: float}`. Roles are used only through `self.call(name, fn, ...)`,
so DDP and FSDP2 see every computation (distributed.Role). The trainer checkpoints exactly what
`state()` lists, so a new algorithm gets checkpoints, resume and logs for free.

Gradient accumulation (`data.micro_batch`): a step draws its randoms for the whole batch first, then
`accumulate(loss_fn, inputs, *roles)` runs forward and backward on micro-batches of those rows, each loss
scaled by its share of the rows, and takes one optimiser step; so a step draws the same numbers, in the
same order, and (up to summation order) follows the same gradient whatever the micro-batch.

The RNG: `self.rng`, one torch.Generator on the training device seeded with seed·1000 + rank. Every
random draw of an algorithm (times, noise, condition dropout) comes from it, in a fixed order per
iteration, and its state is checkpointed per process, so a resumed run draws the same numbers. The only
other randomness, dropout layers inside a role (the discriminator's MLP), draws from torch's global RNG,
which is seeded the same way here and checkpointed beside `self.rng`; those masks are drawn per micro-batch,
so with dropout an accumulated step is the same in distribution, not in draws.
"""
from __future__ import annotations

import contextlib
from typing import Callable

import torch
from torch import nn
from torch.nn.parallel import DistributedDataParallel

from .config import OptimConfig, TrainConfig
from .distributed import Env, average_replicated_grads, unwrap, wrap_role
from .ema import EMA
from .errors import TrainingConfigError

LossFn = Callable[[dict[str, torch.Tensor]], tuple[torch.Tensor, dict[str, float]]]


def make_optimizer(module: nn.Module, optim: OptimConfig, lr: float) -> torch.optim.Optimizer:
    """AdamW as in Table 7 over the module's trainable parameters."""
    params = [p for p in module.parameters() if p.requires_grad]
    return torch.optim.AdamW(params, lr=lr, betas=tuple(optim.betas), eps=optim.eps, weight_decay=optim.weight_decay)


def make_scheduler(optimizer: torch.optim.Optimizer, warmup_iters: int) -> torch.optim.lr_scheduler.LambdaLR:
    """Linear warm-up over `warmup_iters` updates of this role, then constant (the paper states no schedule)."""
    return torch.optim.lr_scheduler.LambdaLR(optimizer,
                                             lambda n: min(1.0, (n + 1) / warmup_iters) if warmup_iters else 1.0)


def _micro_batch(config: TrainConfig, env: Env) -> int | None:
    """`data.micro_batch`, checked against this process's share of the global batch."""
    micro, batch = config.data.micro_batch, config.data.batch_size
    local = batch // env.world  # an uneven split is refused by the shard reader, with its own sentence
    if micro is not None and batch % env.world == 0 and local % micro:
        raise TrainingConfigError(f"data.micro_batch {micro} does not divide the per-process batch {local} "
                                  f"(data.batch_size {batch} over {env.world} process{'es' if env.world > 1 else ''}).")
    return micro


class Algorithm:
    stage: str = ""
    exported_role: str = "student"  # the role export writes (and the EMA follows)

    def __init__(self, config: TrainConfig, env: Env):
        self.config, self.env = config, env
        self.optim = config.stage_optim(self.stage)
        self.micro_batch = _micro_batch(config, env)
        seed = config.run.seed * 1000 + env.rank
        self.rng = torch.Generator(device=env.device).manual_seed(seed)
        torch.manual_seed(seed)  # global RNG: dropout inside roles only
        self._modules: dict[str, nn.Module] = {}
        self._wrapped: dict[str, nn.Module] = {}
        self._lrs: dict[str, float] = {}
        self.optimizers: dict[str, torch.optim.Optimizer] = {}
        self.schedulers: dict[str, torch.optim.lr_scheduler.LambdaLR] = {}
        self.ema: EMA | None = None

    def add_role(self, name: str, module: nn.Module, lr: float | None = None) -> None:
        """Register a role; with an `lr` it is trainable and gets an optimiser, without one it is frozen."""
        self._modules[name] = module
        if lr is not None:
            self._lrs[name] = lr

    def finish_setup(self) -> None:
        """Wrap the roles for the strategy, then build optimisers (FSDP2 needs them over the sharded parameters)."""
        for name, module in self._modules.items():
            self._wrapped[name] = wrap_role(module, self.env, trainable=name in self._lrs)
        for name, lr in self._lrs.items():
            self.optimizers[name] = make_optimizer(self.module(name), self.optim, lr)
            self.schedulers[name] = make_scheduler(self.optimizers[name], self.optim.warmup_iters)
        if self.optim.ema_decay is not None:
            self.ema = EMA(self.module(self.exported_role), self.optim.ema_decay)

    def module(self, name: str) -> nn.Module:
        """The role's own module (its parameters are sharded DTensors under FSDP2)."""
        return unwrap(self._wrapped[name])

    @property
    def trainable(self) -> list[str]:
        return list(self._lrs)

    @property
    def lockstep(self) -> bool:
        """Whether every process must make the same role calls: under FSDP2 each block's forward all-gathers its
        shards, so a call that one process skips (no rows need it in its micro-batch) hangs the others. A call
        that depends on the rows then runs on a stand-in row where a process has none, its result unused."""
        return self.env.strategy == "fsdp"

    def call(self, name: str, fn: Callable, *args, **kwargs):
        """Run fn(module, *args) through the role's wrapper, under the run's autocast."""
        with self.env.autocast():
            return self._wrapped[name](fn, *args, **kwargs)

    def call_fp32(self, name: str, fn: Callable, *args, **kwargs):
        """Run fn(module, *args) through the role's wrapper with autocast off: float32 compute on the float32
        master weights (under FSDP2's bf16 parameter policy the weights stay bf16 all the same)."""
        with torch.autocast(self.env.device.type, enabled=False):
            return self._wrapped[name](fn, *args, **kwargs)

    def optimize(self, loss: torch.Tensor, *names: str) -> None:
        """One backward of an already computed `loss`, then one update of each named role (`update`)."""
        self._zero_grads()
        loss.backward()
        self.update(*names)

    def accumulate(self, loss_fn: LossFn, inputs: dict[str, torch.Tensor], *names: str) -> dict[str, float]:
        """One optimiser step of the roles `names` on a batch, in micro-batches of `data.micro_batch` rows.

        `inputs` holds every per-sample tensor of the step, its random draws included (drawn once for the whole
        batch); `loss_fn(rows) -> (loss, logs)` must be a mean over its rows, so each micro-batch's backward
        of loss × (its rows / all rows) sums to the full batch's gradient. Returns the logs averaged the same way.
        """
        self._zero_grads()
        rows = len(next(iter(inputs.values())))
        size = self.micro_batch or rows
        logs: dict[str, float] = {}
        for start in range(0, rows, size):
            micro = {key: value[start:start + size] for key, value in inputs.items()}
            with self._gradient_sync(start + size >= rows):
                loss, values = loss_fn(micro)
                (loss if size == rows else loss * (size / rows)).backward()
            for key, value in values.items():
                logs[key] = logs.get(key, 0.0) + value * (size / rows)
        self.update(*names)
        return logs

    def update(self, *names: str) -> None:
        """Per named role, after its gradients are complete: gradient clipping (when configured), an optimiser
        and LR-schedule step, and the EMA update if it is the exported role."""
        for name in names:
            average_replicated_grads(self.module(name), self.env)
            if self.optim.grad_clip is not None:
                torch.nn.utils.clip_grad_norm_(self.module(name).parameters(), self.optim.grad_clip)
            self.optimizers[name].step()
            self.schedulers[name].step()
            if self.ema is not None and name == self.exported_role:
                self.ema.update(self.module(name))

    def _zero_grads(self) -> None:
        """Clear every role's gradients, so a role that took part without updating (the discriminator in the
        generator's GAN loss) never carries stale gradients into its own step."""
        for optimizer in self.optimizers.values():
            optimizer.zero_grad(set_to_none=True)

    @contextlib.contextmanager
    def _gradient_sync(self, sync: bool):
        """DDP all-reduces gradients in the backward of the last micro-batch only (`no_sync` before it). FSDP2
        reduce-scatters every micro-batch into the sharded gradients: skipping that would keep a full unsharded
        fp32 gradient per rank (56 GiB for a 14B role), the memory FSDP2 is there to save."""
        with contextlib.ExitStack() as stack:
            if not sync:
                for wrapped in self._wrapped.values():
                    if isinstance(wrapped, DistributedDataParallel):
                        stack.enter_context(wrapped.no_sync())
            yield

    @contextlib.contextmanager
    def using_rng(self, generator: torch.Generator):
        """Draw from `generator` instead of self.rng inside the block (fixed-noise evaluations)."""
        saved, self.rng = self.rng, generator
        try:
            yield
        finally:
            self.rng = saved

    def randn_like(self, x: torch.Tensor) -> torch.Tensor:
        return torch.randn(x.shape, generator=self.rng, device=x.device, dtype=torch.float32).to(x.dtype)

    def step(self, batch: dict[str, torch.Tensor], iteration: int) -> dict[str, float]:
        raise NotImplementedError

    def export_modules(self) -> dict[str, nn.Module]:
        """Trainable roles by name, for checkpoints."""
        return {name: self.module(name) for name in self.trainable}
