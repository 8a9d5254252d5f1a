"""evaluation.main on the tiny random BERT with synthetic data: printed numbers vs an independent
computation, pooler defaults/warnings, and one-line errors for bad input."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch
from scipy.stats import spearmanr
from transformers import AutoModel, AutoTokenizer

import evaluation
from tests.numerics import assert_close_scaled, spearman_rounding_tolerance
from tests.test_senteval_sts import YEARS, make_sts_data


@pytest.fixture(scope="module")
def data_dir(tmp_path_factory) -> Path:
    return make_sts_data(tmp_path_factory.mktemp("cli") / "downstream", seed=3)


def independent_sts(model_dir: Path, data: Path) -> dict[str, float]:
    """avg-pooled cosine Spearman x100 per STS task, with plain transformers, one sentence at a time."""
    tok = AutoTokenizer.from_pretrained(model_dir)
    model = AutoModel.from_pretrained(model_dir).eval()

    def emb(s: str) -> np.ndarray:
        with torch.no_grad():
            return model(**tok(s, return_tensors="pt")).last_hidden_state[0].mean(0).numpy()

    def score(pairs: list[tuple[str, str]], gold: list[float]) -> float:
        cache = {s: emb(s) for s in {x for p in pairs for x in p}}  # each distinct sentence once
        cosv = [float(cache[a] @ cache[b] / np.linalg.norm(cache[a]) / np.linalg.norm(cache[b])) for a, b in pairs]
        return 100 * float(spearmanr(cosv, gold)[0])

    out = {}
    for folder, subsets in YEARS.items():
        pairs, gold = [], []
        for s in subsets:
            ins = (data / "STS" / folder / f"STS.input.{s}.txt").read_text().splitlines()
            gs = (data / "STS" / folder / f"STS.gs.{s}.txt").read_text().splitlines()
            for line, g in zip(ins, gs):
                if g:
                    pairs.append(tuple(line.split("\t")))
                    gold.append(float(g))
        out[folder[:5]] = score(pairs, gold)
    rows = [r.split("\t") for r in (data / "STS" / "STSBenchmark" / "sts-test.csv").read_text().splitlines()]
    out["STSBenchmark"] = score([(r[5], r[6]) for r in rows], [float(r[4]) for r in rows])
    rows = [r.split("\t") for r in (data / "SICK" / "SICK_test_annotated.txt").read_text().splitlines()[1:]]
    out["SICKRelatedness"] = score([(r[1], r[2]) for r in rows], [float(r[3]) for r in rows])
    return out


def parse_first_table(text: str) -> dict[str, float]:
    rows = [ln for ln in text.splitlines() if ln.startswith("|")]
    names = [c.strip() for c in rows[0].strip("|").split("|")]
    vals = [float(c) for c in rows[1].strip("|").split("|")]
    return dict(zip(names, vals))


def test_cli_sts_table_matches_independent(tiny_bert_dir: Path, data_dir: Path, tmp_path: Path, capsys) -> None:
    out_json = tmp_path / "r.json"
    assert evaluation.main(["--model_name_or_path", str(tiny_bert_dir), "--pooler", "avg", "--data_dir",
                            str(data_dir), "--device", "cpu", "--no_progress", "--output_json", str(out_json)]) == 0
    text = capsys.readouterr().out
    assert text.splitlines()[0] == "------ test ------"
    table = parse_first_table(text)
    ref = independent_sts(tiny_bert_dir, data_dir)
    for task, value in ref.items():
        assert table[task] == pytest.approx(value, abs=0.006)
    assert table["Avg."] == pytest.approx(round(sum(round(v, 2) for v in ref.values()) / 7, 2), abs=0.011)
    assert "| 0.00 | 0.00 | 0.00 | 0.00 | 0.00 | 0.00 | 0.00 | 0.00 |" in text  # transfer row not run
    report = json.loads(out_json.read_text())
    assert report["pooler"] == "avg" and report["mode"] == "test"
    assert float(report["table"]["sts"]["STS12"]) == table["STS12"]
    assert report["results"]["STS12"]["MSRpar"]["nsamples"] == 8


def test_cli_dev_mode_tables(tiny_bert_dir: Path, data_dir: Path, capsys) -> None:
    evaluation.main(["--model_name_or_path", str(tiny_bert_dir), "--pooler", "cls_before_pooler", "--mode", "dev",
                     "--task_set", "na", "--tasks", "STSBenchmark", "SICKRelatedness", "--data_dir", str(data_dir),
                     "--device", "cpu", "--no_progress"])
    text = capsys.readouterr().out
    assert text.splitlines()[0] == "------ dev ------"
    header = [c.strip() for c in text.splitlines()[2].strip("|").split("|")]
    assert header == ["STSBenchmark", "SICKRelatedness"]  # no Avg. in the dev STS table
    assert "|  MR  |  CR  | SUBJ | MPQA | SST2 | TREC | MRPC | Avg. |" in text


def test_cls_warning_for_random_pooler(tiny_bert_dir: Path, data_dir: Path, tmp_path: Path, capsys) -> None:
    from transformers import BertModel

    no_pooler = tmp_path / "nopooler"
    BertModel(BertModel.from_pretrained(tiny_bert_dir).config, add_pooling_layer=False).save_pretrained(no_pooler)
    AutoTokenizer.from_pretrained(tiny_bert_dir).save_pretrained(no_pooler)
    evaluation.main(["--model_name_or_path", str(no_pooler), "--task_set", "na", "--tasks", "STSBenchmark",
                     "--data_dir", str(data_dir), "--device", "cpu", "--no_progress"])
    assert "warning: pooler 'cls'" in capsys.readouterr().err
    evaluation.main(["--model_name_or_path", str(tiny_bert_dir), "--task_set", "na", "--tasks", "STSBenchmark",
                     "--data_dir", str(data_dir), "--device", "cpu", "--no_progress"])
    assert "warning" not in capsys.readouterr().err  # trained (saved) pooler weights: no warning


@pytest.mark.parametrize("argv_extra", [["--pooler", "max"], ["--mode", "final"]])
def test_bad_choices_exit_2(tiny_bert_dir: Path, argv_extra: list[str], capsys) -> None:
    with pytest.raises(SystemExit) as info:
        evaluation.main(["--model_name_or_path", str(tiny_bert_dir), *argv_extra])
    assert info.value.code == 2
    assert "invalid choice" in capsys.readouterr().err


def test_bad_classifier_optim_fails_before_loading(tmp_path: Path, capsys) -> None:
    """A typo in --classifier_optim is one error line and exit 2, before any model is loaded (none exists here)."""
    with pytest.raises(SystemExit) as info:
        evaluation.main(["--model_name_or_path", str(tmp_path / "no_model"), "--task_set", "transfer",
                         "--classifier_optim", "lbgfs"])
    assert info.value.code == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith("error: --classifier_optim: unknown optimizer 'lbgfs'")


def test_bad_data_one_line_error(tiny_bert_dir: Path, tmp_path: Path, capsys) -> None:
    data = make_sts_data(tmp_path / "downstream", seed=5)
    gs = data / "STS" / "STS13-en-test" / "STS.gs.OnWN.txt"
    lines = gs.read_text().splitlines()
    lines[6] = "n/a"
    gs.write_text("\n".join(lines) + "\n")
    with pytest.raises(SystemExit) as info:
        evaluation.main(["--model_name_or_path", str(tiny_bert_dir), "--pooler", "avg", "--data_dir", str(data),
                         "--device", "cpu", "--no_progress"])
    assert info.value.code == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert err[-1] == f"error: {gs}:7: gold score is not a number: 'n/a'"
    with pytest.raises(SystemExit) as info:
        evaluation.main(["--model_name_or_path", str(tiny_bert_dir), "--data_dir", str(tmp_path / "missing")])
    assert info.value.code == 2
    assert capsys.readouterr().err.startswith(f"error: {tmp_path / 'missing'}: SentEval data directory not found")


def test_dev_metrics_encode_only_dev_splits(tiny_bert_dir: Path, data_dir: Path) -> None:
    from simcse import evaluation as ev

    model, tok = ev.load_encoder(tiny_bert_dir, "cpu")
    inner = ev.make_embed_fn(model, tok, "avg", "cpu")
    seen: list[str] = []

    def embed(sentences: list[str]) -> torch.Tensor:
        seen.extend(sentences)
        return inner(sentences)

    out = ev.dev_metrics(embed, data_dir)
    dev = [r.split("\t") for r in (data_dir / "STS" / "STSBenchmark" / "sts-dev.csv").read_text().splitlines()]
    trial = [r.split("\t") for r in (data_dir / "SICK" / "SICK_trial.txt").read_text().splitlines()[1:]]
    assert set(seen) == {r[5] for r in dev} | {r[6] for r in dev} | {r[1] for r in trial} | {r[2] for r in trial}
    assert len(seen) == len(set(seen))

    def ref(pairs: list[tuple[str, str]], gold: list[float]) -> tuple[float, float]:
        """rho, and how far float32 rounding of the cosines (other batches here) may move it."""
        ea, eb = inner([p[0] for p in pairs]).numpy(), inner([p[1] for p in pairs]).numpy()
        cosines = (ea * eb).sum(1) / np.linalg.norm(ea, axis=1) / np.linalg.norm(eb, axis=1)
        return float(spearmanr(cosines, gold)[0]), spearman_rounding_tolerance(cosines, gold)

    (stsb, stsb_tol), (sick, sick_tol) = (
        ref([(r[5], r[6]) for r in dev], [float(r[4]) for r in dev]),
        ref([(r[1], r[2]) for r in trial], [float(r[3]) for r in trial]),
    )
    assert abs(out["stsb_spearman"] - stsb) <= stsb_tol, (out["stsb_spearman"], stsb, stsb_tol)
    assert abs(out["sickr_spearman"] - sick) <= sick_tol, (out["sickr_spearman"], sick, sick_tol)
    assert abs(out["avg_sts"] - (stsb + sick) / 2) <= (stsb_tol + sick_tol) / 2
    assert set(out) == {"stsb_spearman", "sickr_spearman", "avg_sts"}


def test_data_dir_resolution(tmp_path: Path, monkeypatch) -> None:
    from senteval.utils import DataError

    from simcse import evaluation as ev

    monkeypatch.setenv("SENTEVAL_DATA_DIR", str(tmp_path))
    assert ev.resolve_data_dir() == tmp_path
    assert ev.resolve_data_dir(tmp_path / "..") == tmp_path / ".."  # explicit argument wins
    monkeypatch.setenv("SENTEVAL_DATA_DIR", str(tmp_path / "absent"))
    with pytest.raises(DataError, match="SentEval data directory not found"):
        ev.resolve_data_dir()


def test_over_long_sentences_are_truncated(tiny_bert_dir: Path) -> None:
    from simcse import evaluation as ev

    model, tok = ev.load_encoder(tiny_bert_dir, "cpu")
    embed = ev.make_embed_fn(model, tok, "avg", "cpu")  # tiny model: 128 positions
    out = embed(["word " * 1000, "short one"])
    assert out.shape == (2, 32) and torch.isfinite(out).all()
    short = ev.make_embed_fn(model, tok, "avg", "cpu", max_seq_length=8)(["word " * 1000])
    enc = tok("word " * 1000, truncation=True, max_length=8, return_tensors="pt")
    with torch.no_grad():
        ref = model(**enc).last_hidden_state.mean(1)
    assert_close_scaled(short, ref, what="truncated embedding")  # float32 forward, other padding


def test_alignment_uniformity_on_request(tiny_bert_dir: Path, senteval_data: Path, tmp_path: Path, capsys) -> None:
    """--alignment_uniformity reports the paper's metrics on STS-B test, equal to a direct computation."""
    from simcse import evaluation as ev
    from simcse.analysis import alignment, uniformity

    out = tmp_path / "r.json"
    evaluation.main(["--model_name_or_path", str(tiny_bert_dir), "--pooler", "avg", "--task_set", "na", "--tasks",
                     "STSBenchmark", "--data_dir", str(senteval_data), "--no_progress", "--alignment_uniformity",
                     "--output_json", str(out)])
    printed = capsys.readouterr().out
    got = json.loads(out.read_text())["extra"]["alignment_uniformity"]
    assert got["split"] == "test" and f"{got['align']:.4f}" in printed and f"{got['uniform']:.4f}" in printed
    rows = [r.split("\t") for r in (senteval_data / "STS/STSBenchmark/sts-test.csv").read_text().splitlines()]
    model, tok = ev.load_encoder(tiny_bert_dir, "cpu")
    embed = ev.make_embed_fn(model, tok, "avg", "cpu")
    pos = [r for r in rows if float(r[4]) > 4.0]
    x, y = embed([r[5] for r in pos]), embed([r[6] for r in pos])
    sentences = list(dict.fromkeys([r[5] for r in rows] + [r[6] for r in rows]))
    assert got["num_pairs"] == len(pos) and got["num_sentences"] == len(sentences)
    assert got["align"] == pytest.approx(float(alignment(x, y)), rel=1e-4)
    assert got["uniform"] == pytest.approx(float(uniformity(embed(sentences))), rel=1e-4)
