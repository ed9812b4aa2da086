# SPDX-License-Identifier: Apache-2.0
"""Errors of the training scripts; like the core's, each carries one sentence naming the offending value."""
from ..tmd_core.errors import TMDError


class TrainingConfigError(TMDError, ValueError):
    """A training config has an unknown key, an impossible value, or does not match the run it resumes."""


class ShardError(TMDError, ValueError):
    """A data shard is missing, truncated, corrupt, or disagrees with the other shards."""


class PromptEncodingError(TMDError, ValueError):
    """A prompt file, text encoder or tokenizer is missing, of the wrong kind, or holds nothing to encode."""
