"""Reproducibility on CPU: two runs with the same seed give identical losses, identical SentEval dev numbers
and identical weights; a different seed does not (so the comparison can fail); ``simcse_run.json`` records
the seed, the library versions and every argument of the run."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file

import train

WORDS = "a man woman dog cat plays eats runs guitar food park fast slow red blue the".split()


def sentence(i: int) -> str:
    return " ".join(WORDS[(i * k + 3) % len(WORDS)] for k in range(1, 4 + i % 5))


def make_senteval_dev(root: Path) -> Path:
    """The two files in-training evaluation reads: STS-B dev and SICK trial (12 scored pairs each)."""
    stsb, sick = root / "STS" / "STSBenchmark", root / "SICK"
    stsb.mkdir(parents=True)
    sick.mkdir()
    rows = [
        f"main-captions\tMSRvid\t2012test\t{i:04d}\t{(i * 7) % 6}.0\t{sentence(i)}\t{sentence(i + 5)}"
        for i in range(12)
    ]
    (stsb / "sts-dev.csv").write_text("\n".join(rows) + "\n", encoding="utf-8")
    rows = ["pair_ID\tsentence_A\tsentence_B\trelatedness_score\tentailment_judgment"]
    rows += [f"{i}\t{sentence(i + 1)}\t{sentence(i + 9)}\t{1 + (i * 5) % 4}.0\tNEUTRAL" for i in range(12)]
    (sick / "SICK_trial.txt").write_text("\n".join(rows) + "\n", encoding="utf-8")
    return root


@pytest.fixture(scope="module")
def inputs(tmp_path_factory) -> tuple[Path, Path]:
    root = tmp_path_factory.mktemp("repro")
    train_file = root / "train.txt"
    train_file.write_text("\n".join(f"{sentence(i)} {i}" for i in range(32)) + "\n", encoding="utf-8")
    return train_file, make_senteval_dev(root / "downstream")


def run(model_dir: Path, inputs: tuple[Path, Path], out: Path, seed: int) -> Path:
    """4 steps with dropout, evaluated on the synthetic dev sets at steps 2 and 4."""
    train_file, senteval = inputs
    train.main([
        "--model_name_or_path", str(model_dir), "--train_file", str(train_file), "--output_dir", str(out),
        "--per_device_train_batch_size", "8", "--max_steps", "4", "--learning_rate", "1e-3", "--max_seq_length", "16",
        "--eval_strategy", "steps", "--eval_steps", "2", "--save_strategy", "no", "--logging_steps", "1",
        "--senteval_data_dir", str(senteval), "--use_cpu", "--seed", str(seed), "--report_to", "none",
        "--disable_tqdm", "true", "--plot_training", "false", "--do_train",
    ])  # fmt: skip
    return out


def history(out: Path) -> tuple[list[tuple[int, float]], list[dict[str, float]]]:
    """(step, loss) pairs and the eval entries without their runtimes (wall-clock, not results)."""
    log = json.loads((out / "log_history.json").read_text(encoding="utf-8"))
    losses = [(e["step"], e["loss"]) for e in log if "loss" in e]
    evals = [
        {k: v for k, v in e.items() if "runtime" not in k and "per_second" not in k}
        for e in log
        if "eval_stsb_spearman" in e
    ]
    return losses, evals


@pytest.fixture(scope="module")
def runs(tiny_bert_dir, inputs, tmp_path_factory) -> dict[str, Path]:
    root = tmp_path_factory.mktemp("repro_runs")
    return {
        "a": run(tiny_bert_dir, inputs, root / "a", seed=5),
        "b": run(tiny_bert_dir, inputs, root / "b", seed=5),
        "other_seed": run(tiny_bert_dir, inputs, root / "c", seed=6),
    }


def test_same_seed_gives_identical_losses_and_eval_numbers(runs):
    losses_a, evals_a = history(runs["a"])
    losses_b, evals_b = history(runs["b"])
    assert [s for s, _ in losses_a] == [1, 2, 3, 4]
    assert [e["step"] for e in evals_a] == [2, 4]
    assert {"eval_stsb_spearman", "eval_sickr_spearman", "eval_avg_sts", "eval_align", "eval_uniform"} <= set(
        evals_a[0]
    )
    assert losses_a == losses_b  # exact: same seed, same dropout masks, same batches
    assert evals_a == evals_b
    wa, wb = load_file(runs["a"] / "model.safetensors"), load_file(runs["b"] / "model.safetensors")
    assert wa.keys() == wb.keys() and all(torch.equal(wa[k], wb[k]) for k in wa)


def test_another_seed_gives_other_losses(runs):
    """The control: the comparison above is sensitive to the seed (dropout masks and batch order)."""
    losses_a, _ = history(runs["a"])
    losses_c, _ = history(runs["other_seed"])
    assert [loss for _, loss in losses_a] != pytest.approx([loss for _, loss in losses_c], rel=1e-6)


def test_run_record_holds_seed_versions_and_arguments(runs, tiny_bert_dir, inputs):
    record = json.loads((runs["a"] / "simcse_run.json").read_text(encoding="utf-8"))
    assert record["seed"] == 5 and record["training_args"]["seed"] == 5
    assert {"python", "platform", "torch", "transformers", "datasets"} <= set(record["versions"])
    assert record["versions"]["torch"] == torch.__version__
    assert record["model_args"]["model_name_or_path"] == str(tiny_bert_dir)
    assert record["model_args"]["pooler_type"] == "cls" and record["model_args"]["temp"] == 0.05  # defaults too
    assert record["data_args"]["train_file"] == str(inputs[0]) and record["data_args"]["max_seq_length"] == 16
    assert record["training_args"]["learning_rate"] == 1e-3 and record["training_args"]["max_steps"] == 4
    argv = record["argv"]
    assert argv[0] == "train.py" and argv[argv.index("--seed") + 1] == "5"  # the parsed command line, not pytest's
