"""The contrastive loss against hand computations with explicit loops (docs/FAITHFULNESS.md, "Contrastive loss").

The embeddings are float64 and so are the loss's logits (it keeps fp64, and lifts bf16/fp16 to fp32),
so the comparison with the float64 loops is tight (tests/numerics.py)."""

from __future__ import annotations

import math

import pytest
import torch

from simcse.losses import contrastive_loss
from tests.numerics import assert_close_scaled


def _cos(a: list[float], b: list[float]) -> float:
    dot = sum(x * y for x, y in zip(a, b))
    return dot / (math.sqrt(sum(x * x for x in a)) * math.sqrt(sum(y * y for y in b)))


def _hand_loss(z1, z2, z3=None, temp=0.05, w=0.0):
    """Per-anchor -log softmax of the positive, written out term by term."""
    n = len(z1)
    total = 0.0
    rows = []
    for i in range(n):
        row = [_cos(z1[i], z2[j]) / temp for j in range(n)]
        if z3 is not None:
            row += [_cos(z1[i], z3[j]) / temp + (w if j == i else 0.0) for j in range(n)]
        rows.append(row)
        denom = sum(math.exp(v) for v in row)
        total += -math.log(math.exp(row[i]) / denom)
    return total / n, rows


@pytest.fixture
def zs():
    g = torch.Generator().manual_seed(0)
    return [torch.randn(5, 7, generator=g, dtype=torch.float64) for _ in range(3)]


@pytest.mark.parametrize("temp", [0.05, 0.5, 1.0])
def test_pairs_loss_and_logits_match_hand_computation(zs, temp):
    z1, z2, _ = zs
    loss, logits = contrastive_loss(z1, z2, temp=temp)
    expected, rows = _hand_loss(z1.tolist(), z2.tolist(), temp=temp)
    assert logits.shape == (5, 5) and logits.dtype == loss.dtype == torch.float64
    assert_close_scaled(logits, rows, what="logits")
    assert_close_scaled(loss, expected, what="loss")


@pytest.mark.parametrize("weight", [0.0, math.log(2.0), 1.0])
def test_triples_with_hard_negative_weight(zs, weight):
    z1, z2, z3 = zs
    loss, logits = contrastive_loss(z1, z2, z3, temp=0.05, hard_negative_weight=weight)
    expected, rows = _hand_loss(z1.tolist(), z2.tolist(), z3.tolist(), temp=0.05, w=weight)
    assert logits.shape == (5, 10) and logits.dtype == torch.float64
    assert_close_scaled(logits, rows, what="logits")
    assert_close_scaled(loss, expected, what="loss")


def test_weight_lands_only_on_own_hard_negative(zs):
    z1, z2, z3 = zs
    _, plain = contrastive_loss(z1, z2, z3, hard_negative_weight=0.0)
    _, weighted = contrastive_loss(z1, z2, z3, hard_negative_weight=0.7)
    diff = weighted - plain
    expected = torch.zeros(5, 10, dtype=torch.float64)
    expected[torch.arange(5), 5 + torch.arange(5)] = 0.7
    assert_close_scaled(diff, expected, scale=float(plain.abs().max()), what="logit difference")  # of ~20


def test_matches_broadcast_cosine_of_the_original_formulation(zs):
    """The original computed nn.CosineSimilarity on an (N, N, H) broadcast; normalise+matmul is equal."""
    z1, z2, z3 = zs  # float64: the two formulations are the same maths
    sim = torch.nn.CosineSimilarity(dim=-1)
    ref = torch.cat([sim(z1.unsqueeze(1), z2.unsqueeze(0)), sim(z1.unsqueeze(1), z3.unsqueeze(0))], 1) / 0.05
    ref_loss = torch.nn.functional.cross_entropy(ref, torch.arange(5))
    loss, logits = contrastive_loss(z1, z2, z3)
    assert_close_scaled(logits, ref, what="logits")
    assert_close_scaled(loss, ref_loss, what="loss")


def test_low_precision_embeddings_give_fp32_logits(zs):
    z1, z2, _ = zs
    loss, logits = contrastive_loss(z1.bfloat16(), z2.bfloat16())
    assert logits.dtype == torch.float32 and loss.dtype == torch.float32
    loss, logits = contrastive_loss(z1.float(), z2.float())
    assert logits.dtype == torch.float32 and loss.dtype == torch.float32
    loss, logits = contrastive_loss(z1, z2)  # float64 is not rounded down to float32
    assert logits.dtype == torch.float64 and loss.dtype == torch.float64


def test_gradients_flow_to_all_inputs(zs):
    z1, z2, z3 = (z.clone().requires_grad_(True) for z in zs)
    loss, _ = contrastive_loss(z1, z2, z3)
    loss.backward()
    assert all(t.grad is not None and t.grad.abs().sum() > 0 for t in (z1, z2, z3))
