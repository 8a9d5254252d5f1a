"""Plots of the studies: Figure 2 (alignment vs uniformity trajectories) and ours-vs-paper bars."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from studies.spec import Study

_COLOURS = ("tab:blue", "tab:orange", "tab:green", "tab:red", "tab:purple", "tab:brown", "tab:pink", "tab:gray")


def _figure():
    # Agg canvas on a bare Figure: no pyplot state, no display needed.
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    fig = Figure(figsize=(7, 5.5))
    FigureCanvasAgg(fig)
    return fig


def figure2(study: Study, results: Sequence[Mapping[str, Any]], path: Path, dpi: int = 130) -> Path:
    """The paper's Figure 2: one trajectory per setting in the (uniformity, alignment) plane, arrows in step
    order, from the first seed's evaluations (the step-0 point is the starting model, common to all)."""
    fig = _figure()
    ax = fig.add_subplot()
    for colour, cell in zip(_COLOURS, study.cells):
        runs = sorted((r for r in results if r["cell"] == cell.name), key=lambda r: r["seed"])
        points = [e for e in (runs[0].get("curve", []) if runs else []) if "eval_align" in e]
        if not points:
            continue
        xs = [e["eval_uniform"] for e in points]
        ys = [e["eval_align"] for e in points]
        ax.plot(xs, ys, color=colour, linewidth=0.8, alpha=0.5)
        for i in range(len(points) - 1):
            ax.annotate("", xy=(xs[i + 1], ys[i + 1]), xytext=(xs[i], ys[i]),
                        arrowprops={"arrowstyle": "->", "color": colour, "lw": 1.4})
        ax.scatter(xs, ys, color=colour, s=14, zorder=3, label=f"{cell.label} (steps {points[0]['step']}-"
                   f"{points[-1]['step']})")
        ax.scatter(xs[:1], ys[:1], s=90, facecolors="none", edgecolors="black", lw=1, zorder=4)  # start
    ax.scatter([], [], s=90, facecolors="none", edgecolors="black", lw=1, label="first evaluation")
    ax.set_xlabel(r"$\ell_{\mathrm{uniform}}$ (lower is better)")
    ax.set_ylabel(r"$\ell_{\mathrm{align}}$ (lower is better)")
    ax.set_title("Alignment vs uniformity on STS-B dev during training (arrows: step order)", fontsize=10)
    ax.legend(loc="best", fontsize=8)
    ax.grid(alpha=0.3)
    fig.tight_layout()
    fig.savefig(path, dpi=dpi)
    return path


def bars(study: Study, cells: Mapping[str, Mapping[str, Any]], path: Path, dpi: int = 110) -> Path:
    """STS-B dev per setting: ours (mean, with the std over seeds as error bar) beside the paper's."""
    fig = _figure()
    ax = fig.add_subplot()
    rows = [c for c in study.cells if c.available]
    xs = range(len(rows))
    ours = [cells.get(c.name, {}).get("stsb_dev", {}) for c in rows]
    ax.bar([x - 0.2 for x in xs], [o.get("mean", 0.0) for o in ours], width=0.4,
           yerr=[o.get("std", 0.0) for o in ours], label="ours", color="tab:blue")
    ax.bar([x + 0.2 for x in xs], [c.paper.get("stsb_dev", 0.0) for c in rows], width=0.4, label="paper (BERT-base)",
           color="tab:gray")
    ax.set_xticks(list(xs), [c.label for c in rows], rotation=35, ha="right", fontsize=8)
    ax.set_ylabel("STS-B dev Spearman x100")
    values = [o.get("mean") for o in ours if o] + [c.paper["stsb_dev"] for c in rows if "stsb_dev" in c.paper]
    if values:
        ax.set_ylim(max(0.0, min(values) - 5), min(100.0, max(values) + 3))
    ax.set_title(f"{study.title} ({study.source})", fontsize=10)
    ax.legend(loc="lower right")
    ax.grid(axis="y", alpha=0.3)
    fig.tight_layout()
    fig.savefig(path, dpi=dpi)
    return path
