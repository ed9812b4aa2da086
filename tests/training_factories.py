# SPDX-License-Identifier: Apache-2.0
"""Sizes and helpers shared by the training tests (tests/training/)."""
import json
import socket
import subprocess
import sys
from pathlib import Path

import torch

from comfyui_tmd.training.shards import write_shard

SHARD_LATENT = (16, 3, 4, 6)  # [C, T, H, W] -> 18 tokens
TEXT_LEN = 7
TORCHRUN_WORKER = Path(__file__).parent / "training" / "torchrun_worker.py"  # trains under torchrun, reports ranks


def random_shard(path, n=4, seed=0, latent=SHARD_LATENT, text_len=TEXT_LEN):
    """A shard of random latents and embeddings (fresh random values, never zeros)."""
    g = torch.Generator().manual_seed(seed)
    return write_shard(path, torch.randn(n, *latent, generator=g), torch.randn(n, text_len, 4096, generator=g),
                       torch.randn(1, text_len, 4096, generator=g))


def free_port() -> int:
    """A TCP port nobody listens on, for torchrun's rendezvous."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def torchrun_training(config_dict: dict, stage: str, out: Path) -> subprocess.CompletedProcess:
    """Train `stage` of the config in two gloo processes under torchrun (torchrun_worker.py), output in `out`."""
    out.mkdir(parents=True, exist_ok=True)
    config_path = out / "config.json"
    config_path.write_text(json.dumps(config_dict))
    return subprocess.run([sys.executable, "-m", "torch.distributed.run", "--nproc_per_node", "2",
                           "--master_addr", "127.0.0.1", "--master_port", str(free_port()), str(TORCHRUN_WORKER),
                           str(config_path), stage, str(out)], capture_output=True, text=True, timeout=600)
