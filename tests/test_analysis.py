"""Alignment/uniformity against explicit loops, the STS-B wrapper against an independent parse of the
real data, and the training plots as real PNG files."""

from __future__ import annotations

import csv
import math
import struct
import zlib

import pytest
import torch

from simcse.analysis import alignment, plot_training, stsb_alignment_uniformity, uniformity
from tests.numerics import assert_close_scaled


def _unit(v: list[float]) -> list[float]:
    n = math.sqrt(sum(a * a for a in v))
    return [a / n for a in v]


def _sqdist(a: list[float], b: list[float]) -> float:
    return sum((p - q) ** 2 for p, q in zip(a, b))


def test_alignment_matches_loops():
    torch.manual_seed(0)
    x, y = torch.randn(7, 5) * 3, torch.randn(7, 5)
    for alpha in (1, 2, 3):
        total = 0.0
        for i in range(7):
            d = math.sqrt(_sqdist(_unit(x[i].tolist()), _unit(y[i].tolist())))
            total += d**alpha
        assert_close_scaled(alignment(x, y, alpha=alpha), total / 7, what=f"alignment alpha={alpha}")
    assert_close_scaled(alignment(x, x), 0.0, scale=1.0, what="alignment(x, x)")  # distances of unit vectors
    with pytest.raises(ValueError):
        alignment(x, y[:3])


def test_uniformity_matches_loops():
    torch.manual_seed(1)
    x = torch.randn(9, 4)
    for t in (1, 2):
        rows = [_unit(r) for r in x.tolist()]
        terms = [math.exp(-t * _sqdist(rows[i], rows[j])) for i in range(9) for j in range(i + 1, 9)]
        assert len(terms) == 36
        assert_close_scaled(uniformity(x, t=t), math.log(sum(terms) / len(terms)), what=f"uniformity t={t}")
    # identical points are the least uniform possible (log 1 = 0); antipodal pairs are spread out
    assert_close_scaled(uniformity(torch.ones(4, 3)), 0.0, scale=8.0, what="uniformity of one point")  # in [-8, 0]
    assert_close_scaled(uniformity(torch.tensor([[1.0, 0.0], [-1.0, 0.0]])), -8.0, what="antipodal uniformity")


def _fake_embed(sentences: list[str]) -> torch.Tensor:
    """Deterministic per-sentence vectors (a seeded generator per sentence)."""
    out = []
    for s in sentences:
        g = torch.Generator().manual_seed(zlib.crc32(s.encode("utf-8")))
        out.append(torch.randn(16, generator=g))
    return torch.stack(out)


@pytest.mark.real
@pytest.mark.parametrize("split", ["dev", "test"])
def test_stsb_alignment_uniformity_on_real_data(senteval_data, split):
    path = senteval_data / "STS" / "STSBenchmark" / f"sts-{split}.csv"
    with open(path, encoding="utf-8", newline="") as f:
        rows = [r for r in csv.reader(f, delimiter="\t", quoting=csv.QUOTE_NONE) if len(r) >= 7]
    pairs = [(r[5], r[6]) for r in rows if float(r[4]) > 4.0]
    unique = sorted({s for r in rows for s in (r[5], r[6])})

    result = stsb_alignment_uniformity(_fake_embed, senteval_data, split=split)
    assert result["num_pairs"] == len(pairs) > 100
    assert result["num_sentences"] == len(unique)

    a = torch.nn.functional.normalize(_fake_embed([p[0] for p in pairs]), dim=1)
    b = torch.nn.functional.normalize(_fake_embed([p[1] for p in pairs]), dim=1)
    want_align = ((a - b) ** 2).sum(dim=1).mean()
    u = torch.nn.functional.normalize(_fake_embed(unique), dim=1).double()
    sq = 2 - 2 * (u @ u.T)  # squared distances of unit vectors
    iu = torch.triu_indices(len(unique), len(unique), offset=1)
    want_uniform = torch.exp(-2 * sq[iu[0], iu[1]]).mean().log()
    assert_close_scaled(torch.tensor(result["align"], dtype=torch.float32), want_align, what="align")  # fp32 maths
    assert_close_scaled(torch.tensor(result["uniform"], dtype=torch.float32), want_uniform, what="uniform")


def _png_size(path) -> tuple[int, int]:
    data = path.read_bytes()
    assert data[:8] == b"\x89PNG\r\n\x1a\n" and data[12:16] == b"IHDR"
    return struct.unpack(">II", data[16:24])


def test_plot_training_writes_pngs(tmp_path):
    history = [{"loss": 1.0, "step": 5, "epoch": 0.1}]  # a training-loss entry, ignored
    for i, step in enumerate(range(0, 1000, 125)):
        history.append(
            {
                "step": step,
                "eval_stsb_spearman": 0.6 + 0.02 * i,
                "eval_align": 0.4 - 0.01 * i,
                "eval_uniform": -1.5 - 0.2 * i,
            }
        )
    written = plot_training(list(reversed(history)), tmp_path / "plots")
    assert set(written) == {"align_uniform", "stsb_dev"}
    for name in ("align_uniform.png", "stsb_dev.png"):
        path = tmp_path / "plots" / name
        width, height = _png_size(path)
        assert 500 <= width <= 1500 and 300 <= height <= 1200
        assert path.stat().st_size > 10_000  # not an empty canvas
    assert plot_training([{"loss": 1.0, "step": 1}], tmp_path / "none") == {}
