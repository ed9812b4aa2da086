# SPDX-License-Identifier: Apache-2.0
"""Triton kernels for the hot path, each with a torch reference and an impl switch (issue 6)."""
