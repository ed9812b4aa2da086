# SPDX-License-Identifier: Apache-2.0
"""`python -m comfyui_tmd generate "a red square moving left" --out clip.gif` (see toy/cli.py)."""
from .toy.cli import main

raise SystemExit(main())
