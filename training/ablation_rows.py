# SPDX-License-Identifier: Apache-2.0
"""The rows of the toy ablation (training/toy_ablation.py): each is the toy TMD student of
training/configs/toy.yaml (M = 2, N = 2, H = 1, inner form y1, gated fusion, GAN weight 0.03, stage 1
then stage 2 with gradients through every inner step, no EMA) with one setting changed, or a baseline
from the same teacher: plain DMD2-v trained for 1, 2 or 4 steps, and the teacher's own Euler with CFG
at about the students' NFE (no training).
"""
from __future__ import annotations

import dataclasses

from .errors import TrainingConfigError

# Stage 2 updates the student on one iteration in five, so the toy plan's 500 iterations are 100 updates.
# With the EMA's warm-up (training/ema.py: decay min(decay, n/(n+9)) at update n) those 100 updates never reach
# a decay above 100/109 ≈ 0.92, so any decay from 0.92 up gives this row: an average over roughly the last
# tenth of training, with the stage's initial weights forgotten.
EMA_DECAY = 0.95
KINDS = ("tmd", "dmd2v", "teacher")


@dataclasses.dataclass(frozen=True)
class Row:
    name: str  # what --rows names
    label: str  # what the table says
    kind: str  # "tmd": stage 1 then stage 2; "dmd2v": the plain baseline; "teacher": Euler, no training
    overrides: tuple[tuple[str, object], ...] = ()  # (dotted key, value) over training/configs/toy.yaml
    stage1: bool = True  # tmd: False starts stage 2 from the teacher with a fresh flow head
    steps: int = 0  # teacher: Euler steps (two model calls each, with CFG)

    @property
    def title(self) -> str:
        return f"{self.name}: {self.label}"


ROWS = (
    Row("tmd", "TMD N2H1, the toy default", "tmd"),
    Row("n1", "TMD N = 1", "tmd", (("model.inner_steps", 1),)),
    Row("n4", "TMD N = 4", "tmd", (("model.inner_steps", 4),)),
    Row("h2", "TMD H = 2", "tmd", (("model.head_blocks", 2),)),
    Row("ys", "TMD inner form ys", "tmd", (("model.inner_form", "ys"),)),
    Row("no-stage1", "TMD without stage 1 (fresh head on the teacher)", "tmd", stage1=False),
    Row("grad-last", "TMD, gradients through the last inner step only", "tmd", (("stage2.rollout_grad", "last"),)),
    Row("gan0", "TMD, GAN weight 0", "tmd", (("stage2.gan_weight", 0.0),)),
    Row("concat", "TMD, concat fusion", "tmd", (("model.fusion", "concat"),)),
    Row("ema", f"TMD, EMA {EMA_DECAY} in stage 2", "tmd", (("stage2.optim.ema_decay", EMA_DECAY),)),
    Row("dmd2v-1", "DMD2-v trained for 1 step", "dmd2v", (("model.outer_steps", 1),)),
    Row("dmd2v-2", "DMD2-v trained for 2 steps", "dmd2v", (("model.outer_steps", 2),)),
    Row("dmd2v-4", "DMD2-v trained for 4 steps", "dmd2v", (("model.outer_steps", 4),)),
    Row("euler-1", "teacher Euler 1 step, CFG", "teacher", steps=1),
    Row("euler-2", "teacher Euler 2 steps, CFG", "teacher", steps=2),
)


def select_rows(names: list[str] | None) -> list[Row]:
    """The rows `names` (every row for None), in the order of ROWS; unknown names are refused."""
    if names is None:
        return list(ROWS)
    known = {row.name for row in ROWS}
    unknown = [name for name in names if name not in known] or ([] if names else [""])
    if unknown:
        raise TrainingConfigError(f"--rows names unknown row {unknown[0]!r}; the rows are "
                                  f"{', '.join(row.name for row in ROWS)}.")
    return [row for row in ROWS if row.name in names]
