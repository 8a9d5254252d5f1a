"""A study's outputs: the markdown table (the paper's number beside ours), the JSON file and the plots."""

from __future__ import annotations

import json
import os
import statistics
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from studies.spec import Scale, Study

METRIC_NAMES = {
    "stsb_dev": "STS-B dev",
    "transfer_dev": "transfer dev avg",
    "sts_test_avg": "STS test Avg",
    "align_start": "align (start)",
    "uniform_start": "uniform (start)",
    "align": "align (end)",
    "uniform": "uniform (end)",
}


def summarise(values: Sequence[float]) -> dict[str, float]:
    """mean, sample standard deviation (0 for one value), min, max and n of the per-seed values."""
    vals = [float(v) for v in values]
    return {
        "mean": statistics.fmean(vals),
        "std": statistics.stdev(vals) if len(vals) > 1 else 0.0,
        "min": min(vals),
        "max": max(vals),
        "n": len(vals),
    }


def aggregate(study: Study, results: Sequence[Mapping[str, Any]]) -> dict[str, dict[str, Any]]:
    """{cell name: {metric: summary}} over the seeds of each cell (cells without results are left out)."""
    cells: dict[str, dict[str, Any]] = {}
    for cell in study.cells:
        rows = [r for r in results if r["cell"] == cell.name]
        if not rows:
            continue
        cells[cell.name] = {
            m: summarise([r[m] for r in rows]) for m in study.metrics if all(m in r for r in rows)
        }
    return cells


def _fmt(summary: Mapping[str, float] | None, digits: int) -> str:
    if summary is None:
        return "-"
    if summary["n"] > 1:
        return f"{summary['mean']:.{digits}f} ± {summary['std']:.{digits}f}"
    return f"{summary['mean']:.{digits}f}"


def markdown_table(study: Study, cells: Mapping[str, Mapping[str, Any]]) -> str:
    """One row per paper row: the paper's number next to ours for every metric (mean ± std over seeds;
    min and max too when there are several seeds)."""
    several = any(s.get("n", 1) > 1 for c in cells.values() for s in c.values())
    with_paper = {m: any(m in c.paper for c in study.cells) for m in study.metrics}  # Figure 2 has no numbers
    header = ["setting"]
    for m in study.metrics:
        name = METRIC_NAMES.get(m, m)
        header += [f"{name} (paper)"] if with_paper[m] else []
        header += [f"{name} (ours)"] + ([f"{name} min", f"{name} max"] if several else [])
    header.append("note")
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    for cell in study.cells:
        ours = cells.get(cell.name, {})
        row = [cell.label]
        for m in study.metrics:
            digits = 4 if m.startswith(("align", "uniform")) else 2
            paper = cell.paper.get(m)
            if with_paper[m]:
                row.append("-" if paper is None else f"{paper:.1f}" if round(paper, 1) == paper else f"{paper:.2f}")
            summary = ours.get(m)
            row.append(_fmt(summary, digits) if cell.available else "not run")
            if several:
                row += [f"{summary['min']:.{digits}f}", f"{summary['max']:.{digits}f}"] if summary else ["-", "-"]
        note = cell.note if not cell.available else ("not run yet" if not ours else "")
        row.append(note)
        lines.append("| " + " | ".join(row) + " |")
    return "\n".join(lines)


def write_outputs(
    study: Study, scale: Scale, results: Sequence[Mapping[str, Any]], out_dir: str | os.PathLike
) -> dict[str, Path]:
    """``<study>_<scale>.md`` / ``.json`` and the plot(s) in ``out_dir``; returns {kind: path}."""
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    cells = aggregate(study, results)
    table = markdown_table(study, cells)
    stem = f"{study.name}_{scale.name}"
    md = out / f"{stem}.md"
    text = (
        f"## {study.title} ({study.source}), scale {scale.name}\n\n{scale.description}. "
        f"Paper: BERT-base, STS-B dev Spearman x100.\n\n{table}\n\n{study.reading}\n"
    )
    md.write_text(text, encoding="utf-8")
    js = out / f"{stem}.json"
    js.write_text(json.dumps({
        "study": study.name,
        "source": study.source,
        "scale": scale.name,
        "model": scale.model,
        "cells": [
            {"name": c.name, "label": c.label, "available": c.available, "note": c.note, "paper": c.paper,
             "ours": cells.get(c.name), "flags": list(c.flags)}
            for c in study.cells
        ],
        "runs": list(results),
    }, indent=1), encoding="utf-8")
    written = {"markdown": md, "json": js}
    from studies import plots

    if study.name == "figure2":
        written["plot"] = plots.figure2(study, results, out / f"{stem}.png")
    elif results:
        written["plot"] = plots.bars(study, cells, out / f"{stem}.png")
    return written
