"""SST2 (binary sentiment): fixed train/dev/test files ``sentence<TAB>label`` (UTF-8)."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from pathlib import Path

import numpy as np

from senteval.tools.validation import classifier_config, split_classifier
from senteval.utils import DataError, dotdict, read_lines, split_fields


def load_labelled(path: Path, nclasses: int) -> tuple[list[list[str]], np.ndarray]:
    """Read ``sentence\\tlabel`` lines; labels must be integers in [0, nclasses)."""
    sents, labels = [], []
    for i, line in enumerate(read_lines(path, "utf-8"), start=1):
        if not line.strip():
            continue
        fields = split_fields(line.strip(), path, i, 2)
        try:
            lab = int(fields[-1])
        except ValueError:
            raise DataError(path, f"label is not an integer: {fields[-1]!r}", i) from None
        if not 0 <= lab < nclasses:
            raise DataError(path, f"label {lab} outside 0..{nclasses - 1}", i)
        sents.append(fields[0].split())
        labels.append(lab)
    return sents, np.array(labels, dtype=np.int64)


def _upstream_order(sents: list[list[str]], y: np.ndarray) -> tuple[list[list[str]], np.ndarray]:
    """Upstream orders every split by (length, label) before embedding; the train order decides the
    classifier's mini-batches (it indexes the shuffles), the dev/test order how they are chunked."""
    order = sorted(range(len(sents)), key=lambda i: (len(sents[i]), y[i]))  # stable
    return [sents[i] for i in order], y[order]


class SSTEval:
    """Binary SST: reg picked on dev, test scored once."""

    def __init__(self, task_dir: Path, params: dotdict) -> None:
        base = task_dir / "SST" / "binary"
        self.data = {s: _upstream_order(*load_labelled(base / f"sentiment-{s}", 2)) for s in ("train", "dev", "test")}

    def sentences(self) -> list[list[str]]:
        return [s for sents, _ in self.data.values() for s in sents]

    def run(self, params: dotdict, lookup: Callable[[Sequence[Sequence[str]]], np.ndarray]) -> dict:
        feats = {k: (lookup(s), y) for k, (s, y) in self.data.items()}
        res = split_classifier(feats, classifier_config(params, 2))
        return {**res, "ndev": len(self.data["dev"][1]), "ntest": len(self.data["test"][1])}
