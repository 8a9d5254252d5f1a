"""The benchmark scripts run end to end on tiny models and print a parsable JSON record.

Why: the benchmarks are only run by hand (or on a lent GPU), so without this a refactor of the library
would break them silently. Only the plumbing is checked: positive throughputs, never a timing threshold.
The scripts are run in-process (importing them from the ``benchmarks`` package) to keep the test fast.
"""

from __future__ import annotations

import argparse
import importlib
import json
import math
import subprocess
from types import ModuleType

import pytest


def _load(name: str) -> ModuleType:
    """Import ``benchmarks.<name>``, the way ``python -m benchmarks.<name>`` runs it."""
    return importlib.import_module(f"benchmarks.{name}")


def _json_records(text: str) -> list[dict]:
    records = [json.loads(line) for line in text.splitlines() if line.startswith("{") and line.endswith("}")]
    assert records, f"no JSON line in the output:\n{text}"
    return records


def _positive(x: float) -> bool:
    return isinstance(x, float) and math.isfinite(x) and x > 0


def test_gpu_bench_cpu_smoke(tmp_path, capsys):
    bench = _load("bench_gpu")
    out = tmp_path / "gpu.json"
    bench.main(["--cpu-smoke", "--out", str(out), "--profile", "bf16"])
    records = _json_records(capsys.readouterr().out)
    runs = [r for r in records if r["bench"] == "gpu_train"]
    assert {r["mode"] for r in runs} == {"fp32", "bf16"}
    for r in runs:
        assert r["status"] == "ok", r
        assert _positive(r["sentences_per_s"]) and _positive(r["model_tflops"])
        assert math.isfinite(r["last_loss"])
    (prof,) = [r["profile"] for r in runs if "profile" in r]
    assert prof["mode"] == "bf16" and prof["busy_ms_per_step"] > 0
    assert sum(prof["ms_per_step_by_class"].values()) == pytest.approx(prof["busy_ms_per_step"], abs=0.05)
    assert prof["ms_per_step_by_class"]["gemm"] > 0  # the linear layers' matmuls are found and classed
    assert records[-1]["bench"] == "gpu_summary"
    saved = json.loads(out.read_text())
    assert len(saved["records"]) == len(runs)


def test_gpu_flop_formula_and_peak():
    bench = _load("bench_gpu")
    # BERT-base encoder: 85,054,464 non-embedding parameters; 128 sequences of 32 tokens.
    flops = bench.train_flops_per_step(85_054_464, 12, 768, 128, 32)
    assert flops == pytest.approx(6 * 85_054_464 * 4096 + 12 * 12 * 32 * 768 * 4096)
    assert bench.peak_bf16_flops("NVIDIA H200") == 989e12
    assert bench.peak_bf16_flops("NVIDIA H100 PCIe") == 756e12
    assert bench.peak_bf16_flops("NVIDIA H100 80GB HBM3") == 989e12
    assert bench.peak_bf16_flops("Some other card") is None


def test_train_cpu_bench_tiny(tiny_bert_dir, tmp_path, capsys):
    data = tmp_path / "sents.txt"
    data.write_text("\n".join(f"sentence number {i} is about a cat and a dog." for i in range(40)) + "\n")
    bench = _load("bench_train_cpu")
    bench.main(
        ["--model", str(tiny_bert_dir), "--data", str(data), "--batch_size", "8", "--steps", "2", "--repeats", "1"]
        + ["--warmup", "0"]
    )
    (record,) = [r for r in _json_records(capsys.readouterr().out) if r["bench"] == "train_cpu"]
    assert _positive(record["ours_sentences_per_s"]) and _positive(record["peer_sentences_per_s"])
    assert _positive(record["ours_plain_sentences_per_s"])
    assert record["ratio_ours_over_peer"] == pytest.approx(
        record["ours_sentences_per_s"] / record["peer_sentences_per_s"]
    )
    # Same data, same maths: the default (buckets, [CLS]-only last layer) and the plain pass give close losses.
    assert record["ours_last_loss"] == pytest.approx(record["ours_plain_last_loss"], rel=0.5)
    assert math.isfinite(record["ours_last_loss"]) and math.isfinite(record["peer_last_loss"])


def test_gpu_train_epoch_cpu_smoke(shared_data, senteval_data, tmp_path, capsys):
    """train.py itself runs (tiny model, CPU); the rate is the median of its logged windows after the first,
    and the epoch projection adds 62 dev evaluations of the measured eval time."""
    bench = _load("gpu_train_epoch")
    out = tmp_path / "epoch.json"
    records = bench.main([
        "--cpu_smoke", "--train_file", str(shared_data / "wiki" / "wiki1m_sample.txt"), "--senteval_data_dir",
        str(senteval_data), "--variants", "eager_bf16", "--steps", "6", "--logging_steps", "2", "--out", str(out),
        "--timeout", "900",  # a smoke run, not a speed test: a loaded 2-core machine needs more than 240 s
    ])  # fmt: skip
    (rec,) = records
    assert rec["status"] == "ok", rec
    windows = rec["windows_sentences_per_s"]
    assert len(windows) == 3 and all(_positive(float(w)) for w in windows)
    assert rec["sentences_per_s"] == pytest.approx(sorted(windows[1:])[0] / 2 + sorted(windows[1:])[1] / 2)
    assert rec["epoch_with_evals_s"] == pytest.approx(1_000_000 / rec["sentences_per_s"] + 62 * rec["eval_runtime_s"])
    assert rec["eval_runtime_s"] > 0
    assert json.loads(out.read_text())[0]["variant"] == "eager_bf16"
    assert "1M-sentence epoch projected" in capsys.readouterr().out


def test_features_bench_tiny(tiny_bert_dir, tmp_path, capsys):
    """The feature bench runs each variant; its hook shows one encoder call per step without MLM, a
    second one only with MLM, and 4 calls over fewer positions for the length buckets."""
    data = tmp_path / "sents.txt"
    data.write_text("\n".join(("a cat " * (1 + i % 7)) + f"number {i}." for i in range(60)) + "\n")
    bench = _load("bench_features")
    argv = ["--model", str(tiny_bert_dir), "--data", str(data), "--batch_size", "8", "--repeats", "1"]
    variants = ["length_buckets_4", "cls_only_last_layer", "mlm", "mlm_full_vocab"]
    bench.main(argv + ["--encode_batches", "1", "--no-compile", "--only", *variants])
    (record,) = [r for r in _json_records(capsys.readouterr().out) if r["bench"] == "features_cpu"]
    feats = record["features"]
    assert set(feats) == {"baseline", "length_buckets_4", "cls_only_last_layer", "mlm", "mlm_full_vocab"}
    calls = {name: f["encoder_passes_per_step"] for name, f in feats.items()}
    assert calls == {"baseline": 1, "length_buckets_4": 4, "cls_only_last_layer": 1, "mlm": 2, "mlm_full_vocab": 2}
    base_positions = feats["baseline"]["encoder_positions_per_step"]
    assert base_positions == feats["baseline"]["mean_padded_tokens_per_step"]  # one pass over the padded batch
    assert feats["length_buckets_4"]["encoder_positions_per_step"] < base_positions
    assert record["ratio_mlm_masked_over_full_vocab"] == pytest.approx(
        feats["mlm"]["train_sentences_per_s"] / feats["mlm_full_vocab"]["train_sentences_per_s"]
    )


def test_harness_make_model_and_runner():
    """make_model is the one model constructor of the benchmarks: the unsup recipe plus the speed options as
    given (the caller's config untouched); a Runner cycles its batches in order and counts the examples."""
    import torch

    harness = _load("harness")
    config = harness.bert_config(tiny=True)
    model = harness.make_model(config, length_buckets=3, cls_only_last_layer=False)
    assert model.training and (model.length_buckets, model.cls_only_last_layer) == (3, False)
    assert (model.config.pooler_type, model.config.temp, model.config.mlp_only_train) == ("cls", 0.05, True)
    assert getattr(config, "pooler_type", None) is None  # the settings went into a copy

    seen: list[int] = []

    def step(batch: list[int]) -> torch.Tensor:
        seen.append(batch[0])
        return torch.tensor(float(batch[0]))

    per_step = harness.Runner("a", [[1, 1], [2, 2, 2]], step)
    assert per_step.block(3) == 2 + 3 + 2 and seen == [1, 2, 1] and per_step.losses == [1.0, 2.0, 1.0]
    per_block = harness.Runner("b", [[5], [6]], step, sync_every_step=False)
    assert per_block.block(2) == 2 and per_block.losses == [6.0]  # the loss is read once, at the block's end
    assert len(per_block.prep_s) == len(per_block.model_s) == 2


def test_grad_cache_bench_child_and_table(tiny_bert_dir, tmp_path, capsys):
    """One configuration in-process (the script runs each in a fresh process), then the table's ratios."""
    data = tmp_path / "sents.txt"
    data.write_text("\n".join(f"sentence number {i} is about a cat and a dog." for i in range(40)) + "\n")
    bench = _load("bench_grad_cache")
    (record,) = bench.main(["--child", "--model", str(tiny_bert_dir), "--data", str(data), "--batch", "8",
                            "--chunk", "3", "--steps", "1", "--threads", "1"])  # fmt: skip
    assert record["bench"] == "grad_cache" and (record["batch"], record["chunk"]) == (8, 3)
    assert record["peak_mib"] >= record["footprint_mib"] > 0 and _positive(record["sentences_per_s"])
    assert record["replay_bitwise"] is True
    assert [r for r in _json_records(capsys.readouterr().out) if r["bench"] == "grad_cache"] == [record]
    fake = [
        {"batch": 64, "chunk": 0, "step_mib": 100.0, "sentences_per_s": 50.0},
        {"batch": 64, "chunk": 64, "step_mib": 110.0, "sentences_per_s": 40.0},
        {"batch": 512, "chunk": 0, "step_mib": 800.0, "sentences_per_s": 45.0},
        {"batch": 512, "chunk": 64, "step_mib": 120.0, "sentences_per_s": 36.0, "replay_bitwise": True},
    ]
    (mem,) = bench.main(["--child", "--model", str(tiny_bert_dir), "--data", str(data), "--batch", "8",
                         "--chunk", "3", "--threads", "1", "--measure", "memory",
                         "--memory_sentences", "16"])  # fmt: skip (two steps of 8 over the same 16 sentences)
    assert mem["measure"] == "memory" and min(mem["peak_mib"], mem["footprint_mib"]) > 0 and "s_per_step" not in mem
    fake[-1]["step_rss_default_mib"] = 300.0
    rows = bench.summarise(fake)
    assert rows[-1] == [512, "chunk 64", 120.0, "1.20", 300.0, 36.0, "1.25", "yes"]  # 120/100 memory, 45/36 time
    assert rows[0][3:] == ["1.00", "-", 50.0, "-", "-"]


def test_grad_cache_bench_merges_the_time_and_the_live_memory_child(monkeypatch, tmp_path):
    """On the CPU each configuration runs a time child (default allocator) and a memory child (fixed mmap
    threshold); the record takes the memory child's step MiB and keeps the other as the default-malloc figure."""
    bench = _load("bench_grad_cache")
    calls = []

    def fake_run(cmd, env, **_kw):
        measure = cmd[cmd.index("--measure") + 1]
        calls.append((measure, env.get("MALLOC_MMAP_THRESHOLD_")))
        rec = {"bench": "grad_cache", "measure": measure, "batch": 8, "chunk": 2, "step_mib": 10.0,
               "footprint_mib": 5.0, "peak_mib": 15.0, "memory": "rss"}
        if measure == "time":
            rec.update(step_mib=30.0, peak_mib=35.0, sentences_per_s=4.0)
        return subprocess.CompletedProcess(cmd, 0, stdout="log line\n" + json.dumps(rec) + "\n", stderr="")

    monkeypatch.setattr(bench.subprocess, "run", fake_run)
    args = argparse.Namespace(model="m", data=tmp_path, max_len=8, steps=1, device="cpu", threads=1, timeout=5.0,
                              batches=[8, 16])
    record = bench.run_configuration(args, 8, 2)
    assert calls == [("time", None), ("memory", bench.LIVE_MEMORY_ENV["MALLOC_MMAP_THRESHOLD_"])]
    assert (record["step_mib"], record["step_rss_default_mib"], record["peak_mib"]) == (10.0, 30.0, 15.0)
    assert record["sentences_per_s"] == 4.0 and record["memory"] == "rss_live" and "measure" not in record


def test_data_bench_child_with_more_output_than_a_pipe_holds_does_not_hang(monkeypatch, tmp_path):
    """bench_data samples the children's memory while they run; a child printing more than a pipe buffer (a 1M-line
    map's progress bars) once blocked forever. Its output now goes to files."""
    bench = _load("bench_data")
    chatty = "import json, sys\nsys.stderr.write('x' * 300_000)\nprint(json.dumps({'seconds': 0.5, 'rows': 3}))\n"
    monkeypatch.setitem(bench.CHILD, "ours", chatty)
    (record,) = bench.run_children("ours", "unused-model", tmp_path / "corpus.txt", tmp_path)
    assert (record["seconds"], record["rows"], record["built"]) == (0.5, 3, False)
    assert record["peak_rss_mb"] > 0
