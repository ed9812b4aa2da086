# SPDX-License-Identifier: Apache-2.0
"""What every command of the pack shares: `--help` that shows defaults, and one line instead of a traceback.

A TMDError (bad input, named in one sentence) ends a command with exit status 2, as argparse does for a bad
option; Ctrl-C ends it with 130, the status a shell gives a program stopped by SIGINT.
"""
from __future__ import annotations

import argparse
import sys
from typing import Callable

from .errors import TMDError

BAD_INPUT = 2
INTERRUPTED = 130


class HelpFormatter(argparse.ArgumentDefaultsHelpFormatter):
    """Adds "(default: …)" to each option's help, except where there is no default to show (None, or a flag)."""

    def _get_help_string(self, action: argparse.Action) -> str | None:
        if action.default is None or action.default is False:
            return action.help
        return super()._get_help_string(action)


def argument_parser(description: str, **options) -> argparse.ArgumentParser:
    """An ArgumentParser whose --help shows defaults."""
    return argparse.ArgumentParser(description=description, formatter_class=HelpFormatter, **options)


def run_command(main: Callable[[list[str] | None], object], argv: list[str] | None = None) -> int:
    """The exit status of `main(argv)`: 0; 2 after printing "error: <sentence>" for a TMDError; 130 after Ctrl-C."""
    try:
        main(argv)
    except TMDError as err:
        print(f"error: {err}", file=sys.stderr)
        return BAD_INPUT
    except KeyboardInterrupt:
        print("interrupted by Ctrl-C; stopped.", file=sys.stderr)
        return INTERRUPTED
    return 0
