"""STS tasks scored by cosine similarity (docs/FAITHFULNESS.md, "SentEval"), plus the STS-B regressor variant.

Reported aggregations: per subset Pearson/Spearman, and ``results['all']`` with ``all`` (correlation
over the concatenation of every subset, SimCSE's addition and its headline number), ``mean`` and
``wmean`` (weighted by subset size, upstream's numbers).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from pathlib import Path

import numpy as np
from scipy.stats import pearsonr, spearmanr

from senteval.tools.relatedness import run_relatedness
from senteval.utils import DataError, cosine, dotdict, parse_float, read_lines, split_fields

Pairs = tuple[list[list[str]], list[list[str]], np.ndarray]  # sentences A, sentences B, gold (n,)
Lookup = Callable[[Sequence[Sequence[str]]], np.ndarray]


def load_sts_subset(input_path: Path, gold_path: Path) -> Pairs:
    """Read ``STS.input.X.txt`` / ``STS.gs.X.txt``; pairs with an empty gold line are dropped (unscored)."""
    inputs = read_lines(input_path, "utf-8")
    golds = read_lines(gold_path, "utf-8")
    if len(golds) < len(inputs):
        raise DataError(gold_path, f"gold file ends early: {len(golds)} lines for {len(inputs)} input pairs in "
                        f"{input_path.name}", len(golds) + 1)
    sa: list[list[str]] = []
    sb: list[list[str]] = []
    gold: list[float] = []
    for i, (line, g) in enumerate(zip(inputs, golds), start=1):
        fields = line.split("\t")
        if len(fields) != 2:
            raise DataError(input_path, f"expected 2 tab-separated sentences, found {len(fields)} fields", i)
        if not g.strip():
            continue  # unscored pair in the official release
        gold.append(parse_float(g, gold_path, i, "gold score"))
        sa.append(fields[0].split())
        sb.append(fields[1].split())
    return sa, sb, np.asarray(gold, dtype=np.float64)


def load_scored_table(path: Path, cols: tuple[int, int, int], skip_header: bool) -> Pairs:
    """Tab-separated pairs with a score column (STS-B csv, SICK txt). cols = (sentA, sentB, score)."""
    lines = read_lines(path, "utf-8")
    sa: list[list[str]] = []
    sb: list[list[str]] = []
    gold: list[float] = []
    start = 1 if skip_header else 0
    for i, line in enumerate(lines[start:], start=start + 1):
        if not line.strip():
            continue
        fields = split_fields(line.strip(), path, i, max(cols) + 1)
        gold.append(parse_float(fields[cols[2]], path, i, "score"))
        sa.append(fields[cols[0]].split())
        sb.append(fields[cols[1]].split())
    return sa, sb, np.asarray(gold, dtype=np.float64)


def correlation_summary(per_subset: dict[str, dict], sys_all: np.ndarray, gold_all: np.ndarray) -> dict:
    """``{'pearson'|'spearman': {'all', 'mean', 'wmean'}}`` from per-subset results and the concatenation."""
    names = list(per_subset)
    weights = np.array([per_subset[n]["nsamples"] for n in names], dtype=np.float64)
    out: dict[str, dict[str, float]] = {}
    for metric, fn in (("pearson", pearsonr), ("spearman", spearmanr)):
        vals = np.array([per_subset[n][metric][0] for n in names], dtype=np.float64)
        out[metric] = {
            "all": float(fn(sys_all, gold_all)[0]),
            "mean": float(vals.mean()),
            "wmean": float((vals * weights).sum() / weights.sum()),
        }
    return out


class STSEval:
    """Cosine STS over named subsets; subclasses define how the subsets are loaded."""

    name = "STS"

    def __init__(self, task_dir: Path, params: dotdict) -> None:
        self.params = params
        self.data: dict[str, Pairs] = self.load(task_dir, params)

    def load(self, task_dir: Path, params: dotdict) -> dict[str, Pairs]:
        raise NotImplementedError

    def sentences(self) -> list[list[str]]:
        return [s for sa, sb, _ in self.data.values() for s in (*sa, *sb)]

    def similarity(self, params: dotdict, ea: np.ndarray, eb: np.ndarray) -> np.ndarray:
        """Per-pair system scores; ``params.similarity(u, v)`` overrides cosine as in upstream."""
        if "similarity" in params and params["similarity"] is not None:
            return np.array([params["similarity"](u, v) for u, v in zip(ea, eb)], dtype=np.float64)
        return cosine(ea, eb).astype(np.float64)

    def run(self, params: dotdict, lookup: Lookup) -> dict:
        results: dict = {}
        sys_parts, gold_parts = [], []
        for subset, (sa, sb, gold) in self.data.items():
            sys = self.similarity(params, lookup(sa), lookup(sb))  # (n,)
            results[subset] = {"pearson": pearsonr(sys, gold), "spearman": spearmanr(sys, gold), "nsamples": len(gold)}
            sys_parts.append(sys)
            gold_parts.append(gold)
        results["all"] = correlation_summary(results, np.concatenate(sys_parts), np.concatenate(gold_parts))
        return results


class _YearEval(STSEval):
    """One SemEval year: ``STS/<folder>/STS.input.<subset>.txt`` + ``STS.gs.<subset>.txt``."""

    folder = ""
    subsets: tuple[str, ...] = ()

    def load(self, task_dir: Path, params: dotdict) -> dict[str, Pairs]:
        base = task_dir / "STS" / self.folder
        return {s: load_sts_subset(base / f"STS.input.{s}.txt", base / f"STS.gs.{s}.txt") for s in self.subsets}


class STS12Eval(_YearEval):
    folder = "STS12-en-test"
    subsets = ("MSRpar", "MSRvid", "SMTeuroparl", "surprise.OnWN", "surprise.SMTnews")


class STS13Eval(_YearEval):
    folder = "STS13-en-test"
    subsets = ("FNWN", "headlines", "OnWN")  # SMT omitted (licence), as in SentEval


class STS14Eval(_YearEval):
    folder = "STS14-en-test"
    subsets = ("deft-forum", "deft-news", "headlines", "images", "OnWN", "tweet-news")


class STS15Eval(_YearEval):
    folder = "STS15-en-test"
    subsets = ("answers-forums", "answers-students", "belief", "headlines", "images")


class STS16Eval(_YearEval):
    folder = "STS16-en-test"
    subsets = ("answer-answer", "headlines", "plagiarism", "postediting", "question-question")


SPLITS = ("train", "dev", "test")


def wanted_splits(params: dotdict) -> tuple[str, ...]:
    """Splits to load for STS-B/SICK: ``params['sts_splits']`` (e.g. ('dev',)) or all three."""
    splits = tuple(params.get("sts_splits") or SPLITS)
    bad = [s for s in splits if s not in SPLITS]
    if bad:
        raise ValueError(f"unknown sts_splits {bad}; choose from {SPLITS}")
    return splits


STSB_FILES = {"train": "sts-train.csv", "dev": "sts-dev.csv", "test": "sts-test.csv"}


def load_stsb_split(folder: Path, split: str) -> Pairs:
    """One STS-B split from its folder: ``sts-*.csv`` are tab-separated, sentences in columns 5-6, score in 4.
    The one STS-B reader (SimCSE's alignment/uniformity analysis reads through it too)."""
    return load_scored_table(Path(folder) / STSB_FILES[split], (5, 6, 4), False)


class STSBenchmarkEval(STSEval):
    """STS-B scored by raw cosine (SimCSE's change); see :func:`load_stsb_split` for the format."""

    files = STSB_FILES

    def load(self, task_dir: Path, params: dotdict) -> dict[str, Pairs]:
        base = task_dir / "STS" / "STSBenchmark"
        return {s: load_stsb_split(base, s) for s in wanted_splits(params)}


class SICKRelatednessEval(STSEval):
    """SICK-R scored by raw cosine; dev = SICK_trial.txt; header skipped; score in column 3."""

    files = {"train": "SICK_train.txt", "dev": "SICK_trial.txt", "test": "SICK_test_annotated.txt"}

    def load(self, task_dir: Path, params: dotdict) -> dict[str, Pairs]:
        base = task_dir / "SICK"
        return {s: load_scored_table(base / self.files[s], (1, 2, 3), True) for s in wanted_splits(params)}


class STSBenchmarkFinetuneEval(STSBenchmarkEval):
    """Upstream's supervised STS-B: a small regressor on [|u-v|, u*v], early stopping on dev Spearman."""

    score_range = (0, 5)

    def load(self, task_dir: Path, params: dotdict) -> dict[str, Pairs]:
        return super().load(task_dir, dotdict({**params, "sts_splits": SPLITS}))

    def run(self, params: dotdict, lookup: Lookup) -> dict:
        return run_relatedness(self.data, lookup, params, self.score_range)
