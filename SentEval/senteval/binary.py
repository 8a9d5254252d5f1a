"""MR, CR, SUBJ, MPQA: one pool of labelled sentences, inner k-fold CV (docs/FAITHFULNESS.md, "SentEval")."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from pathlib import Path

import numpy as np

from senteval.tools.validation import classifier_config, inner_kfold
from senteval.utils import dotdict, read_lines


class BinaryEval:
    """Positive file (label 1) + negative file (label 0), latin-1, one sentence per line."""

    folder = ""
    pos_file = ""
    neg_file = ""

    def __init__(self, task_dir: Path, params: dotdict) -> None:
        base = task_dir / self.folder
        pos = [line.split() for line in read_lines(base / self.pos_file, "latin-1")]
        neg = [line.split() for line in read_lines(base / self.neg_file, "latin-1")]
        # upstream encodes in (length, label) order and feeds the classifier in that order; the
        # order decides the shuffled folds, so keep it (stable sort)
        pairs = sorted(zip(pos + neg, [1] * len(pos) + [0] * len(neg)), key=lambda z: (len(z[0]), z[1]))
        self.samples = [s for s, _ in pairs]
        self.labels = np.array([lab for _, lab in pairs], dtype=np.int64)

    def sentences(self) -> list[list[str]]:
        return self.samples

    def run(self, params: dotdict, lookup: Callable[[Sequence[Sequence[str]]], np.ndarray]) -> dict:
        res = inner_kfold(lookup(self.samples), self.labels, classifier_config(params, 2))
        return {**res, "ndev": len(self.samples), "ntest": len(self.samples)}


class MREval(BinaryEval):
    folder, pos_file, neg_file = "MR", "rt-polarity.pos", "rt-polarity.neg"


class CREval(BinaryEval):
    folder, pos_file, neg_file = "CR", "custrev.pos", "custrev.neg"


class SUBJEval(BinaryEval):
    folder, pos_file, neg_file = "SUBJ", "subj.objective", "subj.subjective"


class MPQAEval(BinaryEval):
    folder, pos_file, neg_file = "MPQA", "mpqa.pos", "mpqa.neg"
