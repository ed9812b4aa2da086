# SPDX-License-Identifier: Apache-2.0
"""Offline training: TM-MeanFlow pretraining, DMD2-v distillation, export (issue 4). Never imported by nodes/."""
