"""Evaluation library behind ``evaluation.py`` and in-training evaluation (docs/FAITHFULNESS.md, "evaluation.py").

Wraps the vendored SentEval engine: one ``SE`` per run whose embedding cache encodes each distinct
sentence once, only the splits the chosen mode reports, in token-length-sorted batches.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
from prettytable import PrettyTable

from simcse.encode import EmbedFn, length_batches, make_embed_fn, model_max_length
from simcse.environment import senteval_data_dir, versions
from simcse.loading import default_device, load_encoder, pooler_untrained, untrained_pooler_problem

logger = logging.getLogger(__name__)

# Kept importable from here (evaluation.py, benchmarks and tests use these names).
pooler_newly_initialised = pooler_untrained
_length_batches = length_batches
__all__ = [
    "EmbedFn", "default_device", "load_encoder", "make_embed_fn", "model_max_length", "pooler_newly_initialised",
    "versions",
]

STS_TASKS = ("STS12", "STS13", "STS14", "STS15", "STS16", "STSBenchmark", "SICKRelatedness")
TRANSFER_TASKS = ("MR", "CR", "SUBJ", "MPQA", "SST2", "TREC", "MRPC")
TASK_SETS = {"sts": STS_TASKS, "transfer": TRANSFER_TASKS, "full": STS_TASKS + TRANSFER_TASKS}
DEFAULT_TASKS = STS_TASKS[:5] + ("MR", "CR", "MPQA", "SUBJ", "SST2", "TREC", "MRPC", "SICKRelatedness",
                                 "STSBenchmark")
MODES = ("test", "dev", "fasttest")
ENCODE_CHUNK = 4096  # sentences per call of our embed function from the SentEval engine
DEV_STS = ("STSBenchmark", "SICKRelatedness")

FULL_CLASSIFIER = {"nhid": 0, "optim": "adam", "batch_size": 64, "tenacity": 5, "epoch_size": 4}
FAST_CLASSIFIER = {"nhid": 0, "optim": "rmsprop", "batch_size": 128, "tenacity": 3, "epoch_size": 2}


def resolve_data_dir(data_dir: str | Path | None = None) -> Path:
    """explicit argument > $SENTEVAL_DATA_DIR > <repo>/SentEval/data/downstream; must exist."""
    from senteval.utils import DataError

    path = senteval_data_dir(data_dir)
    if not path.is_dir():
        raise DataError(path, "SentEval data directory not found; run SentEval/data/downstream/download_dataset.sh "
                        "or pass --data_dir / set SENTEVAL_DATA_DIR")
    return path


def cls_pooler_warning(model, pooler: str) -> str | None:
    """``cls`` on a checkpoint with a random pooler silently gives ~57 avg; explain it (see docs/FAITHFULNESS.md,
    "Poolers")."""
    problem = untrained_pooler_problem(model, pooler)
    return f"warning: {problem}" if problem else None


def _batcher(embed_fn: EmbedFn):
    """SentEval batcher: token lists -> joined strings (bytes decoded as UTF-8) -> embeddings."""

    def batcher(params, batch: list[list[Any]]) -> np.ndarray:
        if batch and batch[0] and isinstance(batch[0][0], bytes):
            batch = [[w.decode("utf-8") for w in s] for s in batch]
        return embed_fn([" ".join(s) for s in batch]).numpy()

    return batcher


def senteval_params(mode: str, data_dir: Path, batch_size: int = 128, device: str | None = None,
                    progress: bool = True, classifier_optim: str | None = None) -> dict:
    """The mode's parameters (docs/FAITHFULNESS.md, "evaluation.py"); STS-B/SICK only load the split the mode reports.

    ``classifier_optim`` (e.g. "lbfgs") replaces only the mode's transfer optimizer, so k-fold, batch
    size, tenacity and epoch size still follow the mode; None keeps the paper protocol.
    """
    if mode not in MODES:
        raise ValueError(f"unknown mode {mode!r}; choose from {MODES}")
    full = mode == "test"
    classifier = dict(FULL_CLASSIFIER if full else FAST_CLASSIFIER)
    if classifier_optim is not None:
        classifier["optim"] = classifier_optim
    return {
        "task_path": str(data_dir),
        "usepytorch": True,
        "kfold": 10 if full else 5,
        "classifier": classifier,
        "batch_size": batch_size,
        "seed": 1111,
        "device": device,
        "progress": progress,
        "sts_splits": ("dev",) if mode == "dev" else ("test",),
    }


def run_senteval(embed_fn: EmbedFn, tasks: Sequence[str], mode: str = "test", data_dir: str | Path | None = None,
                 batch_size: int = 128, device: str | None = None, progress: bool = True,
                 classifier_optim: str | None = None) -> dict:
    """Evaluate ``tasks`` with one shared embedding cache; returns ``{task: SentEval result}``.

    ``classifier_optim`` overrides the transfer classifier's optimizer (see ``senteval_params``).
    """
    import senteval

    params = senteval_params(mode, resolve_data_dir(data_dir), batch_size, device, progress, classifier_optim)
    # embed_fn sorts by token length and batches by batch_size itself: hand it large chunks of the engine's
    # word-count order, so its token-length batches pad less (the vectors are the same).
    params["encode_chunk"] = ENCODE_CHUNK
    se = senteval.SE(params, _batcher(embed_fn))
    return {task: se.eval(task) for task in tasks}


def _fmt(x: float) -> str:
    return f"{x:.2f}"  # same rounding as "%.2f"


def _table(names: Sequence[str], values: Sequence[str], with_avg: bool) -> str:
    if with_avg:
        names = [*names, "Avg."]
        values = [*values, _fmt(sum(float(v) for v in values) / len(values))]
    tb = PrettyTable()
    tb.field_names = list(names)
    tb.add_row(list(values))
    return tb.get_string()


def table_values(results: dict, mode: str) -> dict[str, dict[str, str]]:
    """The printed numbers as strings: {'sts': {task: '%.2f'}, 'transfer': {...}}.

    (docs/FAITHFULNESS.md, "evaluation.py")
    """
    sts, transfer = {}, {}
    if mode == "dev":
        for t in DEV_STS:
            sts[t] = _fmt(results[t]["dev"]["spearman"][0] * 100) if t in results else "0.00"
        for t in TRANSFER_TASKS:
            transfer[t] = _fmt(results[t]["devacc"]) if t in results else "0.00"
    else:
        for t in STS_TASKS:
            if t not in results:
                sts[t] = "0.00"
            elif t in DEV_STS:
                sts[t] = _fmt(results[t]["test"]["spearman"][0] * 100)
            else:
                sts[t] = _fmt(results[t]["all"]["spearman"]["all"] * 100)
        for t in TRANSFER_TASKS:
            transfer[t] = _fmt(results[t]["acc"]) if t in results else "0.00"
    return {"sts": sts, "transfer": transfer}


def format_tables(results: dict, mode: str, tasks: Sequence[str] | None = None) -> str:
    """What evaluation.py prints: header line, STS table, transfer table (docs/FAITHFULNESS.md, "evaluation.py")."""
    vals = table_values(results, mode)
    lines = [f"------ {mode} ------"]
    if mode == "dev":
        lines.append(_table(list(vals["sts"]), list(vals["sts"].values()), with_avg=False))
        lines.append(_table(list(vals["transfer"]), list(vals["transfer"].values()), with_avg=True))
    else:
        lines.append(_table(list(vals["sts"]), list(vals["sts"].values()), with_avg=True))
        lines.append(_table(list(vals["transfer"]), list(vals["transfer"].values()), with_avg=True))
    return "\n".join(lines)


def to_jsonable(obj: Any) -> Any:
    """SentEval results (scipy result tuples, numpy scalars/arrays) -> plain JSON types."""
    if isinstance(obj, dict):
        return {str(k): to_jsonable(v) for k, v in obj.items()}
    if hasattr(obj, "statistic") and hasattr(obj, "pvalue"):
        return {"statistic": float(obj.statistic), "pvalue": float(obj.pvalue)}
    if isinstance(obj, np.ndarray):
        return obj.tolist()
    if isinstance(obj, (np.floating, np.integer)):
        return obj.item()
    if isinstance(obj, (list, tuple)):
        return [to_jsonable(v) for v in obj]
    return obj


def dev_metrics(embed_fn: EmbedFn, data_dir: str | Path | None = None, eval_transfer: bool = False,
                batch_size: int = 128, device: str | None = None, progress: bool = False) -> dict[str, float]:
    """In-training metrics: STS-B dev and SICK trial cosine Spearman (raw, in [-1, 1]) and their mean;
    with ``eval_transfer`` also the transfer dev accuracies (percent, fast classifier) and their mean.
    Only the dev splits of STS-B/SICK are encoded.
    """
    tasks = DEV_STS + (TRANSFER_TASKS if eval_transfer else ())
    res = run_senteval(embed_fn, tasks, "dev", data_dir, batch_size, device, progress)
    out = {
        "stsb_spearman": float(res["STSBenchmark"]["dev"]["spearman"][0]),
        "sickr_spearman": float(res["SICKRelatedness"]["dev"]["spearman"][0]),
    }
    out["avg_sts"] = (out["stsb_spearman"] + out["sickr_spearman"]) / 2
    if eval_transfer:
        for t in TRANSFER_TASKS:
            out[t] = float(res[t]["devacc"])
        out["avg_transfer"] = float(np.mean([out[t] for t in TRANSFER_TASKS]))
    return out
