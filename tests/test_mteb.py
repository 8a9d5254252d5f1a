"""mteb evaluates an exported folder through ``SentenceTransformer(path)`` on an offline STS task built
from the local STS-B test file (nothing is downloaded), and its ``cosine_spearman`` equals scipy's
Spearman correlation of the same embeddings' cosines."""

from __future__ import annotations

import csv
from typing import Any

import numpy as np
import pytest

mteb = pytest.importorskip("mteb")
from datasets import Dataset, DatasetDict  # noqa: E402
from mteb.abstasks.sts import AbsTaskSTS  # noqa: E402
from mteb.abstasks.task_metadata import TaskMetadata  # noqa: E402
from scipy.stats import spearmanr  # noqa: E402
from sentence_transformers import SentenceTransformer  # noqa: E402

from simcse.export import export_folder  # noqa: E402
from tests.numerics import spearman_rounding_tolerance  # noqa: E402

NUM_PAIRS = 300  # a slice of STS-B test keeps the test fast on 2 CPU cores


def _read_pairs(senteval_data) -> tuple[list[str], list[str], list[float]]:
    path = senteval_data / "STS" / "STSBenchmark" / "sts-test.csv"
    with open(path, encoding="utf-8", newline="") as f:
        rows = [r for r in csv.reader(f, delimiter="\t", quoting=csv.QUOTE_NONE) if len(r) >= 7][:NUM_PAIRS]
    return [r[5] for r in rows], [r[6] for r in rows], [float(r[4]) for r in rows]


def _make_task(s1: list[str], s2: list[str], scores: list[float]) -> AbsTaskSTS:
    class LocalSTSBenchmark(AbsTaskSTS):
        """STS-B test pairs held in memory: mteb's STS machinery without its hub download."""

        metadata = TaskMetadata(
            name="LocalSTSBenchmarkSlice",
            description="A slice of the STS Benchmark test split read from the local SentEval data.",
            reference="https://ixa2.si.ehu.eus/stswiki/index.php/STSbenchmark",
            dataset={"path": "local/stsb", "revision": "local"},
            type="STS",
            category="t2t",
            modalities=["text"],
            eval_splits=["test"],
            eval_langs=["eng-Latn"],
            main_score="cosine_spearman",
            date=("2017-01-01", "2017-12-31"),
            domains=["News", "Written"],
            task_subtypes=[],
            license="not specified",
            annotations_creators="human-annotated",
            dialect=[],
            sample_creation="found",
            bibtex_citation="",
        )
        min_score = 0
        max_score = 5

        def load_data(self, **kwargs: Any) -> None:
            self.dataset = DatasetDict(
                {"test": Dataset.from_dict({"sentence1": s1, "sentence2": s2, "score": scores})}
            )
            self.data_loaded = True

    return LocalSTSBenchmark()


@pytest.mark.real
def test_mteb_on_exported_folder(minilm_path, senteval_data, tmp_path, monkeypatch):
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    folder = tmp_path / "exported"
    export_folder(minilm_path, folder, pooler="avg")
    s1, s2, gold = _read_pairs(senteval_data)
    model = SentenceTransformer(str(folder), device="cpu")

    result = mteb.evaluate(model, _make_task(s1, s2, gold), cache=None, show_progress_bar=False)
    [task_result] = result.task_results
    [split_scores] = task_result.scores["test"]
    mteb_spearman = split_scores["cosine_spearman"]

    a = model.encode(s1, normalize_embeddings=True)
    b = model.encode(s2, normalize_embeddings=True)
    cosines = np.sum(a * b, axis=1)
    independent = spearmanr(gold, cosines).statistic
    # float32 cosines from other batches: rounding may swap near-equal scores (tests/numerics.py)
    assert abs(mteb_spearman - independent) <= spearman_rounding_tolerance(cosines, gold), (mteb_spearman, independent)
    assert split_scores["main_score"] == pytest.approx(mteb_spearman)
    assert mteb_spearman > 0.7  # a real sentence encoder, so the plumbing carries real signal
