# SPDX-License-Identifier: Apache-2.0
"""How much a toy model's velocity depends on each word of the caption: does it read colour, shape and
direction at all? (A teacher that ignores the direction word cannot draw motion on demand.)

    python -m comfyui_tmd.benchmarks.toy_word_sensitivity [--wan toy/checkpoints/toy_teacher.safetensors]

Real clips of a caption are noised to time t with seeded noise; v(x_t, t, caption) is compared with v for
the same x_t under the caption with one attribute swapped for each other value of that attribute. A cell
is RMS(v_swapped − v) / RMS(v), averaged over captions, clips and swaps. The same table for an untrained
Wan of the same size (seeded) is the reference: at initialisation every word moves the output by a
similar amount, so a trained column far below it is a word the model has learnt to ignore.
Writes toy_word_sensitivity.md and .json into --out (default runs/benchmarks/<name>/; the published
tables in benchmarks/results/ are replaced only with --force).
"""
from __future__ import annotations

from pathlib import Path

import torch

from ..tmd_core import WanDiT
from ..toy.world import COLOURS, DIRECTIONS, SHAPES, caption_of, parse_caption
from ..tmd_core.command_line import run_command
from .toy_probes import load_probe_inputs, noised_real_clips, parse_probe_args, velocity, write_report

TIMES = (0.95, 0.8, 0.6, 0.3)
ATTRIBUTES = {"colour": tuple(COLOURS), "shape": SHAPES, "direction": tuple(DIRECTIONS)}
REFERENCE_SEED = 0


def swaps(caption: str, attribute: str) -> list[str]:
    """The caption with `attribute` replaced by each of its other values."""
    words = dict(zip(ATTRIBUTES, parse_caption(caption), strict=True))
    return [caption_of(**{**words, attribute: value}) for value in ATTRIBUTES[attribute] if value != words[attribute]]


def relative_change(v: torch.Tensor, v_other: torch.Tensor) -> float:
    """RMS(v_other − v) / RMS(v)."""
    return float((v_other - v).pow(2).mean().sqrt() / v.pow(2).mean().sqrt())


@torch.no_grad()
def sensitivity(wan: torch.nn.Module, captions: list[str], clips: int, seed: int = 0) -> dict[str, dict[str, float]]:
    """{t: {attribute: mean relative change}} over `captions`, `clips` real clips each."""
    wan = wan.float().eval()
    generator = torch.Generator().manual_seed(seed)
    table = {}
    for t in TIMES:
        changes: dict[str, list[float]] = {attribute: [] for attribute in ATTRIBUTES}
        for index, caption in enumerate(captions):
            x_t = noised_real_clips(caption, clips, seed + index, t, generator)
            v = velocity(wan, x_t, t, caption)  # once per caption: every swap is measured against it
            for attribute in ATTRIBUTES:
                changes[attribute] += [relative_change(v, velocity(wan, x_t, t, other))
                                       for other in swaps(caption, attribute)]
        table[f"{t:g}"] = {attribute: sum(values) / len(values) for attribute, values in changes.items()}
    return table


def untrained_like(wan: WanDiT) -> WanDiT:
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(REFERENCE_SEED)
        return WanDiT(wan.config)


def markdown(results: dict[str, dict[str, dict[str, float]]]) -> str:
    rows = ["| model | t | " + " | ".join(ATTRIBUTES) + " |", "|---|---|" + "---|" * len(ATTRIBUTES)]
    for model, table in results.items():
        rows += [f"| {model} | {t} | " + " | ".join(f"{cells[a]:.4f}" for a in ATTRIBUTES) + " |"
                 for t, cells in table.items()]
    return "\n".join(rows) + "\n"


def main(argv: list[str] | None = None) -> dict:
    args = parse_probe_args(__doc__.split("\n")[0], argv, clips=4, name="toy_word_sensitivity")
    wan, captions = load_probe_inputs(args)
    results = {Path(args.wan).name: sensitivity(wan, captions, args.clips),
               f"untrained (seed {REFERENCE_SEED})": sensitivity(untrained_like(wan), captions, args.clips)}
    write_report(args.out, "toy_word_sensitivity", markdown(results),
                 {"captions": captions, "clips": args.clips, "results": results})
    return results


if __name__ == "__main__":
    raise SystemExit(run_command(main))
