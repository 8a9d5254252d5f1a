"""Alignment and uniformity of sentence embeddings (Wang & Isola 2020; SimCSE paper section 5, figure 2).

SimCSE explains its gains through these two numbers, both lower-is-better and computed on
L2-normalised embeddings f(x):

* alignment  = E_{(x, x+) positive} ||f(x) - f(x+)||^alpha (alpha = 2): positives stay close;
* uniformity = log E_{x, y distinct} exp(-t ||f(x) - f(y)||^2) (t = 2): embeddings spread over the sphere.

On STS-B the paper takes pairs with gold score > 4 (of 5) as positives and all sentences for uniformity.
:func:`plot_training` draws the trajectory of both during training, as in the paper's figure 2.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F


def alignment(x: torch.Tensor, y: torch.Tensor, alpha: float = 2) -> torch.Tensor:
    """Mean ||f(x_i) - f(y_i)||^alpha over the positive pairs (x_i, y_i); inputs are normalised here.

    x, y: (n, H) -> scalar tensor.
    """
    if x.shape != y.shape or x.dim() != 2 or x.shape[0] == 0:
        raise ValueError(f"alignment needs two non-empty (n, H) tensors of equal shape, got {x.shape} and {y.shape}")
    x, y = F.normalize(x.float(), dim=1), F.normalize(y.float(), dim=1)
    return (x - y).norm(p=2, dim=1).pow(alpha).mean()


def uniformity(x: torch.Tensor, t: float = 2) -> torch.Tensor:
    """log of the mean of exp(-t ||f(x_i) - f(x_j)||^2) over all pairs i < j; inputs are normalised here.

    x: (n, H) with n >= 2 -> scalar tensor. Uses logsumexp for stability (the mean of tiny exps).
    """
    if x.dim() != 2 or x.shape[0] < 2:
        raise ValueError(f"uniformity needs an (n, H) tensor with n >= 2, got {tuple(x.shape)}")
    x = F.normalize(x.float(), dim=1)
    sq = torch.pdist(x, p=2).pow(2)  # (n(n-1)/2,) distinct pairs
    return torch.logsumexp(-t * sq, dim=0) - torch.log(torch.tensor(float(sq.numel())))


def read_stsb(data_dir: str | os.PathLike[str], split: str = "test") -> tuple[list[str], list[str], list[float]]:
    """STS-B pairs of one split: (sentences1, sentences2, gold scores in [0, 5]), read by SentEval's own
    STS-B reader (the one evaluation uses; a malformed line is a one-line ``DataError``).

    data_dir: SentEval's ``downstream`` folder, its ``STS`` folder, or the ``STSBenchmark`` folder itself.
    Sentences are SentEval's tokens joined by single spaces, as the SentEval batcher embeds them.
    """
    from senteval.sts import load_stsb_split

    if split not in ("train", "dev", "test"):
        raise ValueError(f"split must be train, dev or test, got {split!r}")
    root = Path(data_dir)
    for candidate in (root, root / "STSBenchmark", root / "STS" / "STSBenchmark"):
        if (candidate / f"sts-{split}.csv").is_file():
            break
    else:
        raise FileNotFoundError(f"sts-{split}.csv not found under {root} (expected STS/STSBenchmark/)")
    sa, sb, gold = load_stsb_split(candidate, split)
    return [" ".join(t) for t in sa], [" ".join(t) for t in sb], [float(g) for g in gold]


def stsb_alignment_uniformity(
    embed_fn: Callable[[list[str]], torch.Tensor],
    data_dir: str | os.PathLike[str],
    split: str = "test",
    positive_threshold: float = 4.0,
) -> dict[str, float]:
    """Alignment over STS-B pairs with gold score > ``positive_threshold``; uniformity over the split's
    distinct sentences (duplicates would add zero-distance pairs that only measure repetition).

    embed_fn: list of n sentences -> (n, H) tensor. Returns {'align', 'uniform', 'num_pairs', 'num_sentences'}.
    """
    s1, s2, scores = read_stsb(data_dir, split)
    pos = [i for i, s in enumerate(scores) if s > positive_threshold]
    sentences = list(dict.fromkeys(s1 + s2))
    emb = torch.as_tensor(embed_fn(sentences)).float()  # (u, H)
    row = {s: i for i, s in enumerate(sentences)}
    x = emb[[row[s1[i]] for i in pos]]  # (p, H)
    y = emb[[row[s2[i]] for i in pos]]  # (p, H)
    return {
        "align": float(alignment(x, y)),
        "uniform": float(uniformity(emb)),
        "num_pairs": float(len(pos)),
        "num_sentences": float(len(sentences)),
    }


def _axes(figsize: tuple[float, float]):
    """A bare Figure on an Agg canvas and its one Axes: no pyplot global state, no display needed, and the
    caller's matplotlib backend is left alone."""
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    fig = Figure(figsize=figsize)
    FigureCanvasAgg(fig)
    return fig, fig.add_subplot()


def _save(fig, ax, title: str, path: Path, dpi: int) -> Path:
    ax.set_title(title)
    ax.legend(loc="best")
    ax.grid(alpha=0.3)
    fig.tight_layout()
    fig.savefig(path, dpi=dpi)
    return path


def _plot_align_uniform(entries: Sequence[Mapping[str, Any]], path: Path, dpi: int) -> Path:
    """Uniformity (x) against alignment (y) per evaluation, arrows in step order (paper figure 2)."""
    steps = [e["step"] for e in entries]
    ux = [e["eval_uniform"] for e in entries]
    ay = [e["eval_align"] for e in entries]
    fig, ax = _axes((6, 5))
    ax.plot(ux, ay, color="0.6", linewidth=1, zorder=1, label="trajectory")
    for i in range(len(entries) - 1):
        ax.annotate(
            "",
            xy=(ux[i + 1], ay[i + 1]),
            xytext=(ux[i], ay[i]),
            arrowprops={"arrowstyle": "->", "color": "0.4", "lw": 1},
            zorder=2,
        )
    points = ax.scatter(ux, ay, c=steps, cmap="viridis", s=40, zorder=3)
    fig.colorbar(points, ax=ax, label="training step")
    ax.scatter(ux[:1], ay[:1], marker="o", s=160, facecolors="none", edgecolors="tab:green", lw=2, label="start")
    ax.scatter(ux[-1:], ay[-1:], marker="*", s=220, color="tab:red", zorder=4, label="end")
    ax.set_xlabel(r"$\ell_{\mathrm{uniform}}$ (lower is better)")
    ax.set_ylabel(r"$\ell_{\mathrm{align}}$ (lower is better)")
    return _save(fig, ax, "Alignment vs uniformity during training", path, dpi)


def _plot_stsb_dev(entries: Sequence[Mapping[str, Any]], path: Path, dpi: int) -> Path:
    """STS-B dev Spearman per evaluation step, the best one starred."""
    steps = [e["step"] for e in entries]
    values = [e["eval_stsb_spearman"] for e in entries]
    best = max(range(len(values)), key=values.__getitem__)
    fig, ax = _axes((6, 4))
    ax.plot(steps, values, marker="o", markersize=3, label="STS-B dev Spearman")
    ax.scatter([steps[best]], [values[best]], marker="*", s=200, color="tab:red", zorder=3, label="best")
    ax.set_xlabel("training step")
    ax.set_ylabel("Spearman correlation")
    return _save(fig, ax, "STS-B development set during training", path, dpi)


def plot_training(
    log_history: Sequence[Mapping[str, Any]],
    out_dir: str | os.PathLike[str],
    dpi: int = 120,
) -> dict[str, Path]:
    """Save ``align_uniform.png`` (paper figure 2 style) and ``stsb_dev.png`` from a trainer log history.

    log_history: dicts like ``trainer.state.log_history``; entries with ``eval_align``/``eval_uniform``
    feed the first plot, entries with ``eval_stsb_spearman`` the second. Returns {name: path} for the
    plots that had data.
    """
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    written: dict[str, Path] = {}
    au = sorted(
        (e for e in log_history if "eval_align" in e and "eval_uniform" in e and "step" in e),
        key=lambda e: e["step"],
    )
    if au:
        written["align_uniform"] = _plot_align_uniform(au, out / "align_uniform.png", dpi)
    dev = sorted((e for e in log_history if "eval_stsb_spearman" in e and "step" in e), key=lambda e: e["step"])
    if dev:
        written["stsb_dev"] = _plot_stsb_dev(dev, out / "stsb_dev.png", dpi)
    return written
