"""The user's own scored pairs (simcse/eval_file.py): reading with file:line errors, the metric against a hand
computation, equality with SentEval's STS-B dev Spearman, train.py --eval_file without SentEval data and
evaluation.py --sts_file."""

from __future__ import annotations

import csv
import json
from pathlib import Path

import numpy as np
import pytest
import torch
from scipy.stats import spearmanr

from simcse.data import DataFormatError
from simcse.eval_file import cosine_spearman, normalise_sentence, read_scored_pairs
from tests.test_senteval_sts import make_sts_data


@pytest.fixture(scope="module")
def data_dir(tmp_path_factory) -> Path:
    return make_sts_data(tmp_path_factory.mktemp("evalfile") / "downstream", seed=5)


def stsb_as_user_csv(data_dir: Path, split: str, path: Path) -> Path:
    """An STS-B split written as a user would: sentence1, sentence2, score, csv-quoted, extra spaces kept."""
    rows = [r.split("\t") for r in (data_dir / "STS" / "STSBenchmark" / f"sts-{split}.csv").read_text().splitlines()]
    with open(path, "w", encoding="utf-8", newline="") as fh:
        writer = csv.writer(fh)
        writer.writerow(["sentence1", "sentence2", "score"])
        for i, r in enumerate(rows):
            writer.writerow([r[5] + ("  " if i % 2 else ""), (" " if i % 3 == 0 else "") + r[6], r[4]])
    return path


def test_reads_by_header_name_in_any_order_and_normalises(tmp_path):
    path = tmp_path / "mine.tsv"
    path.write_text("score\tsentence2\tsentence1\n4.5\t  the  dog   runs \ta cat\n\n1\tb\ta\n", encoding="utf-8")
    pairs = read_scored_pairs(path)
    assert pairs.sentences1 == ["a cat", "a"]
    assert pairs.sentences2 == ["the dog runs", "b"]  # runs of spaces and the ends normalised
    assert pairs.scores.tolist() == [4.5, 1.0] and pairs.scores.dtype == np.float64
    assert pairs.name == "mine"
    positional = tmp_path / "pos.csv"
    positional.write_text("a,b,c\nx y,z,2\nu,v,3\n", encoding="utf-8")
    got = read_scored_pairs(positional)
    assert (got.sentences1, got.sentences2, got.scores.tolist()) == (["x y", "u"], ["z", "v"], [2.0, 3.0])
    assert normalise_sentence(" a\u00a0 b\t c ") == "a b c"  # what str.split() (SentEval's reader) splits on


@pytest.mark.parametrize(
    ("name", "text", "error"),
    [
        ("two.csv", "sentence1,sentence2\na,b\n", "{p}:1: 2 column(s), expected 3: sentence1, sentence2, score"),
        ("four.csv", "a,b,c,d\n1,2,3,4\n", "{p}:1: 4 columns, expected 1, 2 or 3"),
        ("bad_score.csv", "sentence1,sentence2,score\na,b,1\nc,d,high\n", "{p}:3: score 'high' is not a number"),
        ("nan.csv", "sentence1,sentence2,score\na,b,1\nc,d,nan\n", "{p}:3: score 'nan' is not finite"),
        ("short_row.csv", "sentence1,sentence2,score\na,b,1\nc,d\n", "{p}:3: 2 fields, header has 3"),
        ("quote.csv", 'sentence1,sentence2,score\na,"b,1\n', "{p}:2: CSV syntax error"),
        ("one.csv", "sentence1,sentence2,score\na,b,1\n", "{p}:0: 1 scored pair(s); Spearman's rho needs at least 2"),
        ("plain.txt", "a\n", "{p}:0: unsupported extension '.txt' (expected .csv or .tsv)"),
        ("missing.csv", None, "{p}:0: file not found; check --eval_file"),
    ],
)
def test_bad_files_are_one_line_file_line_errors(tmp_path, name, text, error):
    path = tmp_path / name
    if text is not None:
        path.write_text(text, encoding="utf-8")
    with pytest.raises(DataFormatError) as info:
        read_scored_pairs(path)
    assert str(info.value).startswith(error.format(p=path)) and "\n" not in str(info.value)


def test_metric_is_cosine_spearman_computed_by_hand(tmp_path):
    path = tmp_path / "own.csv"
    rows = ["sentence1,sentence2,score", "a b,c,1", "d,e f,4", "g,h,2", "i,j,2", "k,l,0.5"]
    path.write_text("\n".join(rows) + "\n", encoding="utf-8")
    names = "a b|c|d|e f|g|h|i|j|k|l".split("|")
    vectors = {s: torch.randn(4, generator=torch.Generator().manual_seed(i)) for i, s in enumerate(names)}

    def embed(sentences):
        return torch.stack([vectors[s] for s in sentences])

    cos = [float(torch.nn.functional.cosine_similarity(vectors[a], vectors[b], dim=0))
           for a, b in (("a b", "c"), ("d", "e f"), ("g", "h"), ("i", "j"), ("k", "l"))]  # fmt: skip
    expected = spearmanr(cos, [1, 4, 2, 2, 0.5])[0]
    assert cosine_spearman(embed, read_scored_pairs(path)) == pytest.approx(expected, abs=1e-12)


def test_stsb_dev_as_user_csv_equals_senteval_stsb_dev_spearman(tiny_bert_dir, data_dir, tmp_path):
    """Through the trainer's embedder (one cache per evaluation): exactly SentEval's number."""
    from simcse.evaluation import dev_metrics
    from simcse.models import load_cl_model
    from simcse.trainer import SentenceEmbedder
    from tests.conftest import make_tokenizer

    model = load_cl_model(str(tiny_bert_dir), simcse_settings={"pooler_type": "avg"}).eval()
    pairs = read_scored_pairs(stsb_as_user_csv(data_dir, "dev", tmp_path / "dev.csv"))
    embed = SentenceEmbedder(model, make_tokenizer("bert"), torch.device("cpu"))
    own = cosine_spearman(embed, pairs)  # first: SentEval then reads the same cached vectors
    builtin = dev_metrics(embed, data_dir)["stsb_spearman"]
    assert abs(own - builtin) <= 1e-12 and abs(own) > 0.01


def _train_args(model_dir, train_file, out, *extra):
    return [
        "--model_name_or_path", str(model_dir), "--train_file", str(train_file), "--output_dir", str(out),
        "--per_device_train_batch_size", "8", "--max_steps", "4", "--learning_rate", "1e-3",
        "--eval_strategy", "steps", "--eval_steps", "2", "--do_train", "--pooler_type", "cls",
        "--use_cpu", "--seed", "1", "--report_to", "none", "--disable_tqdm", "true", *extra,
    ]  # fmt: skip


def test_train_with_eval_file_needs_no_senteval_data(tiny_bert_dir, data_dir, tmp_path):
    import train

    train_file = tmp_path / "train.txt"
    train_file.write_text("\n".join(f"sentence number {i} is here" for i in range(32)) + "\n", encoding="utf-8")
    dev = stsb_as_user_csv(data_dir, "dev", tmp_path / "dev.csv")
    out = tmp_path / "run"
    train.main(_train_args(
        tiny_bert_dir, train_file, out, "--eval_file", str(dev), "--senteval_data_dir", str(tmp_path / "none"),
        "--metric_for_best_model", "file_spearman", "--load_best_model_at_end",
    ))  # fmt: skip
    history = json.loads((out / "log_history.json").read_text())
    evals = [e for e in history if "eval_file_spearman" in e]
    assert [e["step"] for e in evals] == [2, 4]
    assert not any("eval_stsb_spearman" in e or "eval_align" in e for e in history)
    state = json.loads((out / "trainer_state.json").read_text())
    best = max(evals, key=lambda e: e["eval_file_spearman"])
    assert state["best_metric"] == pytest.approx(best["eval_file_spearman"])
    # A SentEval metric as the best-model metric still needs the data, and says so before any work.
    with pytest.raises(FileNotFoundError, match="SentEval data not found"):
        train.main(_train_args(
            tiny_bert_dir, train_file, tmp_path / "run2", "--eval_file", str(dev),
            "--senteval_data_dir", str(tmp_path / "none"), "--metric_for_best_model", "stsb_spearman",
        ))  # fmt: skip


def test_train_bad_eval_file_fails_first_with_file_line(tiny_bert_dir, tmp_path):
    import train

    bad = tmp_path / "dev.csv"
    bad.write_text("sentence1,sentence2,score\na,b,1\nc,d,x\n", encoding="utf-8")
    out = tmp_path / "never"
    (tmp_path / "t.txt").write_text("a sentence\n", encoding="utf-8")
    with pytest.raises(DataFormatError, match=rf"^{bad}:3: score 'x' is not a number"):
        train.main(_train_args(tiny_bert_dir, tmp_path / "t.txt", out, "--eval_file", str(bad)))
    assert not out.exists()


def test_evaluation_cli_sts_file_column_after_avg(tiny_bert_dir, data_dir, tmp_path, capsys):
    import evaluation

    own = stsb_as_user_csv(data_dir, "test", tmp_path / "my_sts.csv")
    out_json = tmp_path / "r.json"
    assert evaluation.main([
        "--model_name_or_path", str(tiny_bert_dir), "--pooler", "avg", "--data_dir", str(data_dir), "--device",
        "cpu", "--no_progress", "--task_set", "na", "--tasks", "STSBenchmark", "SICKRelatedness", "--sts_file",
        str(own), "--output_json", str(out_json),
    ]) == 0  # fmt: skip
    text = capsys.readouterr().out
    rows = [ln for ln in text.splitlines() if ln.startswith("|")]
    names = [c.strip() for c in rows[0].strip("|").split("|")]
    values = [float(c) for c in rows[1].strip("|").split("|")]
    table = dict(zip(names, values))
    assert names[-2:] == ["Avg.", "my_sts"]
    assert table["my_sts"] == table["STSBenchmark"]  # STS-B test as a user file: the same number
    assert table["Avg."] == pytest.approx(round((table["STSBenchmark"] + table["SICKRelatedness"]) / 7, 2), abs=0.011)
    assert json.loads(out_json.read_text())["table"]["sts_files"] == {"my_sts": f"{table['my_sts']:.2f}"}


def test_evaluation_cli_bad_sts_file_exits_2(tiny_bert_dir, data_dir, tmp_path, capsys):
    import evaluation

    bad = tmp_path / "b.csv"
    bad.write_text("sentence1,sentence2,score\na,b\n", encoding="utf-8")
    with pytest.raises(SystemExit) as info:
        evaluation.main(["--model_name_or_path", str(tiny_bert_dir), "--data_dir", str(data_dir), "--sts_file",
                         str(bad), "--task_set", "na", "--tasks", "STSBenchmark", "--no_progress"])
    assert info.value.code == 2
    assert capsys.readouterr().err.strip() == f"error: {bad}:2: 2 fields, header has 3"
