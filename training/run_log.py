# SPDX-License-Identifier: Apache-2.0
"""Per-step logs of a run (main process only): CSV always, TensorBoard when the `tensorboard` package is
installed, a progress bar (tqdm when installed), and a loss-curve PNG at the end when matplotlib is.

The CSV has one row per logged iteration with a fixed column set (the algorithm's `log_keys`; blank where
an iteration does not produce a value, e.g. the critic losses on a student iteration). On resume the
rows after the resumed iteration are dropped, so the file never repeats an iteration.
"""
from __future__ import annotations

import csv
import importlib.util
import sys
import time
from pathlib import Path


class RunLog:
    def __init__(self, out: Path, keys: tuple[str, ...], total: int, enabled: bool = True):
        self.path, self.keys = out / "log.csv", ("iteration", *keys, "lr", "seconds")
        self.total, self.enabled = total, enabled
        self.started, self._tb, self._bar = time.monotonic(), None, None
        if not enabled:
            return
        out.mkdir(parents=True, exist_ok=True)
        if importlib.util.find_spec("tensorboard") is not None:
            from torch.utils.tensorboard import SummaryWriter

            self._tb = SummaryWriter(str(out / "tensorboard"))
        else:
            print("TensorBoard logging is off: the tensorboard package is not installed (CSV logs are in log.csv).")

    @property
    def tensorboard(self):
        """The run's TensorBoard SummaryWriter, None when TensorBoard logging is off (for validation's images)."""
        return self._tb

    def start(self, iteration: int) -> None:
        """Open the CSV for a run that has completed `iteration` iterations, and the progress bar."""
        if not self.enabled:
            return
        rows = []
        if self.path.is_file():
            with self.path.open(newline="") as f:
                rows = [row for row in csv.DictReader(f) if int(row["iteration"]) <= iteration]
        with self.path.open("w", newline="") as f:
            writer = csv.DictWriter(f, self.keys)
            writer.writeheader()
            writer.writerows({k: row.get(k, "") for k in self.keys} for row in rows)
        if importlib.util.find_spec("tqdm") is not None:
            from tqdm import tqdm

            self._bar = tqdm(total=self.total, initial=iteration, desc="training", dynamic_ncols=True)

    def log(self, iteration: int, values: dict[str, float], lr: float) -> None:
        if not self.enabled:
            return
        row = {"iteration": iteration, **values, "lr": lr, "seconds": round(time.monotonic() - self.started, 3)}
        with self.path.open("a", newline="") as f:
            csv.DictWriter(f, self.keys).writerow({k: row.get(k, "") for k in self.keys})
        if self._tb is not None:
            for key, value in values.items():
                self._tb.add_scalar(key, value, iteration)
        summary = " ".join(f"{k}={v:.4g}" for k, v in values.items())
        if self._bar is not None:
            self._bar.update(iteration - self._bar.n)
            self._bar.set_postfix_str(summary)
        else:
            sys.stderr.write(f"iteration {iteration}/{self.total} {summary}\n")

    def close(self) -> Path | None:
        """Close the writers and draw the loss curves; returns the PNG path, or None without matplotlib."""
        if not self.enabled:
            return None
        if self._bar is not None:
            self._bar.close()
        if self._tb is not None:
            self._tb.close()
        return plot_losses(self.path, self.keys[1:-2])


def plot_losses(csv_path: Path, keys: tuple[str, ...]) -> Path | None:
    """loss_curve.png beside the CSV: one panel per logged value over iterations."""
    if importlib.util.find_spec("matplotlib") is None:
        print("No loss-curve PNG: matplotlib is not installed (the values are in log.csv).")
        return None
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    with csv_path.open(newline="") as f:
        rows = list(csv.DictReader(f))
    fig, axes = plt.subplots(len(keys), 1, figsize=(7, 2.2 * len(keys)), sharex=True, squeeze=False)
    for ax, key in zip(axes[:, 0], keys, strict=True):
        points = [(int(r["iteration"]), float(r[key])) for r in rows if r.get(key)]
        if points:
            ax.plot(*zip(*points, strict=True), linewidth=1)
        ax.set_ylabel(key)
    axes[-1, 0].set_xlabel("iteration")
    fig.tight_layout()
    out = csv_path.with_name("loss_curve.png")
    fig.savefig(out, dpi=100)
    plt.close(fig)
    return out
