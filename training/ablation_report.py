# SPDX-License-Identifier: Apache-2.0
"""The toy ablation's report: a markdown page (the quality table of benchmarks/toy_quality.py, one row per
ablation row, then the training runs), the JSON of every number, and a PNG of prompt adherence with 95 %
Wilson intervals per row (when matplotlib is installed). Every file is written atomically.
"""
from __future__ import annotations

import importlib.util
import json
from pathlib import Path

from ..benchmarks.toy_quality import markdown
from ..tmd_core.safe_files import atomic_path
from ..toy.metrics import ATTRIBUTES

SUFFIXES = (".md", ".json", ".png")
MARKERS = {"all": ("o", "black"), "colour": ("s", "tab:red"), "shape": ("^", "tab:green"),
           "direction": (">", "tab:blue")}


def runs_table(runs: list[dict]) -> str:
    rows = ["| run | trained for rows | iterations | seconds (the session that finished it) |", "|---|---|---|---|"]
    for run in runs:
        resumed = f", resumed after {run['resumed_at']}" if run.get("resumed_at") else ""
        rows.append(f"| {run['folder']} | {', '.join(run['rows'])} | {run['iterations']} | "
                    f"{run.get('seconds', 'not finished')}{resumed} |")
    return "\n".join(rows) + "\n"


def page(report: dict, image: str | None) -> str:
    """The markdown page; `image` is the PNG's file name beside it, None when there is no plot."""
    setting = report["setting"]
    plot = (f"![prompt adherence per row with 95 % intervals]({image})\n" if image else
            "(No plot: matplotlib is not installed; the intervals are in the table and the JSON.)\n")
    return (f"# Toy ablation\n\n"
            f"`python -m comfyui_tmd.training.toy_ablation {setting['command']}`\n\n"
            f"Every trained row starts from the same teacher (sha256 {setting['teacher_sha256']}…) and trains each "
            f"stage for the toy plan's iterations × {setting['budget_scale']:g} on {setting['train_clips']} real "
            f"clips; every row is measured on {setting['clips']} clips ({setting['prompts']} prompts × "
            f"{setting['clips'] // setting['prompts']} seeds) by the toy quality benchmark's detector and metrics, "
            f"rates with 95 % Wilson intervals. Rows that agree on a stage share its run.\n\n"
            f"{markdown(report['results'])}\n{plot}\n## What each row changes\n\n{rows_table(setting['rows'])}\n"
            f"## Training runs\n\n{runs_table(report['runs'])}")


def rows_table(rows: list[dict]) -> str:
    """Each row's changes from the toy TMD student (training/configs/toy.yaml), as the JSON's `setting.rows`."""
    lines = ["| row | kind | changes |", "|---|---|---|"]
    for row in rows:
        changes = [f"`{key}: {value}`" for key, value in row["overrides"]]
        if not row["stage1"]:
            changes.append("no stage 1: stage 2 starts from the teacher with a fresh flow head")
        if row["kind"] == "teacher":
            changes.append(f"{row['steps']} Euler step{'s' * (row['steps'] > 1)} with CFG, no training")
        lines.append(f"| {row['name']} | {row['kind']} | {'; '.join(changes) or 'none (the toy default)'} |")
    return "\n".join(lines) + "\n"


def plot_adherence(results: list[dict], path: Path) -> bool:
    """Adherence (all three attributes, and each) with its 95 % interval per row; False without matplotlib."""
    if importlib.util.find_spec("matplotlib") is None:
        return False
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(8, 1.2 + 0.42 * len(results)))
    for offset, name in zip((-0.24, -0.08, 0.08, 0.24), ("all", *ATTRIBUTES), strict=True):
        marker, colour = MARKERS[name]
        ys = [index + offset for index in range(len(results))]
        rates = [r["adherence"][name] for r in results]
        low = [rate - r["adherence_95"][name][0] for rate, r in zip(rates, results, strict=True)]
        high = [r["adherence_95"][name][1] - rate for rate, r in zip(rates, results, strict=True)]
        ax.errorbar(rates, ys, xerr=[low, high], fmt=marker, color=colour, markersize=4, capsize=2, linewidth=1,
                    label=name if name != "all" else "all three")
    ax.set_yticks(range(len(results)), [r["method"] for r in results], fontsize=8)
    ax.invert_yaxis()
    ax.set_xlim(-0.01, 1.01)
    ax.set_xlabel(f"prompt adherence ({results[0]['clips']} clips a row, 95 % Wilson intervals)")
    ax.grid(axis="x", alpha=0.3)
    ax.legend(fontsize=7, loc="lower center", bbox_to_anchor=(0.5, 1.0), ncol=4, frameon=False)
    fig.tight_layout()
    with atomic_path(path) as tmp:
        fig.savefig(tmp, format="png", dpi=100)
    plt.close(fig)
    return True


def write_report(report: dict, folder: Path, stem: str) -> list[Path]:
    """<stem>.md, <stem>.json and (with matplotlib) <stem>.png in `folder`; returns the files written."""
    folder.mkdir(parents=True, exist_ok=True)
    paths = [folder / f"{stem}{suffix}" for suffix in SUFFIXES]
    with atomic_path(paths[1]) as tmp:
        tmp.write_text(json.dumps(report, indent=1) + "\n", encoding="utf-8")
    plotted = plot_adherence(report["results"], paths[2])
    if not plotted:
        print(f"no {paths[2].name}: matplotlib is not installed (the intervals are in {paths[0].name}).")
    with atomic_path(paths[0]) as tmp:
        tmp.write_text(page(report, paths[2].name if plotted else None), encoding="utf-8")
    return paths if plotted else paths[:2]
