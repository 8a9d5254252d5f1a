"""SICK-R with a trained regressor (task ``SICKRelatedness-finetune``; upstream's original protocol).

SimCSE renamed this upstream class and switched its dev metric to Spearman; the default
``SICKRelatedness`` task is the cosine evaluator in ``sts.py``.
"""

from __future__ import annotations

from pathlib import Path

from senteval.sts import SPLITS, Lookup, Pairs, SICKRelatednessEval
from senteval.tools.relatedness import run_relatedness
from senteval.utils import dotdict


class SICKFinetuneEval(SICKRelatednessEval):
    """Regressor on [|u-v|, u*v] predicting a distribution over scores 1..5; early stop on dev Spearman."""

    score_range = (1, 5)

    def load(self, task_dir: Path, params: dotdict) -> dict[str, Pairs]:
        return super().load(task_dir, dotdict({**params, "sts_splits": SPLITS}))

    def run(self, params: dotdict, lookup: Lookup) -> dict:
        return run_relatedness(self.data, lookup, params, self.score_range)
