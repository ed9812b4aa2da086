# SPDX-License-Identifier: Apache-2.0
"""ComfyUI V3 nodes: thin adapters over tmd_core (issue 3). Nothing here may hold math."""
