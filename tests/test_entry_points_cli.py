"""Every command line as a user runs it: ``--help`` prints its flags, and one bad input per entry point gives one
``error:`` line, exit status 2 and no traceback (docs/RELIABILITY.md, "Entry points").

``--help`` runs in-process for each CLI (the parser is the whole path; ``train.py --help`` once failed in
argparse's own formatting of a help string); the bad inputs run ``python <script>`` as subprocesses.
"""

from __future__ import annotations

import importlib.util
import sys
from pathlib import Path

import pytest

from tests.cli_runs import CliBatch

REPO_ROOT = Path(__file__).resolve().parent.parent
BENCH_DIR = REPO_ROOT / "benchmarks"

# script -> flags its --help must list
HELP_CASES = {
    "train.py": ["--model_name_or_path", "--train_file", "--output_dir", "--pooler_type", "--length_buckets"],
    "evaluation.py": ["--model_name_or_path", "--pooler", "--mode", "--task_set", "--tasks", "--data_dir"],
    "simcse_to_huggingface.py": ["--path", "--pooler", "--no_sentence_transformers", "--drop_mlm_head"],
    "benchmarks/bench_eval.py": ["--data_dir", "--batch_size", "--device"],
    "benchmarks/bench_features.py": ["--model", "--data", "--batch_size"],
    "benchmarks/bench_gpu.py": ["--batch_sizes", "--max_seq_len", "--min_len"],
    "benchmarks/bench_train_cpu.py": ["--model", "--data", "--batch_size"],
    "benchmarks/exactness_sts.py": ["--model", "--data_dir", "--poolers"],
    "benchmarks/gpu_train_epoch.py": ["--train_file", "--senteval_data_dir", "--tokenizer"],
    "benchmarks/transfer_vs_sklearn.py": ["--model", "--data_dir", "--pooler"],
}


def _load(script: str):
    path = REPO_ROOT / script
    if str(path.parent) not in sys.path:
        sys.path.insert(0, str(path.parent))
    name = f"_help_{path.stem}"
    spec = importlib.util.spec_from_file_location(name, path)
    module = importlib.util.module_from_spec(spec)
    sys.modules[name] = module  # dataclasses look their module up in sys.modules
    spec.loader.exec_module(module)
    return module


@pytest.mark.parametrize("script", sorted(HELP_CASES))
def test_help_prints_the_flags(script, capsys, monkeypatch):
    module = _load(script)
    monkeypatch.setattr(sys, "argv", [script, "--help"])
    with pytest.raises(SystemExit) as info:
        module.main(["--help"]) if _takes_argv(module.main) else module.main()
    assert info.value.code == 0
    out = capsys.readouterr().out
    assert out.startswith("usage: ")
    for flag in HELP_CASES[script]:
        assert flag in out, flag


def _takes_argv(fn) -> bool:
    import inspect

    return bool(inspect.signature(fn).parameters)


def assert_one_line(code: int, stderr: str, expected: str) -> None:
    assert code == 2, stderr[-3000:]
    assert "Traceback" not in stderr
    errors = [ln for ln in stderr.splitlines() if "error:" in ln]
    assert errors == [expected], stderr[-3000:]


@pytest.fixture(scope="module")
def cli(tiny_bert_dir, tmp_path_factory):
    """The bad inputs of every entry point, started together (tests/cli_runs.py); ``cli.paths``: their inputs."""
    import shutil

    from tests.test_bad_inputs import eval_args, make_sts12, train_args

    root = tmp_path_factory.mktemp("cli")
    batch = CliBatch(root)
    train_file = root / "t.txt"
    train_file.write_text("a sentence\n")
    batch.start("no_model", "train.py", *train_args("/nonexistent/model", train_file, root / "out"))
    folder = root / "model"
    shutil.copytree(tiny_bert_dir, folder)
    weights = folder / "model.safetensors"
    data = weights.read_bytes()
    weights.write_bytes(data[: len(data) // 2])  # an interrupted copy
    argv = eval_args(folder, make_sts12(root / "downstream"))
    batch.start("damaged", "evaluation.py", *argv)
    batch.start("damaged_debug", "evaluation.py", *argv, env_extra={"SIMCSE_DEBUG": "1"})
    photos = root / "photos"
    photos.mkdir()
    batch.start("not_a_checkpoint", "simcse_to_huggingface.py", "--path", str(photos))
    batch.paths = {"weights": weights, "photos": photos}
    yield batch
    batch.close()


def test_cli_train_path_that_does_not_exist(cli):
    code, stderr = cli.result("no_model")
    assert_one_line(
        code,
        stderr,
        "error: /nonexistent/model: model folder not found (this is a path, not a hub id); check the path, or give "
        "a hub id of the form name or namespace/name",
    )


def test_cli_evaluation_damaged_weights(cli):
    code, stderr = cli.result("damaged")
    assert_one_line(
        code,
        stderr,
        f"error: {cli.paths['weights']}: weights cannot be read (Error while deserializing header: incomplete "
        "metadata, file not fully covered); the file is damaged or incomplete (an interrupted download or copy?): "
        "copy or download the model again",
    )
    # SIMCSE_DEBUG=1 shows the traceback (and the error type) instead
    code, stderr = cli.result("damaged_debug")
    assert code == 1 and "Traceback" in stderr and "ModelLoadError" in stderr


def test_cli_converter_not_a_checkpoint(cli):
    code, stderr = cli.result("not_a_checkpoint")
    expected = (f"error: {cli.paths['photos']}: not a checkpoint (no config.json); pass a folder that train.py or "
                "SimCSE wrote")
    assert_one_line(code, stderr, expected)

