"""Scored sentence pairs from the user's own file: in-training evaluation (``train.py --eval_file``) and an
extra STS column in ``evaluation.py --sts_file``, without SentEval data.

The file is a ``.csv`` or ``.tsv`` with a header and three columns, ``sentence1, sentence2, score`` (read by
name when the header uses exactly those names, in any order; else by position). It is read by the training
data's reader (:class:`simcse.data.TrainingFileReader`): UTF-8 (a BOM is dropped), strict quoting, blank lines
skipped, and every problem is one ``file:line: problem`` error (:class:`simcse.data.DataFormatError`).

The metric is the STS-B dev metric applied to these pairs: cosine of the two sentence vectors (SentEval's
scorer, ``senteval.utils.cosine``), Spearman's rho against the scores. Sentences are normalised as SentEval's
STS-B reader does (split on whitespace, joined by single spaces), so the STS-B dev set written as such a file
gives exactly ``eval_stsb_spearman`` (README "Evaluating on your own data").
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from scipy.stats import spearmanr

from simcse.data import DataFormatError, TrainingFileReader

EVAL_COLUMNS = ("sentence1", "sentence2", "score")
EVAL_SUFFIXES = (".csv", ".tsv")


@dataclass
class ScoredPairs:
    """The pairs of one file: normalised sentences and float64 scores, (n,) each."""

    sentences1: list[str]
    sentences2: list[str]
    scores: np.ndarray
    source: str

    @property
    def name(self) -> str:
        """The column / metric name the file stands for: its file name without the extension."""
        return Path(self.source).stem


def normalise_sentence(text: str) -> str:
    """SentEval's STS readers split a sentence into whitespace tokens and the batcher joins them with spaces."""
    return " ".join(text.split())


def read_scored_pairs(path: str | Path, flag: str = "--eval_file") -> ScoredPairs:
    """Read and check a ``sentence1, sentence2, score`` file (see the module docstring); ``flag`` names the
    option in the error for a missing file."""
    path = Path(path)
    if not path.is_file():
        problem = "is a folder, not a file" if path.is_dir() else "file not found"
        raise DataFormatError(path, 0, f"{problem}; check {flag}")
    if path.suffix.lower() not in EVAL_SUFFIXES:
        raise DataFormatError(path, 0, f"unsupported extension {path.suffix!r} (expected .csv or .tsv)")
    reader = TrainingFileReader(path, column_names=EVAL_COLUMNS)
    first, second, scores = [], [], []
    for line, record in reader:
        if reader.num_columns != len(EVAL_COLUMNS):
            raise DataFormatError(path, 1, f"{reader.num_columns} column(s), expected 3: sentence1, sentence2, score")
        try:
            score = float(record[2])
        except ValueError:
            raise DataFormatError(path, line, f"score {record[2].strip()!r} is not a number") from None
        if not math.isfinite(score):
            raise DataFormatError(path, line, f"score {record[2].strip()!r} is not finite")
        first.append(normalise_sentence(record[0]))
        second.append(normalise_sentence(record[1]))
        scores.append(score)
    if len(scores) < 2:
        raise DataFormatError(path, 0, f"{len(scores)} scored pair(s); Spearman's rho needs at least 2")
    return ScoredPairs(first, second, np.asarray(scores, dtype=np.float64), str(path))


def cosine_spearman(embed: Callable[[Sequence[str]], torch.Tensor], pairs: ScoredPairs) -> float:
    """Spearman's rho (in [-1, 1]) of the pairs' cosine similarities against their scores.

    ``embed``: sentences -> (n, H) vectors (the trainer's cached embedder or evaluation.py's embed function)."""
    from senteval.utils import cosine

    def vectors(sentences: list[str]) -> np.ndarray:
        emb = embed(sentences)
        return emb.detach().float().cpu().numpy() if hasattr(emb, "detach") else np.asarray(emb, dtype=np.float32)

    system = cosine(vectors(pairs.sentences1), vectors(pairs.sentences2)).astype(np.float64)  # (n,)
    return float(spearmanr(system, pairs.scores)[0])


__all__ = ["EVAL_COLUMNS", "ScoredPairs", "cosine_spearman", "normalise_sentence", "read_scored_pairs"]
