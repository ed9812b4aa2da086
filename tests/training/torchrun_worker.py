# SPDX-License-Identifier: Apache-2.0
"""Run under torchrun by test_torchrun.py: train from a JSON config, then check every rank holds the same
replicated trainable weights (all of them under DDP; under FSDP2 the unsharded scalars, the shards being
one copy) and write what rank 0 saw to a JSON file."""
import faulthandler
import json
import os
import sys

import torch
import torch.distributed as dist

from comfyui_tmd.training.config import config_from_dict
from comfyui_tmd.training.distributed import shutdown
from comfyui_tmd.training.trainer import Trainer


def main(config_path: str, stage: str, out: str) -> None:
    faulthandler.dump_traceback_later(120, exit=True)  # a hang fails the test with stacks instead of blocking CI
    config = config_from_dict(json.loads(open(config_path).read()))
    trainer = Trainer(config, stage, out)
    trainer.run()
    env, report = trainer.env, {}
    for name in trainer.algo.trainable:
        replicated = [p for p in trainer.algo.module(name).parameters() if not hasattr(p, "to_local")]
        local = torch.tensor([p.detach().double().sum().item() for p in replicated], dtype=torch.float64)
        gathered = [torch.zeros_like(local) for _ in range(env.world)]
        dist.all_gather(gathered, local)
        report[name] = all(torch.equal(gathered[0], g) for g in gathered)
    if env.is_main:
        with open(f"{out}/report.json", "w") as f:
            json.dump({"world": env.world, "strategy": env.strategy, "ranks_agree": report}, f)
    shutdown(env)


if __name__ == "__main__":
    main(*sys.argv[1:])
    # Skip interpreter teardown: once the process group is destroyed, torch's C++ destructors at exit
    # occasionally abort ("terminate called without an active exception"), failing a run that finished.
    sys.stdout.flush()
    sys.stderr.flush()
    os._exit(0)
