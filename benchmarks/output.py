# SPDX-License-Identifier: Apache-2.0
"""Where benchmarks write: where --out (or --json) says, never over a published result unless --force says so.

The results in benchmarks/results/ are the README's numbers, committed with it; a benchmark run that
replaced them by accident (an argument left out, a run from the repository root) would silently change
what the README cites. The check runs before any work, so a refused run costs nothing.
"""
from __future__ import annotations

import argparse
from pathlib import Path
from typing import Iterable

from ..tmd_core.errors import TMDError

RESULTS = Path(__file__).resolve().parent / "results"
DEFAULT_OUT = Path("runs") / "benchmarks"  # under the working folder; runs/ is ignored by git


class BenchmarkOutputError(TMDError, ValueError):
    """A benchmark was asked to write over a published result without --force, or into no folder."""


def add_output_options(parser: argparse.ArgumentParser, name: str) -> None:
    """--out FOLDER (default runs/benchmarks/<name>) and --force."""
    parser.add_argument("--out", default=str(DEFAULT_OUT / name), help="folder for the result files")
    add_force_option(parser)


def add_force_option(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--force", action="store_true",
                        help=f"allow replacing the published results in {RESULTS.parent.name}/{RESULTS.name}/")


def check_output(paths: Iterable[str | Path], force: bool, published: Path | None = None) -> None:
    """Refuse a file that would replace a published result (unless `force`), or whose folder is a file. Published
    results are those in benchmarks/results/, or in the folder `published` (a command that writes docs/)."""
    published = RESULTS if published is None else published
    for path in paths:
        resolved = Path(path).resolve()
        if resolved.exists() and resolved.is_relative_to(published) and not force:
            raise BenchmarkOutputError(f"{path} is a published result in {published.parent.name}/{published.name}/; "
                                       "pass --force to replace it, or choose another --out.")
        folder = next((p for p in resolved.parents if p.exists()), None)
        if folder is not None and not folder.is_dir():
            raise BenchmarkOutputError(f"cannot write {path}: {folder} is a file, not a folder.")
