"""The SentEval engine: ``SE(params, batcher, prepare).eval(task_or_tasks)``.

Unlike upstream, a task never calls the batcher itself. The engine asks the task for every sentence
it needs (only the splits it will report), encodes each *distinct* sentence once in length-sorted
batches, and hands the task a lookup into that embedding cache. With attention masks the vectors are
the same as upstream's per-pair batching up to float rounding, but far fewer sentences are encoded
and padding is minimal. The cache is shared across the tasks of one ``SE`` when there is no
``prepare`` (a ``prepare`` may change how sentences are embedded, e.g. build a vocabulary).
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import numpy as np
from tqdm.auto import tqdm

from senteval.binary import CREval, MPQAEval, MREval, SUBJEval
from senteval.mrpc import MRPCEval
from senteval.sick import SICKFinetuneEval
from senteval.sst import SSTEval
from senteval.sts import (
    SICKRelatednessEval,
    STS12Eval,
    STS13Eval,
    STS14Eval,
    STS15Eval,
    STS16Eval,
    STSBenchmarkEval,
    STSBenchmarkFinetuneEval,
)
from senteval.trec import TRECEval
from senteval.utils import DataError, dotdict, require_dir

logger = logging.getLogger(__name__)

TASKS: dict[str, Callable[..., Any]] = {
    "STS12": STS12Eval,
    "STS13": STS13Eval,
    "STS14": STS14Eval,
    "STS15": STS15Eval,
    "STS16": STS16Eval,
    "STSBenchmark": STSBenchmarkEval,
    "SICKRelatedness": SICKRelatednessEval,
    "STSBenchmark-finetune": STSBenchmarkFinetuneEval,
    "SICKRelatedness-finetune": SICKFinetuneEval,
    "MR": MREval,
    "CR": CREval,
    "SUBJ": SUBJEval,
    "MPQA": MPQAEval,
    "SST2": SSTEval,
    "TREC": TRECEval,
    "MRPC": MRPCEval,
}

DEFAULT_CLASSIFIER = {"nhid": 0, "optim": "adam", "batch_size": 64, "tenacity": 5, "epoch_size": 4}

Batcher = Callable[[dotdict, list[list[str]]], Any]


def _to_numpy(emb: Any) -> np.ndarray:
    """Batcher output (torch tensor, numpy array or nested list) -> float32 array (n, H)."""
    if hasattr(emb, "detach"):
        emb = emb.detach().float().cpu().numpy()
    return np.asarray(emb, dtype=np.float32)


class SE:
    """SentEval-compatible evaluation engine with a de-duplicating embedding cache."""

    def __init__(self, params: dict, batcher: Batcher, prepare: Callable | None = None) -> None:
        p = dotdict(params)
        p.setdefault("usepytorch", True)
        p.setdefault("seed", 1111)
        p.setdefault("batch_size", 128)
        # (ours) sentences per batcher call; upstream hands over batch_size. A batcher that batches by
        # token length itself gets larger chunks and pads less (the order here is by word count).
        p.setdefault("encode_chunk", None)
        p.setdefault("kfold", 5)
        p.setdefault("progress", True)
        p["classifier"] = {**DEFAULT_CLASSIFIER, **dict(p.get("classifier") or {})}
        if "task_path" not in p:
            raise ValueError("params['task_path'] is required (the folder that holds downstream/ or the tasks)")
        self.params = p
        self.batcher = batcher
        self.prepare = prepare
        self.list_tasks = list(TASKS)
        self._cache: dict[tuple[str, ...], np.ndarray] = {}
        self.n_encoded = 0  # distinct sentences passed to the batcher so far (for tests and benchmarks)

    def _task_dir(self) -> Path:
        """Accept both ``task_path=.../data`` (upstream) and ``task_path=.../data/downstream``."""
        root = Path(self.params["task_path"])
        down = root / "downstream"
        return require_dir(down if down.is_dir() else root, "SentEval data")

    def encode(self, sentences: Sequence[Sequence[str]], desc: str = "encode") -> int:
        """Embed every sentence not yet cached, each once, in length-sorted batches. Returns how many."""
        todo = {tuple(s) for s in sentences} - self._cache.keys()
        order = sorted(todo, key=lambda t: (len(t), sum(len(w) for w in t), t))
        bs = int(self.params["encode_chunk"] or self.params["batch_size"])
        bar = tqdm(total=len(order), desc=desc, unit="sent", disable=not self.params["progress"], leave=False)
        for start in range(0, len(order), bs):
            batch = [list(t) for t in order[start : start + bs]]
            emb = _to_numpy(self.batcher(self.params, batch))  # (b, H)
            if emb.ndim != 2 or emb.shape[0] != len(batch):
                raise ValueError(f"batcher returned shape {emb.shape} for a batch of {len(batch)} sentences")
            for key, row in zip(order[start : start + bs], emb):
                self._cache[key] = row
            bar.update(len(batch))
        bar.close()
        self.n_encoded += len(order)
        return len(order)

    def lookup(self, sentences: Sequence[Sequence[str]]) -> np.ndarray:
        """Cached embeddings of ``sentences`` in the given order: (n, H)."""
        if not sentences:
            return np.zeros((0, 0), dtype=np.float32)
        return np.stack([self._cache[tuple(s)] for s in sentences])

    def eval(self, name: str | Sequence[str]) -> dict:
        """Evaluate one task (returns its result dict) or a list (returns ``{task: result}``)."""
        if not isinstance(name, str):
            return {n: self.eval(n) for n in name}
        if name not in TASKS:
            raise ValueError(f"unknown task {name!r}; available: {', '.join(TASKS)}")
        task = TASKS[name](self._task_dir(), self.params)
        samples = task.sentences()
        if self.prepare is not None:
            self._cache.clear()
            self.prepare(self.params, samples)
        self.params["current_task"] = name
        self.encode(samples, desc=name)
        logger.info("%s: %d sentences (%d distinct cached)", name, len(samples), len(self._cache))
        return task.run(self.params, self.lookup)


__all__ = ["SE", "TASKS", "DataError"]
