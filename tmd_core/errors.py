# SPDX-License-Identifier: Apache-2.0
"""Errors the pack raises for bad input: each carries one sentence naming the value and what was expected."""


class TMDError(Exception):
    """Base class of every error the pack raises on purpose."""


class CheckpointError(TMDError, ValueError):
    """A file is missing, not safetensors, truncated, or does not match the model it is loaded into."""


class SamplingConfigError(TMDError, ValueError):
    """Impossible outer/inner step counts, head depth, or grid parameters."""


class LatentShapeError(TMDError, ValueError):
    """A latent or text-context tensor has the wrong rank, channels or size for the model."""


class NonFiniteError(TMDError, FloatingPointError):
    """Sampling produced NaN or inf values."""
