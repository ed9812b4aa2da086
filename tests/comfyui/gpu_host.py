# SPDX-License-Identifier: Apache-2.0
"""What a GPU host does to a model, emulated on the CPU, where every module already sits on the one device.

- `ManagedModules` hooks every module ComfyUI manages for a patched model (Wan and its additional models,
  the flow head among them) and counts the calls each receives during sampling: a module the sampler runs
  that ComfyUI does not manage (a private copy of the head) never shows up there.
- `offloaded_host` makes ComfyUI load models as `--novram` (or a small `--lowvram` budget) does on a GPU:
  only what its own loader moves or casts reaches the compute device. Any weight it leaves behind is then
  "on the CPU": a guard on every torch call raises at the first computation that uses such a weight without
  a transfer (`.to`, ComfyUI's `cast_to`), which on CUDA is the device-mismatch error.
"""
from __future__ import annotations

import contextlib
import dataclasses

import torch
from torch.overrides import TorchFunctionMode

# Calls that read a tensor's metadata or transfer it; everything else computes with it.
TRANSFERS = {torch.Tensor.to, torch.Tensor.copy_, torch.empty_like, torch.Tensor.clone, torch.Tensor.detach}
METADATA = {"size", "dim", "numel", "nelement", "element_size", "data_ptr", "is_floating_point", "__len__",
            "__repr__", "__format__", "storage_offset", "stride", "is_contiguous", "untyped_storage",
            "_has_compatible_shallow_copy_type"}


class OffloadedWeightError(RuntimeError):
    """A weight left on the offload device was used in a computation on the compute device."""


@dataclasses.dataclass
class _Owner:
    name: str
    module: torch.nn.Module
    patcher: object  # the ModelPatcher whose model holds the module


def managed_patchers(model) -> list:
    """The ModelPatchers ComfyUI loads for a sampling run of `model`: the model and its additional models."""
    return [model, *model.get_nested_additional_models()]


def _weights_on_device(owner: _Owner) -> bool:
    """Did ComfyUI's loader put this module's own parameters on the load device (as it tracks it)?"""
    if not owner.patcher.model.model_lowvram:
        return owner.patcher.model.model_loaded_weight_memory > 0  # fully loaded
    return getattr(owner.module, "comfy_patched_weights", False) is True


class _OffloadGuard(TorchFunctionMode):
    def __init__(self, owners: dict[int, _Owner]):
        super().__init__()
        self.owners = owners

    def offloaded(self, value) -> _Owner | None:
        owner = self.owners.get(id(value)) if isinstance(value, torch.Tensor) else None
        return owner if owner is not None and not _weights_on_device(owner) else None

    def __torch_function__(self, func, types, args=(), kwargs=None):
        kwargs = kwargs or {}
        name = getattr(func, "__name__", "")
        if func in TRANSFERS or name in METADATA or name in ("__get__", "__set__"):
            result = func(*args, **kwargs)
            if func is torch.Tensor.to and result is args[0] and self.offloaded(args[0]):
                result = result.clone()  # across devices `.to` copies: the copy is on the compute device
            return result
        for value in [*args, *kwargs.values()]:
            for item in value if isinstance(value, (list, tuple)) else [value]:
                owner = self.offloaded(item)
                if owner is not None:
                    raise OffloadedWeightError(f"{owner.name} is still on the offload device when {name} uses it: "
                                               "on a GPU this is a device mismatch.")
        return func(*args, **kwargs)


@contextlib.contextmanager
def offloaded_host(monkeypatch, model, budget_bytes: float = 0.1):
    """Sampling `model` inside this block runs as on a GPU host that keeps at most `budget_bytes` of weights
    resident per model (0.1 = `--novram`); weights ComfyUI does not load must be transferred before use."""
    import comfy.model_management as mm

    def use_more_vram(self, extra_memory, force_patch_weights=False):
        return self.model.partially_load(self.device, min(extra_memory, budget_bytes),
                                         force_patch_weights=force_patch_weights)

    mm.unload_all_models()  # a model loaded whole by an earlier test would stay whole
    monkeypatch.setattr(mm.LoadedModel, "model_use_more_vram", use_more_vram)
    owners: dict[int, _Owner] = {}
    for patcher in managed_patchers(model):
        for module_name, module in patcher.model.named_modules():
            for param_name, param in module.named_parameters(recurse=False):
                name = f"{type(patcher.model).__name__}.{module_name}.{param_name}"
                owners[id(param)] = _Owner(name, module, patcher)
    guard = _OffloadGuard(owners)
    cast_to = mm.cast_to

    def cast_to_as_across_devices(weight, dtype=None, device=None, non_blocking=False, copy=False, **later):
        # `later`: what newer releases add (stream, r), passed through as given
        return cast_to(weight, dtype, device, non_blocking, copy or guard.offloaded(weight) is not None, **later)

    monkeypatch.setattr(mm, "cast_to", cast_to_as_across_devices)
    try:
        with guard:
            yield
    finally:
        mm.unload_all_models()


class ManagedModules:
    """Forward hooks on every module of the models ComfyUI manages for `model`; `calls(module)` counts its runs."""

    def __init__(self, model):
        self.counts: dict[int, int] = {}
        self.handles = [module.register_forward_hook(self._count)
                        for patcher in managed_patchers(model) for module in patcher.model.modules()]

    def _count(self, module, args, output):
        self.counts[id(module)] = self.counts.get(id(module), 0) + 1

    def calls(self, module: torch.nn.Module) -> int:
        return self.counts.get(id(module), 0)

    def close(self):
        for handle in self.handles:
            handle.remove()


def modules_and_tensors(value, path: str = "model_options") -> list[str]:
    """Paths of every nn.Module or tensor inside an options structure (what ModelPatcher.clone deep-copies)."""
    if isinstance(value, (torch.nn.Module, torch.Tensor)):
        return [path]
    if isinstance(value, dict):
        return [p for key, item in value.items() for p in modules_and_tensors(item, f"{path}[{key!r}]")]
    if isinstance(value, (list, tuple, set)):
        return [p for i, item in enumerate(value) for p in modules_and_tensors(item, f"{path}[{i}]")]
    if dataclasses.is_dataclass(value) and not isinstance(value, type):
        return [p for field in dataclasses.fields(value)
                for p in modules_and_tensors(getattr(value, field.name), f"{path}.{field.name}")]
    if hasattr(value, "__dict__") and not callable(value):
        return [p for key, item in vars(value).items() for p in modules_and_tensors(item, f"{path}.{key}")]
    return []
