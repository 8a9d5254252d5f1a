"""SICK-R with a trained regressor (task ``SICKRelatedness-finetune``; upstream's original protocol).

SimCSE renamed this upstream class and switched its dev metric to Spearman; the default
``SICKRelatedness`` task is the cosine evaluator in ``sts.py``.
"""

from __future__ import annotations

from senteval.sts import RelatednessFinetune, SICKRelatednessEval


class SICKFinetuneEval(RelatednessFinetune, SICKRelatednessEval):
    """Regressor on [|u-v|, u*v] predicting a distribution over scores 1..5; early stop on dev Spearman."""

    score_range = (1, 5)
