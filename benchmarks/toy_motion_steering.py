# SPDX-License-Identifier: Apache-2.0
"""Does a toy model draw motion from the caption, or only keep the motion it already sees in x_t?

    python -m comfyui_tmd.benchmarks.toy_motion_steering [--wan toy/checkpoints/toy_teacher.safetensors]

Real clips of a caption are noised to time t with seeded noise, the model predicts the clean clip
x̂₀ = x_t − t·v(x_t, t, caption) (the flow map to 0), and the detector reads its direction. The same x_t is
predicted again under the caption with the opposite direction ("left" ↔ "right", "up" ↔ "down"). A cell is
the fraction of clips whose x̂₀ moves in the real clips' direction. Low t: the motion is still visible in
x_t and any good denoiser keeps it under either caption. High t: little of it is left, so a model that
reads the direction word follows the caption (own caption high, opposite caption low), and a model that
ignores it scores the same under both — it cannot start motion the caption asks for from noise.
Writes toy_motion_steering.md and .json into --out (default runs/benchmarks/<name>/; the published
tables in benchmarks/results/ are replaced only with --force).
"""
from __future__ import annotations

from pathlib import Path

import numpy as np
import torch

from ..toy.detector import detect
from ..toy.latent import decode
from ..toy.world import DIRECTIONS, caption_of, parse_caption
from ..tmd_core.command_line import run_command
from .toy_probes import load_probe_inputs, noised_real_clips, parse_probe_args, velocity, write_report

TIMES = (0.95, 0.9, 0.8, 0.6, 0.3)
CAPTION_KINDS = ("own caption", "opposite direction")


def opposite_direction(caption: str) -> str:
    """"a red square moving left" -> "a red square moving right"."""
    colour, shape, direction = parse_caption(caption)
    reverse = tuple(-step for step in DIRECTIONS[direction])
    return caption_of(colour, shape, next(name for name, step in DIRECTIONS.items() if step == reverse))


def moves_as(wan: torch.nn.Module, x_t: torch.Tensor, t: float, caption: str, direction: str) -> list[bool]:
    """Per clip of x_t [K, 16, T, H, W], whether the x̂₀ predicted under `caption` moves in `direction`."""
    clean = x_t - t * velocity(wan, x_t, t, caption)  # [K, 16, T, H, W]
    return [detect(frames).direction == direction for frames in decode(clean)]


@torch.no_grad()
def steering(wan: torch.nn.Module, captions: list[str], clips: int, seed: int = 0) -> dict[str, dict[str, float]]:
    """{t: {caption kind: fraction of x̂₀ that move in the real clips' direction}}."""
    wan = wan.float().eval()
    generator = torch.Generator().manual_seed(seed)
    table = {}
    for t in TIMES:
        kept: dict[str, list[bool]] = {kind: [] for kind in CAPTION_KINDS}
        for index, caption in enumerate(captions):
            x_t = noised_real_clips(caption, clips, seed + index, t, generator)
            direction = parse_caption(caption)[2]
            kept["own caption"] += moves_as(wan, x_t, t, caption, direction)
            kept["opposite direction"] += moves_as(wan, x_t, t, opposite_direction(caption), direction)
        table[f"{t:g}"] = {kind: float(np.mean(values)) for kind, values in kept.items()}
    return table


def markdown(model: str, table: dict[str, dict[str, float]]) -> str:
    rows = [f"| {model}: t | " + " | ".join(CAPTION_KINDS) + " |", "|---|" + "---|" * len(CAPTION_KINDS)]
    rows += [f"| {t} | " + " | ".join(f"{cells[k]:.3f}" for k in CAPTION_KINDS) + " |" for t, cells in table.items()]
    return "\n".join(rows) + "\n"


def main(argv: list[str] | None = None) -> dict:
    args = parse_probe_args(__doc__.split("\n")[0], argv, clips=8, name="toy_motion_steering")
    wan, captions = load_probe_inputs(args)
    table = steering(wan, captions, args.clips)
    write_report(args.out, "toy_motion_steering", markdown(Path(args.wan).name, table),
                 {"wan": Path(args.wan).name, "captions": captions, "clips": args.clips, "results": table})
    return table


if __name__ == "__main__":
    raise SystemExit(run_command(main))
