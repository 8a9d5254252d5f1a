"""TREC question type (6 coarse classes): k-fold CV on train picks reg, then the test set."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from pathlib import Path

import numpy as np

from senteval.tools.validation import classifier_config, kfold_then_test
from senteval.utils import DataError, dotdict, read_lines

COARSE = {"ABBR": 0, "DESC": 1, "ENTY": 2, "HUM": 3, "LOC": 4, "NUM": 5}


def load_trec(path: Path) -> tuple[list[list[str]], np.ndarray]:
    """``COARSE:fine question tokens`` per line (latin-1); text = everything after the first space."""
    sents, labels = [], []
    for i, line in enumerate(read_lines(path, "latin-1"), start=1):
        if not line.strip():
            continue
        coarse, sep, rest = line.strip().partition(":")
        if not sep or coarse not in COARSE:
            raise DataError(path, f"expected COARSE:fine label with COARSE in {sorted(COARSE)}, got {coarse!r}", i)
        _fine, _, text = rest.partition(" ")
        sents.append(text.split())
        labels.append(COARSE[coarse])
    return sents, np.array(labels, dtype=np.int64)


def _upstream_order(sents: list[list[str]], y: np.ndarray) -> tuple[list[list[str]], np.ndarray]:
    order = sorted(range(len(sents)), key=lambda i: (len(sents[i]), y[i]))  # stable, as Python's sorted
    return [sents[i] for i in order], y[order]


class TRECEval:
    def __init__(self, task_dir: Path, params: dotdict) -> None:
        # upstream orders both splits by (length, label); the train order decides the shuffled folds and
        # mini-batches, the test order only how it is chunked for scoring
        self.train = _upstream_order(*load_trec(task_dir / "TREC" / "train_5500.label"))
        self.test = _upstream_order(*load_trec(task_dir / "TREC" / "TREC_10.label"))

    def sentences(self) -> list[list[str]]:
        return self.train[0] + self.test[0]

    def run(self, params: dotdict, lookup: Callable[[Sequence[Sequence[str]]], np.ndarray]) -> dict:
        res = kfold_then_test(lookup(self.train[0]), self.train[1], lookup(self.test[0]), self.test[1],
                              classifier_config(params, 6))
        res.pop("yhat")
        return {**res, "ndev": len(self.train[1]), "ntest": len(self.test[1])}
