# SPDX-License-Identifier: Apache-2.0
"""Speed and quality benchmarks: each prints a table and ends with one JSON line."""
