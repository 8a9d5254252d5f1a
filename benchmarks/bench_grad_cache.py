"""Gradient caching (``train.py --gradient_cache_batch_size``): peak training memory and sentences/s, with and
without caching, at batch 64 / 256 / 512.

    python -m benchmarks.bench_grad_cache                          # all-MiniLM-L6-v2 on the CPU, chunk 64
    python -m benchmarks.bench_grad_cache --device cuda            # peak allocated CUDA memory instead of RSS
    python -m benchmarks.bench_grad_cache --batches 64 256 --steps 2 --threads 2

Each configuration runs in fresh processes (``--child``), so one configuration's allocator state or peak
never leaks into the next. In a child: the model (train.py's unsupervised recipe, its speed defaults) and
fused AdamW are built, one warm-up step on 2 examples creates the gradients and the optimizer state, and the
*footprint* is taken (CPU: resident set size; CUDA: allocated bytes). The *time* child then runs ``--steps``
+ 1 full-batch steps (the first untimed). On the CPU a second, *memory* child runs full-batch steps over the
first ``max(--batches)`` sentences (the same sentences for every configuration) with glibc's mmap threshold
fixed (:data:`LIVE_MEMORY_ENV`), so that freed activations leave the resident set and its peak
(``ru_maxrss``) is the live peak; on CUDA the time child's ``max_memory_allocated`` is that already.
Reported: peak - footprint (the memory a step needs beyond the model, its gradients and the optimizer state:
activations, or one chunk's with caching), its ratio to the plain batch-64 step's, the same under glibc's
default allocator (what ``top`` shows: freed memory kept in the heap counts), and sentences (examples) per
second, with the cached/plain time ratio per batch. With caching, one more step checks that each re-encoded
chunk's two passes give bitwise the same vectors on this device (``replay_bitwise``: same dropout masks,
kernels and branches).

Goals (issue 21): with caching, peak at batch 512 within 1.3x of the plain batch-64 peak; time per sentence
within 1.3x of the plain step at the same batch.
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import subprocess
import sys
import time
from pathlib import Path

import torch

from benchmarks.common import (
    add_model_data_args,
    machine_info,
    median,
    model_label,
    print_json_line,
    print_table,
    read_sentences,
    resolve_model_arg,
    set_threads,
    trainer_optimizer,
)
from benchmarks.harness import make_model, optimizer_step, unsup_dataset

MIB = 1 << 20


def _rss_bytes() -> int:
    """Current resident set size (Linux /proc; 0 where unavailable)."""
    try:
        with open("/proc/self/statm", encoding="ascii") as fh:
            return int(fh.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")
    except OSError:
        return 0


def _max_rss_bytes() -> int:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024  # KiB on Linux


def _replay_is_bitwise(model, optimizer, inputs: dict[str, torch.Tensor], chunk: int) -> bool:
    """After the measurement: do both passes of every re-encoded chunk give bitwise the same vectors on this
    device? Three chunks (of ``chunk`` examples, fewer if the batch is smaller): 0 and 1 are encoded twice,
    2 once (its graph is kept)."""
    from simcse.grad_cache import cached_contrastive_loss

    rows = min(3 * chunk, inputs["input_ids"].size(0))
    part, size = {k: v[:rows] for k, v in inputs.items()}, -(-rows // 3)
    seen: list[torch.Tensor] = []
    hook = model.register_forward_hook(lambda _m, _a, out: seen.append(out.detach().clone()))
    optimizer_step(optimizer, lambda: cached_contrastive_loss(model, part, size).loss)
    hook.remove()
    return len(seen) == 5 and all(torch.equal(a, b) for a, b in zip(seen[:2], seen[3:]))


def run_child(args: argparse.Namespace) -> dict:
    """One configuration (``--batch``, ``--chunk``; 0 = plain step) in this process; returns its record.

    ``--measure time``: ``--steps`` timed steps after one untimed one, the peak as this process's allocator
    leaves it, and the replay check. ``--measure memory``: steps of ``--batch`` over the first
    ``--memory_sentences`` sentences (the largest batch: every configuration then sees the same sentences, and
    a plain batch-64 run meets the longest of the 64-sentence groups that are the chunks of batch 512), only
    the peak (the parent runs this child with glibc's mmap threshold fixed, so the resident size follows the
    live tensors).
    """
    from transformers import AutoTokenizer

    from simcse.data import SimCSECollator
    from simcse.grad_cache import cached_contrastive_loss

    threads = set_threads(args.threads)
    device = torch.device(args.device)
    torch.manual_seed(0)
    tokenizer = AutoTokenizer.from_pretrained(args.model)
    n_steps = args.steps + 1 if args.measure == "time" else max(1, -(-args.memory_sentences // args.batch))
    dataset = unsup_dataset(tokenizer, read_sentences(args.data, limit=max(args.batch * n_steps, 2)), args.max_len)
    collate = SimCSECollator(tokenizer)
    model = make_model(args.model, device=device)
    optimizer = trainer_optimizer(model.parameters(), lr=3e-5)

    def batch(start: int, size: int) -> dict[str, torch.Tensor]:
        rows = [dataset[(start + i) % len(dataset)] for i in range(size)]
        return {k: v.to(device) for k, v in collate(rows).items()}

    def step(inputs: dict[str, torch.Tensor]) -> torch.Tensor:
        if args.chunk:
            return optimizer_step(optimizer, lambda: cached_contrastive_loss(model, inputs, args.chunk).loss)
        return optimizer_step(optimizer, lambda: model(**inputs).loss)

    step(batch(0, 2))  # warm-up: gradients and optimizer state exist from here on
    cuda = device.type == "cuda"
    if cuda:
        torch.cuda.synchronize(device)
        torch.cuda.reset_peak_memory_stats(device)
    footprint = torch.cuda.memory_allocated(device) if cuda else _rss_bytes()
    inputs = [batch(i * args.batch, args.batch) for i in range(n_steps)]
    times = []
    for inp in inputs:
        t0 = time.perf_counter()
        float(step(inp).detach())  # waits for the device
        times.append(time.perf_counter() - t0)
    peak = torch.cuda.max_memory_allocated(device) if cuda else _max_rss_bytes()
    record = {
        "bench": "grad_cache", "measure": args.measure, "batch": args.batch, "chunk": args.chunk,
        "device": str(device), "threads": threads, "memory": "cuda_allocated" if cuda else "rss",
        "malloc_mmap_threshold": os.environ.get("MALLOC_MMAP_THRESHOLD_", "glibc default (dynamic)"),
        "footprint_mib": round(footprint / MIB, 1), "peak_mib": round(peak / MIB, 1),
        "step_mib": round((peak - footprint) / MIB, 1),
    }  # fmt: skip
    if args.measure == "time":
        per_step = median(times[1:])  # the first full-size step is untimed (one-time allocations, thread pools)
        bitwise = _replay_is_bitwise(model, optimizer, inputs[0], args.chunk) if args.chunk else None
        record.update(s_per_step=round(per_step, 3), sentences_per_s=round(args.batch / per_step, 1),
                      steps_timed=len(times) - 1, replay_bitwise=bitwise)
    return record


# glibc returns a freed block to the OS only if it was mmap'ed, and its default threshold for mmap grows with
# the blocks freed, so after a few steps freed activations stay in the heap and a peak RSS counts them
# (measured: ~280 MB of a 700 MB batch-64 step). Fixed thresholds (mallopt(3)) make every buffer of 128 KiB or
# more its own mapping, unmapped on free: the resident size then follows the live tensors. Page faults make
# that slow, so only the memory children run with it.
LIVE_MEMORY_ENV = {"MALLOC_MMAP_THRESHOLD_": "131072", "MALLOC_TRIM_THRESHOLD_": "131072"}


def _child_command(args: argparse.Namespace, batch: int, chunk: int, measure: str) -> list[str]:
    cmd = [
        sys.executable, "-m", "benchmarks.bench_grad_cache", "--child", "--batch", str(batch), "--chunk", str(chunk),
        "--model", args.model, "--data", str(args.data), "--max_len", str(args.max_len), "--steps", str(args.steps),
        "--device", args.device, "--measure", measure, "--memory_sentences", str(max(args.batches)),
    ]  # fmt: skip
    if args.threads:
        cmd += ["--threads", str(args.threads)]
    return cmd


def run_configuration(args: argparse.Namespace, batch: int, chunk: int) -> dict:
    """The time child, then (CPU) the memory child; one record: the live-memory step MiB as ``step_mib``, the
    time child's default-allocator figure as ``step_rss_default_mib``."""
    root = Path(__file__).resolve().parent.parent
    env = {k: v for k, v in os.environ.items() if k not in LIVE_MEMORY_ENV}  # the time child: glibc's defaults
    env["PYTHONPATH"] = os.pathsep.join([str(root), os.environ.get("PYTHONPATH", "")])
    measures = ["time"] if args.device.startswith("cuda") else ["time", "memory"]
    got = {}
    for measure in measures:
        extra = LIVE_MEMORY_ENV if measure == "memory" else {}
        done = subprocess.run(_child_command(args, batch, chunk, measure), cwd=root, capture_output=True,
                              text=True, timeout=args.timeout, env={**env, **extra})  # fmt: skip
        if done.returncode != 0:
            raise RuntimeError(f"batch {batch} chunk {chunk} ({measure}) failed:\n{done.stderr[-2000:]}")
        got[measure] = json.loads([ln for ln in done.stdout.splitlines() if ln.startswith("{")][-1])
    record = dict(got["time"])
    if "memory" in got:
        mem = got["memory"]
        record.update(step_rss_default_mib=record["step_mib"], step_mib=mem["step_mib"],
                      footprint_mib=mem["footprint_mib"], peak_mib=mem["peak_mib"], memory="rss_live")
    record.pop("measure", None)
    record.pop("malloc_mmap_threshold", None)
    return record


def run_order(batches: list[int], chunk: int) -> list[tuple[int, int]]:
    """(batch, chunk) configurations, the goals' first: the smallest batch plain and cached, the largest cached,
    then the rest (so a run stopped early still has the memory goal's two numbers)."""
    small, large = min(batches), max(batches)
    first = [(small, 0), (small, chunk), (large, chunk)]
    rest = [(b, c) for b in sorted(batches) for c in (0, chunk) if (b, c) not in first]
    return list(dict.fromkeys(first + rest))


def summarise(records: list[dict]) -> list[list]:
    """Table rows: batch, caching, step memory (live), its ratio to the plain batch-64 (smallest plain) step, the
    default allocator's step memory, sentences/s, and the cached/plain time-per-sentence ratio at the same batch."""
    plain = {r["batch"]: r for r in records if not r["chunk"]}
    base = plain[min(plain)]["step_mib"] if plain else None
    rows = []
    for r in sorted(records, key=lambda r: (r["batch"], r["chunk"])):
        mem_ratio = f"{r['step_mib'] / base:.2f}" if base else "-"
        peer = plain.get(r["batch"])
        time_ratio = f"{peer['sentences_per_s'] / r['sentences_per_s']:.2f}" if (r["chunk"] and peer) else "-"
        caching = f"chunk {r['chunk']}" if r["chunk"] else "off"
        bitwise = "-" if r.get("replay_bitwise") is None else ("yes" if r["replay_bitwise"] else "NO")
        rows.append([r["batch"], caching, r["step_mib"], mem_ratio, r.get("step_rss_default_mib", "-"),
                     r["sentences_per_s"], time_ratio, bitwise])
    return rows


def main(argv: list[str] | None = None) -> list[dict]:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    add_model_data_args(parser)
    parser.add_argument("--batches", type=int, nargs="+", default=[64, 256, 512])
    parser.add_argument("--chunk", type=int, default=64, help="gradient-cache chunk (examples); child: 0 = plain")
    parser.add_argument("--max_len", type=int, default=32)
    parser.add_argument("--steps", type=int, default=2, help="timed full-batch steps per configuration")
    parser.add_argument("--threads", type=int, default=None)
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--timeout", type=float, default=900.0, help="seconds per configuration")
    parser.add_argument("--out", default=None, help="also write the records to this JSON file")
    parser.add_argument("--child", action="store_true", help=argparse.SUPPRESS)
    parser.add_argument("--batch", type=int, default=64, help=argparse.SUPPRESS)
    parser.add_argument("--measure", choices=["time", "memory"], default="time", help=argparse.SUPPRESS)
    parser.add_argument("--memory_sentences", type=int, default=0, help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    resolve_model_arg(parser, args)
    if args.child:
        record = run_child(args)
        print_json_line(record)
        return [record]
    records = []
    for batch, chunk in run_order(args.batches, args.chunk):
        print(f"batch {batch}, {'chunk ' + str(chunk) if chunk else 'plain'} ...", file=sys.stderr, flush=True)
        records.append(run_configuration(args, batch, chunk))
        print_json_line(records[-1])  # each record as soon as it is measured: a stopped run keeps what it has
    headers = ["batch", "grad cache", "step MiB (peak - footprint)", "x plain b64", "step MiB, default malloc",
               "sentences/s", "time x plain", "replay bitwise"]
    memory = "peak allocated CUDA memory" if args.device.startswith("cuda") else "live peak RSS"
    print_table(headers, summarise(records), title=f"{model_label(args.model)}, {args.device}, {memory}, "
                f"len {args.max_len}, threads {records[0]['threads']}")  # fmt: skip
    summary = {"bench": "grad_cache_summary", "machine": machine_info(), "records": records}
    print_json_line(summary)
    if args.out:
        Path(args.out).write_text(json.dumps(summary, indent=1), encoding="utf-8")
    return records


if __name__ == "__main__":
    main()
