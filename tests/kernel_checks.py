# SPDX-License-Identifier: Apache-2.0
"""Accuracy checks shared by the kernel tests: a kernel may err at most twice as much as torch at the same dtype,
both measured against a float64 reference (the flash-attention convention, so bf16 tolerances are not hand-tuned)."""
import torch


def random(shape, device, dtype, seed):
    """Fresh N(0, 1) values (never zeros) from their own seeded generator."""
    g = torch.Generator().manual_seed(seed)
    return torch.randn(shape, generator=g, dtype=torch.float64).to(device, dtype)


def assert_within_torch_error(kernel: torch.Tensor, torch_out: torch.Tensor, reference: torch.Tensor,
                              atol: float = 1e-5) -> None:
    """max|kernel − ref| ≤ 2·max|torch − ref| + atol, with ref in float64 and every kernel value finite."""
    assert kernel.shape == reference.shape and kernel.dtype == torch_out.dtype
    assert torch.isfinite(kernel).all(), "the kernel left NaN/inf (an unwritten, poisoned element?)"
    kernel_err = (kernel.double() - reference).abs().max().item()
    torch_err = (torch_out.double() - reference).abs().max().item()
    assert kernel_err <= 2 * torch_err + atol, f"kernel error {kernel_err:.3g} vs torch's {torch_err:.3g} (+{atol:g})"
