"""STS evaluation on synthetic data: aggregations vs hand computations, unscored pairs, data errors."""

from __future__ import annotations

import zlib
from pathlib import Path

import numpy as np
import pytest
import senteval
from scipy.stats import pearsonr, spearmanr
from senteval.sts import STS12Eval, STS13Eval, STS14Eval, STS15Eval, STS16Eval

DIM = 16
WORDS = "a man woman dog cat runs eats plays the guitar piano on grass fast slow red blue big small".split()
YEARS = {
    "STS12-en-test": STS12Eval.subsets,
    "STS13-en-test": STS13Eval.subsets,
    "STS14-en-test": STS14Eval.subsets,
    "STS15-en-test": STS15Eval.subsets,
    "STS16-en-test": STS16Eval.subsets,
}


def word_vec(word: str) -> np.ndarray:
    """A fixed pseudo-random vector per word (crc32 seed): the synthetic 'encoder'."""
    return np.random.RandomState(zlib.crc32(word.encode())).randn(DIM)


def embed_tokens(toks: list[str]) -> np.ndarray:
    return np.sum([word_vec(w) for w in toks], axis=0) if toks else np.zeros(DIM)


def batcher(params, batch: list[list[str]]) -> np.ndarray:
    return np.stack([embed_tokens(s) for s in batch])


def cos(a: np.ndarray, b: np.ndarray) -> float:
    return float(a @ b / np.linalg.norm(a) / np.linalg.norm(b))


def random_sentence(rng: np.random.RandomState) -> str:
    return " ".join(rng.choice(WORDS, size=rng.randint(2, 8)))


def write_pairs(rng: np.random.RandomState, n: int, unscored: int = 0) -> tuple[list[str], list[str]]:
    """n input lines and n gold lines; ``unscored`` of the gold lines are empty."""
    inputs = [f"{random_sentence(rng)}\t{random_sentence(rng)}" for _ in range(n)]
    golds = [f"{rng.uniform(0, 5):.3f}" for _ in range(n)]
    for i in rng.choice(n, size=unscored, replace=False):
        golds[i] = ""
    return inputs, golds


def make_sts_data(root: Path, seed: int = 0) -> Path:
    """Synthetic downstream/ with every STS year, STS-B and SICK (few pairs each)."""
    rng = np.random.RandomState(seed)
    for folder, subsets in YEARS.items():
        d = root / "STS" / folder
        d.mkdir(parents=True)
        for j, s in enumerate(subsets):
            inputs, golds = write_pairs(rng, 8 + 3 * j, unscored=2 if folder == "STS15-en-test" else 0)
            (d / f"STS.input.{s}.txt").write_text("\n".join(inputs) + "\n", encoding="utf-8")
            (d / f"STS.gs.{s}.txt").write_text("\n".join(golds) + "\n", encoding="utf-8")
    stsb = root / "STS" / "STSBenchmark"
    stsb.mkdir(parents=True)
    for split, n in (("train", 20), ("dev", 15), ("test", 12)):
        inputs, golds = write_pairs(rng, n)
        rows = [f"main-captions\tMSRvid\t2012test\t{i:04d}\t{g}\t{p}" for i, (p, g) in enumerate(zip(inputs, golds))]
        (stsb / f"sts-{split}.csv").write_text("\n".join(rows) + "\n", encoding="utf-8")
    sick = root / "SICK"
    sick.mkdir()
    for name, n in (("SICK_train.txt", 20), ("SICK_trial.txt", 10), ("SICK_test_annotated.txt", 14)):
        inputs, _ = write_pairs(rng, n)
        rows = ["pair_ID\tsentence_A\tsentence_B\trelatedness_score\tentailment_judgment"]
        rows += [f"{i}\t{p}\t{rng.uniform(1, 5):.1f}\tNEUTRAL" for i, p in enumerate(inputs)]
        (sick / name).write_text("\n".join(rows) + "\n", encoding="utf-8")
    return root


def hand_scores(path_in: Path, path_gs: Path) -> tuple[np.ndarray, np.ndarray]:
    """Independent reading + scoring: cosine of summed word vectors on every scored line."""
    sys, gold = [], []
    for line, g in zip(path_in.read_text().splitlines(), path_gs.read_text().splitlines()):
        if g == "":
            continue
        a, b = line.split("\t")
        sys.append(cos(embed_tokens(a.split()), embed_tokens(b.split())))
        gold.append(float(g))
    return np.array(sys), np.array(gold)


@pytest.fixture()
def sts_dir(tmp_path: Path) -> Path:
    return make_sts_data(tmp_path / "downstream")


@pytest.mark.parametrize("task,folder", [("STS12", "STS12-en-test"), ("STS15", "STS15-en-test"),
                                         ("STS16", "STS16-en-test")])
def test_year_aggregations_match_hand_computation(sts_dir: Path, task: str, folder: str) -> None:
    res = senteval.SE({"task_path": str(sts_dir), "progress": False}, batcher).eval(task)
    subsets = YEARS[folder]
    per = {s: hand_scores(sts_dir / "STS" / folder / f"STS.input.{s}.txt",
                          sts_dir / "STS" / folder / f"STS.gs.{s}.txt") for s in subsets}
    n = np.array([len(per[s][1]) for s in subsets], dtype=float)
    for metric, fn in (("pearson", pearsonr), ("spearman", spearmanr)):
        vals = np.array([fn(*per[s])[0] for s in subsets])
        for s, v in zip(subsets, vals):
            assert res[s][metric][0] == pytest.approx(v, abs=1e-6)
        assert res["all"][metric]["mean"] == pytest.approx(vals.mean(), abs=1e-6)
        assert res["all"][metric]["wmean"] == pytest.approx((vals * n).sum() / n.sum(), abs=1e-6)
        all_sys = np.concatenate([per[s][0] for s in subsets])
        all_gold = np.concatenate([per[s][1] for s in subsets])
        assert res["all"][metric]["all"] == pytest.approx(fn(all_sys, all_gold)[0], abs=1e-6)
    # 'all' differs from 'mean' in general: the aggregations are not accidentally the same number
    assert res["all"]["spearman"]["all"] != pytest.approx(res["all"]["spearman"]["mean"], abs=1e-9)


def test_unscored_pairs_are_dropped(sts_dir: Path) -> None:
    res = senteval.SE({"task_path": str(sts_dir), "progress": False}, batcher).eval("STS15")
    for j, s in enumerate(STS15Eval.subsets):
        assert res[s]["nsamples"] == 8 + 3 * j - 2  # two empty gold lines per subset


def test_stsb_and_sick_splits_and_dev_only_encoding(sts_dir: Path) -> None:
    calls: list[list[str]] = []

    def counting_batcher(params, batch):
        calls.extend(" ".join(s) for s in batch)
        return batcher(params, batch)

    se = senteval.SE({"task_path": str(sts_dir), "progress": False, "sts_splits": ("dev",)}, counting_batcher)
    res = se.eval(["STSBenchmark", "SICKRelatedness"])
    assert set(res["STSBenchmark"]) == {"dev", "all"} and res["STSBenchmark"]["dev"]["nsamples"] == 15
    assert res["SICKRelatedness"]["dev"]["nsamples"] == 10  # SICK dev = trial file, header skipped
    assert len(calls) == len(set(calls))  # every distinct sentence encoded once
    dev_lines = (sts_dir / "STS" / "STSBenchmark" / "sts-dev.csv").read_text().splitlines()
    trial = (sts_dir / "SICK" / "SICK_trial.txt").read_text().splitlines()[1:]
    expected = {f for r in dev_lines for f in r.split("\t")[5:7]} | {f for r in trial for f in r.split("\t")[1:3]}
    assert set(calls) == expected  # train/test never encoded
    sys = [cos(embed_tokens(r.split("\t")[5].split()), embed_tokens(r.split("\t")[6].split())) for r in dev_lines]
    gold = [float(r.split("\t")[4]) for r in dev_lines]
    assert res["STSBenchmark"]["dev"]["spearman"][0] == pytest.approx(spearmanr(sys, gold)[0], abs=1e-6)


def test_cache_matches_naive_per_pair_batching(sts_dir: Path) -> None:
    """Cache + length sort gives the same scores as encoding each chunk's A and B sides separately."""
    res = senteval.SE({"task_path": str(sts_dir), "progress": False}, batcher).eval("STS14")
    for s in STS14Eval.subsets:
        lines = (sts_dir / "STS" / "STS14-en-test" / f"STS.input.{s}.txt").read_text().splitlines()
        gold = [float(g) for g in (sts_dir / "STS" / "STS14-en-test" / f"STS.gs.{s}.txt").read_text().split()]
        ea = batcher(None, [ln.split("\t")[0].split() for ln in lines])
        eb = batcher(None, [ln.split("\t")[1].split() for ln in lines])
        sys = [cos(a, b) for a, b in zip(ea, eb)]
        assert res[s]["spearman"][0] == pytest.approx(spearmanr(sys, gold)[0], abs=1e-6)


@pytest.mark.parametrize("params, largest", [({"batch_size": 7}, 7), ({"batch_size": 7, "encode_chunk": 50}, 50)])
def test_batcher_chunks_follow_batch_size_or_encode_chunk(sts_dir: Path, params: dict, largest: int) -> None:
    """Upstream hands the batcher batch_size sentences; ``encode_chunk`` (ours) hands it larger chunks, for
    batchers that batch by token length themselves. Every distinct sentence is encoded once, scores equal."""
    sizes: list[int] = []

    def counting(p, batch: list[list[str]]) -> np.ndarray:
        sizes.append(len(batch))
        return batcher(p, batch)

    se = senteval.SE({"task_path": str(sts_dir), "progress": False, **params}, counting)
    res = se.eval("STS14")
    assert max(sizes) == largest and sum(sizes) == se.n_encoded
    plain = senteval.SE({"task_path": str(sts_dir), "progress": False}, batcher).eval("STS14")
    assert res["all"]["spearman"]["all"] == pytest.approx(plain["all"]["spearman"]["all"], abs=1e-9)


def _error(sts_dir: Path, task: str = "STS12") -> str:
    with pytest.raises(senteval.DataError) as info:
        senteval.SE({"task_path": str(sts_dir), "progress": False}, batcher).eval(task)
    return str(info.value)


def test_error_missing_data_dir(tmp_path: Path) -> None:
    msg = _error(tmp_path / "nope")
    assert "nope" in msg and "not found" in msg


def test_error_missing_file(sts_dir: Path) -> None:
    (sts_dir / "STS" / "STS13-en-test" / "STS.gs.FNWN.txt").unlink()
    msg = _error(sts_dir, "STS13")
    assert msg.endswith("file not found (run SentEval/data/downstream/download_dataset.sh)")
    assert "STS.gs.FNWN.txt" in msg


def test_error_malformed_input_line(sts_dir: Path) -> None:
    path = sts_dir / "STS" / "STS12-en-test" / "STS.input.MSRvid.txt"
    lines = path.read_text().splitlines()
    lines[3] = lines[3].replace("\t", " ")
    path.write_text("\n".join(lines) + "\n")
    assert _error(sts_dir) == f"{path}:4: expected 2 tab-separated sentences, found 1 fields"


def test_error_short_gold_file(sts_dir: Path) -> None:
    path = sts_dir / "STS" / "STS12-en-test" / "STS.gs.MSRpar.txt"
    path.write_text("\n".join(path.read_text().splitlines()[:5]) + "\n")
    msg = _error(sts_dir)
    assert msg.startswith(f"{path}:6: gold file ends early: 5 lines for 8 input pairs")


def test_error_non_numeric_gold(sts_dir: Path) -> None:
    path = sts_dir / "STS" / "STS12-en-test" / "STS.gs.MSRpar.txt"
    lines = path.read_text().splitlines()
    lines[2] = "four"
    path.write_text("\n".join(lines) + "\n")
    assert _error(sts_dir) == f"{path}:3: gold score is not a number: 'four'"


def test_error_stsb_short_row(sts_dir: Path) -> None:
    path = sts_dir / "STS" / "STSBenchmark" / "sts-test.csv"
    lines = path.read_text().splitlines()
    lines[1] = "\t".join(lines[1].split("\t")[:5])
    path.write_text("\n".join(lines) + "\n")
    assert _error(sts_dir, "STSBenchmark") == f"{path}:2: expected at least 7 tab-separated fields, found 5"
