"""The bad-input matrix of docs/RELIABILITY.md: every case either fails with one ``file:line: problem`` line
(and exit code 2 from the command line) or is handled in a documented, logged way.

A few cases run ``python train.py`` / ``python evaluation.py`` as subprocesses to check what a user sees
(exit code, exactly one ``error:`` line, no traceback); the rest call ``main()`` in-process, which is the
same code path minus the interpreter start-up.
"""

from __future__ import annotations

import functools
import logging
from pathlib import Path

import pytest
from transformers import AutoTokenizer, GPT2Config

import evaluation
import train
from simcse.data import DataFormatError, load_training_dataset
from simcse.load_errors import ModelLoadError
from simcse.models import UnsupportedModelError
from simcse.run_state import OutputDirError, run_record, write_run_record
from simcse.trainer import NonFiniteLossError
from tests.cli_runs import CliBatch

REPO_ROOT = Path(__file__).resolve().parent.parent
STS12 = ("MSRpar", "MSRvid", "SMTeuroparl", "surprise.OnWN", "surprise.SMTnews")
SENTENCES = [f"a man plays the guitar number {i}" for i in range(16)]


def train_args(model_dir: Path, train_file: Path, out: Path, *extra: str) -> list[str]:
    """A 1-step CPU run without evaluation (most cases fail long before the first step)."""
    return [
        "--model_name_or_path", str(model_dir), "--train_file", str(train_file), "--output_dir", str(out),
        "--per_device_train_batch_size", "4", "--max_steps", "1", "--max_seq_length", "16", "--use_cpu",
        "--eval_strategy", "no", "--save_strategy", "no", "--report_to", "none", "--disable_tqdm", "true",
        "--plot_training", "false", "--do_train", *extra,
    ]  # fmt: skip


def assert_one_error_line(result: tuple[int, list[str], str], expected: str) -> None:
    """Exit code 2, no traceback, and exactly one error line, equal to (or, for argparse, ending with) expected."""
    code, errors, stderr = result
    assert code == 2, stderr[-3000:]
    assert "Traceback" not in stderr
    assert len(errors) == 1, stderr[-3000:]
    assert errors[0] == expected or errors[0].endswith(expected), errors[0]


def write(path: Path, text: str | bytes) -> Path:
    """Write text (UTF-8) or raw bytes, creating the parent folder."""
    path.parent.mkdir(parents=True, exist_ok=True)
    if isinstance(text, bytes):
        path.write_bytes(text)
    else:
        path.write_text(text, encoding="utf-8")
    return path


@pytest.fixture(scope="module")
def good_txt(tmp_path_factory) -> Path:
    return write(tmp_path_factory.mktemp("good") / "train.txt", "\n".join(SENTENCES) + "\n")


@pytest.fixture(scope="module")
def no_weights_dir(tiny_bert_dir, tmp_path_factory) -> Path:
    """config.json and the tokenizer of the tiny BERT, but no model.safetensors."""
    folder = tmp_path_factory.mktemp("no_weights")
    write(folder / "config.json", (tiny_bert_dir / "config.json").read_text(encoding="utf-8"))
    AutoTokenizer.from_pretrained(tiny_bert_dir).save_pretrained(folder)
    return folder


def make_sts12(root: Path, gold_lines: dict[str, list[str]] | None = None) -> Path:
    """A SentEval downstream folder with only STS12 (6 scored pairs per subset); ``gold_lines`` overrides one."""
    base = root / "STS" / "STS12-en-test"
    base.mkdir(parents=True)
    for k, subset in enumerate(STS12):
        pairs = [f"{SENTENCES[i]}\t{SENTENCES[(i + k + 1) % 16]}" for i in range(6)]
        golds = (gold_lines or {}).get(subset, [f"{(i * 7 + k) % 6}.0" for i in range(6)])
        write(base / f"STS.input.{subset}.txt", "\n".join(pairs) + "\n")
        write(base / f"STS.gs.{subset}.txt", "\n".join(golds) + "\n")
    return root


def eval_args(model_dir: Path, data_dir: Path, *extra: str) -> list[str]:
    return [
        "--model_name_or_path", str(model_dir), "--data_dir", str(data_dir), "--task_set", "na", "--tasks", "STS12",
        "--pooler", "avg", "--device", "cpu", "--no_progress", *extra,
    ]  # fmt: skip


# --- training files: in-process -----------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("name", "content", "message"),
    [
        ("empty.txt", "", "{p}:0: no examples (file is empty or blank)"),
        ("blank_only.txt", "\n  \n\n", "{p}:0: no examples (file is empty or blank)"),
        ("header_only.csv", "sent0,sent1\n", "{p}:0: no examples (file is empty or has only a header)"),
        ("ragged.csv", "sent0,sent1\na man,a person\na dog\n", "{p}:3: 1 fields, header has 2"),
        ("four_columns.csv", "a,b,c,d\n1,2,3,4\n", "{p}:1: 4 columns, expected 1, 2 or 3"),
        ("latin1.txt", b"good line\nbad \xff line\n", "{p}:2: invalid UTF-8 byte 0xff (byte offset 14)"),
        ("unterminated.csv", 'sent0,sent1\n"open quote,b\n', "{p}:2: CSV syntax error: unexpected end of data"),
    ],
)
def test_bad_training_file(tiny_bert_dir, tmp_path, name, content, message):
    path = write(tmp_path / name, content)
    with pytest.raises(DataFormatError) as info:
        train.main(train_args(tiny_bert_dir, path, tmp_path / "out"))
    assert str(info.value) == message.format(p=path)
    assert not (tmp_path / "out" / "model.safetensors").exists()


def test_missing_training_file(tiny_bert_dir, tmp_path):
    missing = tmp_path / "missing.txt"
    with pytest.raises(DataFormatError) as info:
        train.main(train_args(tiny_bert_dir, missing, tmp_path / "out"))
    assert str(info.value) == f"{missing}:0: training file not found; check --train_file"


def test_blank_lines_are_skipped_counted_and_logged_long_sentences_truncated(tiny_bert_dir, tmp_path, caplog):
    long_sentence = " ".join(["guitar"] * 3000)  # far longer than any position table
    lines = [SENTENCES[0], "", long_sentence, "   ", *SENTENCES[1:6], "", ""]
    path = write(tmp_path / "blanks.txt", "\n".join(lines) + "\n")
    with caplog.at_level(logging.INFO):
        results = train.main(train_args(tiny_bert_dir, path, tmp_path / "out"))
    assert results["train_examples"] == 7  # 11 lines, 4 blank or whitespace-only
    assert f"{path}: skipped 4 blank line(s)" in caplog.text
    assert (tmp_path / "out" / "model.safetensors").is_file()
    dataset, summary = load_training_dataset(path, AutoTokenizer.from_pretrained(tiny_bert_dir), max_seq_length=16)
    assert summary.blank_lines_skipped == 4
    assert [len(ids) for ids in dataset[1]["input_ids"]] == [16, 16]  # truncated to max_seq_length, [SEP] kept
    assert dataset[1]["input_ids"][0][-1] == AutoTokenizer.from_pretrained(tiny_bert_dir).sep_token_id


# --- models -------------------------------------------------------------------------------------------------


def test_model_folder_without_weights(no_weights_dir, good_txt, tmp_path):
    with pytest.raises(ModelLoadError) as info:
        train.main(train_args(no_weights_dir, good_txt, tmp_path / "out"))
    assert str(info.value).startswith(f"{no_weights_dir}: model folder has no weights (expected model.safetensors")


def test_unsupported_model_type(tiny_bert_dir, good_txt, tmp_path):
    folder = tmp_path / "gpt2"  # a decoder (DistilBERT, this test's model before issue 13, is supported now)
    GPT2Config(vocab_size=64, n_embd=32, n_layer=1, n_head=2).save_pretrained(folder)
    with pytest.raises(UnsupportedModelError) as info:
        train.main(train_args(folder, good_txt, tmp_path / "out"))
    assert str(info.value) == (
        f"{folder}: model type 'gpt2' is a decoder (causal LM), not a bidirectional encoder; SimCSE heads exist for "
        "bert, roberta, xlm-roberta, camembert, distilbert, albert, electra, deberta-v2, mpnet, modernbert"
    )


def test_bad_pooler_type_in_training(tiny_bert_dir, good_txt, tmp_path):
    with pytest.raises(train.ArgumentsError, match=r"^--pooler_type 'max' is not one of: cls, cls_before_pooler"):
        train.main(train_args(tiny_bert_dir, good_txt, tmp_path / "out", "--pooler_type", "max"))


# --- output directory ---------------------------------------------------------------------------------------


def test_output_dir_with_a_different_run_is_refused_unless_overwrite(tiny_bert_dir, good_txt, tmp_path):
    out = tmp_path / "out"
    first = train_args(tiny_bert_dir, good_txt, out)
    write_run_record(out, run_record(*train.parse_args(first)))  # what a started run leaves first
    (out / "checkpoint-1").mkdir()  # a stale checkpoint of that run (no marker)
    changed = [*first, "--learning_rate", "1e-4"]
    with pytest.raises(OutputDirError) as info:
        train.main(changed)
    assert str(info.value) == (
        f"{out}: already holds a different run (simcse_run.json differs); "
        "use --overwrite_output_dir or another --output_dir"
    )
    # Same arguments but nothing complete to resume from: refused too, never a silent restart.
    with pytest.raises(OutputDirError, match="holds this run's record but no complete checkpoint to resume"):
        train.main(first)
    train.main([*changed, "--overwrite_output_dir"])
    assert (out / "model.safetensors").is_file() and not (out / "checkpoint-1").exists()


def test_output_dir_with_foreign_files_is_refused(tiny_bert_dir, good_txt, tmp_path):
    out = tmp_path / "out"
    write(out / "notes.txt", "someone else's")
    with pytest.raises(OutputDirError, match=r"exists and is not empty; use --overwrite_output_dir"):
        train.main(train_args(tiny_bert_dir, good_txt, out))
    assert sorted(p.name for p in out.iterdir()) == ["notes.txt"]


def test_training_with_missing_senteval_dir(tiny_bert_dir, good_txt, tmp_path):
    missing = tmp_path / "no_such_dir"
    args = train_args(tiny_bert_dir, good_txt, tmp_path / "out", "--eval_strategy", "steps", "--eval_steps", "1")
    with pytest.raises(FileNotFoundError, match=rf"^{missing}/STS/STSBenchmark/sts-dev\.csv: SentEval data not found"):
        train.main([*args, "--senteval_data_dir", str(missing)])


# --- NaN loss ---------------------------------------------------------------------------------------------


def _poison_training_losses(monkeypatch, from_call: int, value: float, only_once: bool = False) -> dict[str, int]:
    """Patch BertForCL.forward so the ``from_call``-th training forward (1-based; and later ones unless
    ``only_once``) returns its loss times ``value`` (nan or inf). Returns the live call counter."""
    from simcse.models import BertForCL

    original = BertForCL.forward
    calls = {"train": 0}

    @functools.wraps(original)  # keeps the signature Trainer inspects to choose the dataset columns
    def forward(self, *args, **kwargs):
        out = original(self, *args, **kwargs)
        if self.training and kwargs.get("sent_emb") is not True:
            calls["train"] += 1
            if calls["train"] == from_call or (calls["train"] > from_call and not only_once):
                out.loss = out.loss * value
        return out

    monkeypatch.setattr(BertForCL, "forward", forward)
    return calls


def test_nan_loss_stops_the_run_before_a_model_is_saved(tiny_bert_dir, good_txt, tmp_path, monkeypatch):
    """The model's forward returns a NaN loss from the 3rd training forward on (global step 2, 0-based)."""
    calls = _poison_training_losses(monkeypatch, 3, float("nan"))
    out = tmp_path / "out"
    args = train_args(tiny_bert_dir, good_txt, out, "--max_steps", "4", "--save_strategy", "steps")
    args += ["--save_steps", "1"]
    with pytest.raises(NonFiniteLossError) as info:
        train.main(args)
    assert str(info.value).startswith("training loss is nan at step 2: stopping before a broken model is saved")
    assert calls["train"] == 3
    assert not (out / "model.safetensors").exists()
    assert sorted(p.name for p in out.glob("checkpoint-*")) == ["checkpoint-1", "checkpoint-2"]  # finite steps only


def test_nan_loss_is_caught_without_a_sync_per_step(tiny_bert_dir, good_txt, tmp_path, monkeypatch):
    """No log/save/eval until the end: the inf of step 2 is found at a later check, reported with its own
    step and value, and nothing is written; training ran on (no per-step host sync) until that check."""
    calls = _poison_training_losses(monkeypatch, 3, float("inf"), only_once=True)
    out = tmp_path / "out"
    args = train_args(tiny_bert_dir, good_txt, out, "--max_steps", "5", "--save_strategy", "no")
    args += ["--logging_strategy", "no"]
    with pytest.raises(NonFiniteLossError) as info:
        train.main(args)
    assert str(info.value).startswith("training loss is inf at step 2: stopping before a broken model is saved")
    assert 3 < calls["train"] <= 5  # went on past the bad step, to the next check (epoch end or the last step)
    assert not (out / "model.safetensors").exists()


# --- evaluation: in-process ---------------------------------------------------------------------------------


def sts_gold_errors(tiny_bert_dir: Path, data: Path, capsys) -> list[str]:
    """evaluation.main over ``data``: it must exit 2; the ``error:`` lines it printed."""
    with pytest.raises(SystemExit) as info:
        evaluation.main(eval_args(tiny_bert_dir, data))
    assert info.value.code == 2
    return [ln for ln in capsys.readouterr().err.splitlines() if "error:" in ln]


def test_sts_gold_file_shorter_than_input(tiny_bert_dir, tmp_path, capsys):
    data = make_sts12(tmp_path / "downstream", {"MSRvid": ["1.0", "2.0", "3.0", "4.0"]})
    gold = data / "STS" / "STS12-en-test" / "STS.gs.MSRvid.txt"
    assert sts_gold_errors(tiny_bert_dir, data, capsys) == [
        f"error: {gold}:5: gold file ends early: 4 lines for 6 input pairs in STS.input.MSRvid.txt"
    ]


def test_sts_non_numeric_gold_score(tiny_bert_dir, tmp_path, capsys):
    data = make_sts12(tmp_path / "downstream", {"SMTeuroparl": ["1.0", "2.0", "three", "4.0", "5.0", "0.0"]})
    gold = data / "STS" / "STS12-en-test" / "STS.gs.SMTeuroparl.txt"
    assert sts_gold_errors(tiny_bert_dir, data, capsys) == [f"error: {gold}:3: gold score is not a number: 'three'"]


def test_sts_good_data_evaluates(tiny_bert_dir, tmp_path, capsys):
    """The control for the two cases above: the same folder with intact gold files evaluates."""
    data = make_sts12(tmp_path / "downstream")
    assert evaluation.main(eval_args(tiny_bert_dir, data)) == 0
    assert "------ test ------" in capsys.readouterr().out


# --- the command lines: subprocesses ------------------------------------------------------------------------


@pytest.fixture(scope="module")
def cli(tiny_bert_dir, no_weights_dir, good_txt, tmp_path_factory):
    """The module's command-line cases, started together (tests/cli_runs.py); ``cli.paths`` holds their inputs."""
    root = tmp_path_factory.mktemp("cli")
    batch = CliBatch(root)
    batch.paths = {"empty": write(root / "empty.txt", ""), "missing": root / "no_such_dir"}
    batch.start("empty", "train.py", *train_args(tiny_bert_dir, batch.paths["empty"], root / "o1"))
    batch.start("no_weights", "train.py", *train_args(no_weights_dir, good_txt, root / "o2", "--pooler_type", "avg"))
    batch.start("bad_pooler_type", "train.py",
                *train_args(tiny_bert_dir, good_txt, root / "o3", "--pooler_type", "max"))
    batch.start("eval_bad_pooler", "evaluation.py", "--model_name_or_path", str(tiny_bert_dir), "--pooler", "max")
    batch.start("eval_missing_data", "evaluation.py", *eval_args(tiny_bert_dir, batch.paths["missing"]))
    yield batch
    batch.close()


def cli_result(cli: CliBatch, name: str) -> tuple[int, list[str], str]:
    """(exit code, stderr lines with 'error:', stderr) of one started case."""
    code, stderr = cli.result(name)
    return code, [ln for ln in stderr.splitlines() if "error:" in ln], stderr


def test_cli_train_empty_file(cli):
    expected = f"error: {cli.paths['empty']}:0: no examples (file is empty or blank)"
    assert_one_error_line(cli_result(cli, "empty"), expected)


def test_cli_train_model_without_weights(cli, no_weights_dir):
    assert_one_error_line(
        cli_result(cli, "no_weights"),
        f"error: {no_weights_dir}: model folder has no weights (expected model.safetensors or pytorch_model.bin); "
        "is the download or the copy incomplete?",
    )


def test_cli_train_bad_pooler_type(cli):
    assert_one_error_line(
        cli_result(cli, "bad_pooler_type"),
        "error: --pooler_type 'max' is not one of: cls, cls_before_pooler, avg, avg_top2, avg_first_last",
    )


def test_cli_evaluation_bad_pooler(cli):
    code, errors, stderr = cli_result(cli, "eval_bad_pooler")
    assert code == 2 and "Traceback" not in stderr
    assert len(errors) == 1 and errors[0].startswith("evaluation.py: error: argument --pooler: invalid choice: 'max'")


def test_evaluation_bad_mode(tiny_bert_dir, capsys):
    with pytest.raises(SystemExit) as info:
        evaluation.main(["--model_name_or_path", str(tiny_bert_dir), "--mode", "final"])
    assert info.value.code == 2
    errors = [ln for ln in capsys.readouterr().err.splitlines() if "error:" in ln]
    assert len(errors) == 1 and "error: argument --mode: invalid choice: 'final'" in errors[0]


def test_cli_evaluation_missing_data_dir(cli):
    assert_one_error_line(
        cli_result(cli, "eval_missing_data"),
        f"error: {cli.paths['missing']}: SentEval data directory not found; run "
        "SentEval/data/downstream/download_dataset.sh or pass --data_dir / set SENTEVAL_DATA_DIR",
    )


def test_evaluation_model_without_weights(no_weights_dir, tmp_path, capsys):
    data = make_sts12(tmp_path / "downstream")
    with pytest.raises(SystemExit) as info:
        evaluation.main(eval_args(no_weights_dir, data))
    assert info.value.code == 2
    errors = [ln for ln in capsys.readouterr().err.splitlines() if "error:" in ln]
    assert len(errors) == 1 and str(no_weights_dir) in errors[0]
