"""MRPC paraphrase detection: features [|u-v|, u*v], k-fold CV on train, then test (acc and F1)."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from pathlib import Path

import numpy as np
from sklearn.metrics import f1_score

from senteval.tools.relatedness import pair_features
from senteval.tools.validation import classifier_config, kfold_then_test
from senteval.utils import DataError, dotdict, read_lines, split_fields

Pairs = tuple[list[list[str]], list[list[str]], np.ndarray]


def load_mrpc(path: Path) -> Pairs:
    """Header skipped; column 0 = label (0/1), columns 3/4 = the sentences. UTF-8 (BOM tolerated)."""
    sa, sb, labels = [], [], []
    for i, line in enumerate(read_lines(path, "utf-8-sig")[1:], start=2):
        if not line.strip():
            continue
        fields = split_fields(line.strip(), path, i, 5)
        if fields[0] not in ("0", "1"):
            raise DataError(path, f"label must be 0 or 1, got {fields[0]!r}", i)
        labels.append(int(fields[0]))
        sa.append(fields[3].split())
        sb.append(fields[4].split())
    return sa, sb, np.array(labels, dtype=np.int64)


def _upstream_order(sa: list[list[str]], sb: list[list[str]], y: np.ndarray) -> Pairs:
    order = sorted(range(len(y)), key=lambda i: (len(sa[i]), len(sb[i]), y[i]))  # stable
    return [sa[i] for i in order], [sb[i] for i in order], y[order]


class MRPCEval:
    def __init__(self, task_dir: Path, params: dotdict) -> None:
        # upstream orders both splits by (length A, length B, label): the train order decides the shuffled
        # folds and mini-batches, the test order how it is chunked for scoring
        self.train = _upstream_order(*load_mrpc(task_dir / "MRPC" / "msr_paraphrase_train.txt"))
        self.test = _upstream_order(*load_mrpc(task_dir / "MRPC" / "msr_paraphrase_test.txt"))

    def sentences(self) -> list[list[str]]:
        return self.train[0] + self.train[1] + self.test[0] + self.test[1]

    def run(self, params: dotdict, lookup: Callable[[Sequence[Sequence[str]]], np.ndarray]) -> dict:
        x = pair_features(lookup(self.train[0]), lookup(self.train[1]))  # (n, 2H)
        xt = pair_features(lookup(self.test[0]), lookup(self.test[1]))
        res = kfold_then_test(x, self.train[2], xt, self.test[2], classifier_config(params, 2))
        yhat = res.pop("yhat")
        f1 = round(100 * float(f1_score(self.test[2], yhat)), 2)
        return {**res, "f1": f1, "ndev": len(self.train[2]), "ntest": len(self.test[2])}
