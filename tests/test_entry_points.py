"""The entry-point matrix of docs/RELIABILITY.md ("Entry points"): every bad model, file or folder a user can
hand to train.py, evaluation.py, simcse_to_huggingface.py or ``SimCSE(...)`` gives one line naming it and the
fix (exit status 2 from the command lines), checked before any work.

Rows run in-process through ``main()``; ``tests/test_entry_points_cli.py`` runs one case per entry point as a
subprocess, as a user would.
"""

from __future__ import annotations

import json
import os
import shutil
import signal
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file, save_file
from transformers import DistilBertConfig, DistilBertModel, TrainerCallback

import evaluation
import simcse_to_huggingface
import train
from simcse import SimCSE
from simcse.data import DataFormatError
from simcse.interrupt import TrainingInterrupted, resume_command
from simcse.load_errors import ModelLoadError, check_model_source, translate_load_errors
from simcse.run_state import COMPLETE_MARKER, RUN_COMPLETE_MARKER, OutputDirError

from .test_bad_inputs import eval_args, make_sts12, train_args, write

SENTENCES = [f"a woman reads the paper number {i}" for i in range(16)]
Q_WEIGHT = "encoder.layer.0.attention.self.query.weight"


@pytest.fixture(scope="module")
def good_txt(tmp_path_factory) -> Path:
    return write(tmp_path_factory.mktemp("ep_good") / "train.txt", "\n".join(SENTENCES) + "\n")


@pytest.fixture(scope="module")
def sts12(tmp_path_factory) -> Path:
    return make_sts12(tmp_path_factory.mktemp("ep_sts") / "downstream")


def _variant(root: Path, good: Path, name: str, change) -> Path:
    folder = root / name
    shutil.copytree(good, folder)
    change(folder)
    return folder


def _truncate(file: Path, keep: float = 0.5) -> None:
    data = file.read_bytes()
    file.write_bytes(data[: int(len(data) * keep)])


def _edit_weights(folder: Path, edit) -> None:
    state = load_file(folder / "model.safetensors")
    edit(state)
    save_file(state, folder / "model.safetensors", metadata={"format": "pt"})


def _to_bin(folder: Path) -> None:
    state = load_file(folder / "model.safetensors")
    (folder / "model.safetensors").unlink()
    torch.save(state, folder / "pytorch_model.bin")
    _truncate(folder / "pytorch_model.bin")


def _set_config(folder: Path, **values) -> None:
    config = json.loads((folder / "config.json").read_text())
    config.update(values)
    (folder / "config.json").write_text(json.dumps(config))


@pytest.fixture(scope="module")
def bad_models(tiny_bert_dir, tmp_path_factory) -> dict[str, Path]:
    """Damaged copies of the tiny BERT, one per row of the matrix."""
    root = tmp_path_factory.mktemp("bad_models")
    make = {
        "no_config": lambda f: (f / "config.json").unlink(),
        "bad_config": lambda f: (f / "config.json").write_text("{oops"),
        "no_weights": lambda f: (f / "model.safetensors").unlink(),
        "truncated_safetensors": lambda f: _truncate(f / "model.safetensors"),
        "truncated_bin": _to_bin,
        "missing_param": lambda f: _edit_weights(f, lambda s: s.pop("encoder.layer.1.output.dense.weight")),
        "wrong_shape": lambda f: _edit_weights(f, lambda s: s.__setitem__(Q_WEIGHT, torch.zeros(16, 32))),
        "unknown_type": lambda f: _set_config(f, model_type="foo"),
    }
    return {name: _variant(root, tiny_bert_dir, name, change) for name, change in make.items()}


def expected_messages(models: dict[str, Path]) -> dict[str, str]:
    """The exact one-line messages (docs/RELIABILITY.md, "Entry points")."""
    m = {k: str(v) for k, v in models.items()}
    return {
        "no_config": f"{m['no_config']}: not a model folder (no config.json); pass the folder that holds config.json "
        "and the weights (model.safetensors or pytorch_model.bin)",
        "bad_config": f"{m['bad_config']}/config.json: not valid JSON (Expecting property name enclosed in double "
        "quotes: line 1 column 2 (char 1)); the file is damaged: copy or download the model again",
        "no_weights": f"{m['no_weights']}: model folder has no weights (expected model.safetensors or "
        "pytorch_model.bin); is the download or the copy incomplete?",
        "truncated_safetensors": f"{m['truncated_safetensors']}/model.safetensors: weights cannot be read (Error "
        "while deserializing header: incomplete metadata, file not fully covered); the file is damaged or "
        "incomplete (an interrupted download or copy?): copy or download the model again",
        "truncated_bin": f"{m['truncated_bin']}/pytorch_model.bin: weights cannot be read (",  # detail: torch's
        "missing_param": f"{m['missing_param']}: the weights lack encoder parameter {{prefix}}encoder.layer.1.output."
        "dense.weight; the checkpoint is incomplete or does not match its config.json: copy or download the "
        "model again",
        "wrong_shape": f"{m['wrong_shape']}: parameter {{prefix}}{Q_WEIGHT} has shape (16, 32) in the weights but "
        "(32, 32) for config.json; the weights do not belong to this config (copy the matching config.json, or "
        "the model again)",
        "unknown_type": f"{m['unknown_type']}: model type 'foo' is not known to transformers "
        f"{__import__('transformers').__version__}; SimCSE supports bert and roberta encoders",
    }


CASES = ["no_config", "bad_config", "no_weights", "truncated_safetensors", "truncated_bin", "missing_param",
         "wrong_shape", "unknown_type"]  # fmt: skip


def _check(message: str, expected: str, prefix: str) -> None:
    expected = expected.replace("{prefix}", prefix)
    if expected.endswith("("):
        assert message.startswith(expected) and "the file is damaged or incomplete" in message, message
    else:
        assert message == expected


@pytest.mark.parametrize("case", CASES)
def test_train_bad_model(case, bad_models, good_txt, tmp_path):
    out = tmp_path / "out"
    with pytest.raises(ModelLoadError) as info:
        train.main(train_args(bad_models[case], good_txt, out))
    _check(str(info.value), expected_messages(bad_models)[case], "bert.")
    assert not (out / "model.safetensors").exists()


@pytest.mark.parametrize("case", CASES)
def test_evaluation_bad_model(case, bad_models, sts12, capsys):
    with pytest.raises(SystemExit) as info:
        evaluation.main(eval_args(bad_models[case], sts12))
    assert info.value.code == 2
    err = capsys.readouterr().err.strip().splitlines()
    errors = [ln for ln in err if ln.startswith("error: ")]
    assert len(errors) == 1, err
    _check(errors[0].removeprefix("error: "), expected_messages(bad_models)[case], "")


@pytest.mark.parametrize("case", CASES)
def test_tool_bad_model(case, bad_models):
    with pytest.raises(ModelLoadError) as info:
        SimCSE(str(bad_models[case]), device="cpu", pooler="avg")
    _check(str(info.value), expected_messages(bad_models)[case], "")


@pytest.mark.parametrize("name", ["/nonexistent/model", "./typo-folder", "~/no/such/model", "a/b/c"])
def test_path_that_does_not_exist(name, good_txt, tmp_path, sts12, capsys):
    expected = (
        f"{name}: model folder not found (this is a path, not a hub id); check the path, or give a hub id of the "
        "form name or namespace/name"
    )
    with pytest.raises(ModelLoadError) as info:
        train.main(train_args(name, good_txt, tmp_path / "out"))
    assert str(info.value) == expected
    with pytest.raises(ModelLoadError) as info:
        SimCSE(name)
    assert str(info.value) == expected
    with pytest.raises(SystemExit) as code:
        evaluation.main(eval_args(name, sts12))
    assert code.value.code == 2
    assert capsys.readouterr().err.strip() == f"error: {expected}"


def test_hub_id_offline_names_the_cache(monkeypatch, tmp_path, good_txt):
    from huggingface_hub import constants

    monkeypatch.setattr(constants, "HF_HUB_OFFLINE", True)
    monkeypatch.setattr(constants, "HF_HUB_CACHE", str(tmp_path / "hub"))
    monkeypatch.setenv("HF_HUB_CACHE", str(tmp_path / "hub"))
    expected = (
        f"bert-base-uncased: not in the hub cache {tmp_path / 'hub'} (HF_HUB_CACHE) and the hub cannot be reached "
        "(offline); download it once with a network connection, or pass a local model folder instead"
    )
    with pytest.raises(ModelLoadError) as info:
        train.main(train_args(Path("bert-base-uncased"), good_txt, tmp_path / "out"))
    assert str(info.value) == expected
    with pytest.raises(ModelLoadError) as info:
        SimCSE("bert-base-uncased")
    assert str(info.value) == expected
    with pytest.raises(ModelLoadError) as info:  # --cache_dir wins and is named
        check_model_source("princeton-nlp/sup-simcse-bert-base-uncased", cache_dir=tmp_path / "mine")
    assert str(info.value).startswith(
        f"princeton-nlp/sup-simcse-bert-base-uncased: not in the hub cache {tmp_path / 'mine'} (--cache_dir)"
    )


def test_hub_unreachable_while_online_is_translated(monkeypatch, tmp_path):
    """Online but without network, transformers retries and then raises its connection OSError; the same line."""
    monkeypatch.setenv("HF_HOME", str(tmp_path / "home"))
    monkeypatch.delenv("HF_HUB_CACHE", raising=False)
    from huggingface_hub import constants

    with pytest.raises(ModelLoadError) as info:
        with translate_load_errors("bert-base-uncased"):
            raise OSError("We couldn't connect to 'https://huggingface.co' to load the files, and couldn't find them")
    assert str(info.value) == (
        f"bert-base-uncased: not in the hub cache {constants.HF_HUB_CACHE} (HF_HOME) and the hub cannot be reached "
        "(offline); download it once with a network connection, or pass a local model folder instead"
    )


def test_train_unsupported_model_type(good_txt, tmp_path):
    folder = tmp_path / "distilbert"
    DistilBertModel(DistilBertConfig(vocab_size=64, dim=32, n_layers=1, n_heads=2, hidden_dim=37)).save_pretrained(
        folder
    )
    with pytest.raises(ModelLoadError) as info:
        train.main(train_args(folder, good_txt, tmp_path / "out"))
    assert str(info.value) == (
        f"{folder}: model type 'distilbert' is not supported; SimCSE heads exist for bert, roberta"
    )


def test_roberta_and_intact_models_still_load(tiny_roberta_dir, tiny_bert_dir):
    """The control: the checks pass intact folders (the MLP/MLM heads a plain encoder lacks are no error)."""
    from simcse.models import load_cl_model

    assert load_cl_model(str(tiny_roberta_dir), simcse_settings={"do_mlm": True}).mlm_head is not None
    assert SimCSE(str(tiny_bert_dir), device="cpu", pooler="avg").encode("a").shape == (32,)


# --- --train_file, --output_dir ---------------------------------------------------------------------------------


def test_train_file_doors(tiny_bert_dir, tmp_path, monkeypatch):
    missing, folder, folder_txt = tmp_path / "missing.txt", tmp_path / "data", tmp_path / "x.txt"
    folder.mkdir()
    folder_txt.mkdir()
    cases = {
        missing: f"{missing}:0: training file not found; check --train_file",
        folder: f"{folder}:0: is a folder, not a training file; pass a .txt, .csv or .tsv (--train_file)",
        folder_txt: f"{folder_txt}:0: is a folder, not a training file; pass a .txt, .csv or .tsv (--train_file)",
    }
    for path, message in cases.items():
        with pytest.raises(DataFormatError) as info:
            train.main(train_args(tiny_bert_dir, path, tmp_path / "out"))
        assert str(info.value) == message
    # Unreadable (we run as root here, so chmod cannot take read permission away: the open is refused instead).
    locked = write(tmp_path / "locked.txt", "a sentence\n")
    import simcse.data

    def refuse(path, *args, **kwargs):
        raise PermissionError(13, "Permission denied", str(path))

    monkeypatch.setattr(simcse.data, "open", refuse, raising=False)
    with pytest.raises(DataFormatError) as info:
        train.main(train_args(tiny_bert_dir, locked, tmp_path / "out"))
    assert str(info.value) == f"{locked}:0: cannot be read (Permission denied)"
    assert not (tmp_path / "out" / "model.safetensors").exists()


def test_output_dir_doors(tiny_bert_dir, good_txt, tmp_path, monkeypatch):
    a_file = write(tmp_path / "file_out", "not a folder")
    with pytest.raises(OutputDirError) as info:
        train.main(train_args(tiny_bert_dir, good_txt, a_file))
    assert str(info.value) == f"{a_file}: --output_dir is a file, not a folder; choose another --output_dir"
    below_file = a_file / "out"
    with pytest.raises(OutputDirError) as info:
        train.main(train_args(tiny_bert_dir, good_txt, below_file))
    assert str(info.value) == (
        f"{below_file}: --output_dir is not writable (Not a directory); choose another --output_dir"
    )
    import simcse.run_state

    def refuse(*args, **kwargs):
        raise PermissionError(13, "Permission denied")

    monkeypatch.setattr(simcse.run_state.tempfile, "mkstemp", refuse)
    with pytest.raises(OutputDirError) as info:
        train.main(train_args(tiny_bert_dir, good_txt, tmp_path / "ro"))
    assert str(info.value) == (
        f"{tmp_path / 'ro'}: --output_dir is not writable (Permission denied); choose another --output_dir"
    )


def test_finished_run_is_not_resumed(tiny_bert_dir, good_txt, tmp_path):
    out = tmp_path / "out"
    args = train_args(tiny_bert_dir, good_txt, out, "--save_strategy", "steps", "--save_steps", "1")
    train.main(args)
    assert (out / RUN_COMPLETE_MARKER).is_file() and (out / "model.safetensors").is_file()
    weights = (out / "model.safetensors").read_bytes()
    with pytest.raises(OutputDirError) as info:
        train.main(args)
    assert str(info.value) == (
        f"{out}: holds a finished run (simcse_run_complete was written after its final save); to train again add "
        "--overwrite_output_dir (deletes it) or choose another --output_dir"
    )
    assert (out / "model.safetensors").read_bytes() == weights  # nothing touched
    train.main([*args, "--overwrite_output_dir"])
    assert (out / RUN_COMPLETE_MARKER).is_file()


# --- SentEval data ----------------------------------------------------------------------------------------------


def test_training_checks_transfer_data_before_training(tiny_bert_dir, good_txt, senteval_data, tmp_path):
    """--do_eval evaluates the transfer tasks after training: a missing file must stop the run before it."""
    data = tmp_path / "downstream"
    shutil.copytree(senteval_data / "STS" / "STSBenchmark", data / "STS" / "STSBenchmark")
    shutil.copytree(senteval_data / "SICK", data / "SICK")
    for task in ("MR", "CR", "SUBJ", "MPQA", "SST", "TREC"):
        shutil.copytree(senteval_data / task, data / task)
    out = tmp_path / "out"
    args = train_args(tiny_bert_dir, good_txt, out, "--do_eval", "--senteval_data_dir", str(data))
    with pytest.raises(FileNotFoundError) as info:
        train.main(args)
    assert str(info.value) == (
        f"{data}/MRPC/msr_paraphrase_train.txt: SentEval data not found (run SentEval/data/downstream/"
        "download_dataset.sh, or point --senteval_data_dir / SENTEVAL_DATA_DIR at a downstream folder)"
    )
    assert not (out / "model.safetensors").exists()


def test_evaluation_data_doors(tiny_bert_dir, sts12, tmp_path, capsys):
    with pytest.raises(SystemExit) as info:
        evaluation.main(eval_args(tiny_bert_dir, sts12, "--tasks", "STS12", "STS99"))
    assert info.value.code == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith("error: --tasks: unknown task(s) STS99; available: STS12, STS13,")
    with pytest.raises(SystemExit) as info:  # STS13 is not in the folder: found before the model is loaded
        evaluation.main([*eval_args(tmp_path / "no_model", sts12), "--tasks", "STS12", "STS13"])
    assert info.value.code == 2
    assert capsys.readouterr().err.strip() == (
        f"error: {sts12}/STS/STS13-en-test/STS.input.FNWN.txt: SentEval data file not found (the data folder is "
        "incomplete); run SentEval/data/downstream/download_dataset.sh or pass --data_dir / set SENTEVAL_DATA_DIR"
    )


# --- the converter ------------------------------------------------------------------------------------------------


def test_converter_doors(tiny_bert_dir, bad_models, tmp_path, capsys):
    missing = tmp_path / "nothing"
    assert simcse_to_huggingface.main(["--path", str(missing)]) == 2
    assert capsys.readouterr().err.strip() == (
        f"error: {missing}: checkpoint folder not found; pass the folder that holds config.json and the weights "
        "(--path)"
    )
    not_ckpt = tmp_path / "not_ckpt"
    not_ckpt.mkdir()
    assert simcse_to_huggingface.main(["--path", str(not_ckpt)]) == 2
    assert capsys.readouterr().err.strip() == (
        f"error: {not_ckpt}: not a checkpoint (no config.json); pass a folder that train.py or SimCSE wrote"
    )
    damaged = tmp_path / "damaged"
    shutil.copytree(bad_models["truncated_safetensors"], damaged)
    assert simcse_to_huggingface.main(["--path", str(damaged)]) == 2
    assert capsys.readouterr().err.strip().startswith(f"error: {damaged}/model.safetensors: weights cannot be read")


def test_converter_leaves_a_converted_folder_alone(tiny_bert_dir, tmp_path, capsys):
    folder = tmp_path / "model"
    shutil.copytree(tiny_bert_dir, folder)
    assert simcse_to_huggingface.main(["--path", str(folder), "--pooler", "avg"]) == 0
    capsys.readouterr()
    before = {p: (p.read_bytes(), p.stat().st_mtime_ns) for p in folder.rglob("*") if p.is_file()}
    assert simcse_to_huggingface.main(["--path", str(folder)]) == 0
    assert capsys.readouterr().out.strip() == (
        f"{folder}: already converted (HF and sentence-transformers format, model card); nothing changed"
    )
    after = {p: (p.read_bytes(), p.stat().st_mtime_ns) for p in folder.rglob("*") if p.is_file()}
    assert after == before
    assert simcse_to_huggingface.main(["--path", str(folder), "--pooler", "cls_before_pooler"]) == 0  # a change
    assert "already converted" not in capsys.readouterr().out


# --- the tool ----------------------------------------------------------------------------------------------------


def test_tool_input_doors(tiny_bert_dir, tiny_roberta_dir):
    tool = SimCSE(str(tiny_bert_dir), device="cpu", pooler="avg")
    with pytest.raises(TypeError, match=r"^encode: sentence 1 is a int, not a str; pass a str or a list of str$"):
        tool.encode(["fine", 3])
    with pytest.raises(TypeError, match=r"^encode: expected a str or a list of str, got bytes$"):
        tool.encode(b"bytes")
    with pytest.raises(TypeError, match=r"^encode: expected a str or a list of str, got int$"):
        tool.encode(7)
    tool.build_index([], use_faiss=False)
    with pytest.raises(ValueError, match=r"^the index is empty: build_index\(\.\.\.\) was given no sentences$"):
        tool.search("anything")
    tool.build_index(["a man plays", "a dog runs"], use_faiss=False)
    tool.index["sentences"].append("not indexed")
    with pytest.raises(ValueError, match=r"^the index holds 2 vectors for 3 sentences: rebuild it"):
        tool.search("a man")
    other = SimCSE(str(tiny_roberta_dir), device="cpu", pooler="avg")
    other.index = {"sentences": ["x"], "index": type(tool.index["index"])(16)}
    other.index["index"].add(torch.zeros(1, 16).numpy())
    with pytest.raises(ValueError, match=r"holds 16-dimensional vectors but .* gives 32: rebuild it"):
        other.search("x")


# --- interruption, in-process -----------------------------------------------------------------------------------


def test_resume_command_drops_overwrite():
    argv = ["--output_dir", "o", "--overwrite_output_dir", "--seed", "1", "--overwrite_output_dir", "True", "--x"]
    assert resume_command(argv) == "python train.py --output_dir o --seed 1 --x"
    assert resume_command(["--overwrite_output_dir=true", "--a", "b c"]) == "python train.py --a 'b c'"


class _SignalAt(TrainerCallback):
    """Sends ``signum`` to this very process when ``step`` ends (what a user's ``kill`` does)."""

    def __init__(self, step: int, signum: int) -> None:
        self.step, self.signum = step, signum

    def on_step_end(self, args, state, control, **kwargs):
        if state.global_step == self.step:
            os.kill(os.getpid(), self.signum)


def test_sigterm_stops_at_the_next_step_with_a_checkpoint(tiny_bert_dir, good_txt, tmp_path, monkeypatch):
    class Trainer(train.CLTrainer):
        def __init__(self, *args, **kwargs):
            super().__init__(*args, **kwargs)
            self.add_callback(_SignalAt(2, signal.SIGTERM))

    monkeypatch.setattr(train, "CLTrainer", Trainer)
    before = signal.getsignal(signal.SIGTERM), signal.getsignal(signal.SIGINT)
    out = tmp_path / "out"
    args = train_args(tiny_bert_dir, good_txt, out, "--max_steps", "6", "--overwrite_output_dir")
    with pytest.raises(TrainingInterrupted) as info:
        train.main(args)
    stop = info.value
    # The callback signalled while step 2 ended, after the stop check of that step: the run stops after step 3.
    assert (stop.signum, stop.exit_code, stop.step) == (signal.SIGTERM, 143, 3)
    assert stop.checkpoint == str(out / "checkpoint-3") and (out / "checkpoint-3" / COMPLETE_MARKER).is_file()
    assert str(stop) == (
        f"stopped by SIGTERM after step 3: complete checkpoint {out / 'checkpoint-3'}; "
        "final save and evaluation skipped"
    )
    assert "--overwrite_output_dir" not in stop.command and stop.command.startswith("python train.py ")
    assert not (out / "model.safetensors").exists() and not (out / RUN_COMPLETE_MARKER).exists()
    assert (signal.getsignal(signal.SIGTERM), signal.getsignal(signal.SIGINT)) == before  # handlers restored
