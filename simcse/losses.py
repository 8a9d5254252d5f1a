"""The SimCSE contrastive objective (paper Eq. 1 and Eq. 5), isolated from the encoder.

Keeping the maths in one function of plain tensors lets it be tested against a hand computation
and reused by the DDP path, the benchmarks and anyone who wants SimCSE's loss without our model.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

from simcse.settings import SIMILARITIES


def cosine_logits(a: torch.Tensor, b: torch.Tensor, temp: float) -> torch.Tensor:
    """Pairwise cosine similarity divided by the temperature.

    a: (N, H), b: (M, H) -> (N, M). Normalise-then-matmul is the same quantity as the original's
    broadcast ``nn.CosineSimilarity`` over an (N, M, H) tensor, without materialising it.
    Computed in at least fp32 so that bf16/fp16 embeddings still give fp32 logits (as autocast did);
    fp64 embeddings stay fp64 (a float64 check of the maths must not be rounded to fp32 here).
    """
    dtype = torch.promote_types(torch.promote_types(a.dtype, b.dtype), torch.float32)  # fp64 stays fp64
    a = F.normalize(a.to(dtype), dim=-1, eps=1e-8)
    b = F.normalize(b.to(dtype), dim=-1, eps=1e-8)
    return (a @ b.T) / temp


def dot_logits(a: torch.Tensor, b: torch.Tensor, temp: float) -> torch.Tensor:
    """Pairwise dot product without normalisation, divided by the temperature (paper Table D.1's "dot product").

    a: (N, H), b: (M, H) -> (N, M), in at least fp32 like :func:`cosine_logits` (fp64 stays fp64).
    """
    dtype = torch.promote_types(torch.promote_types(a.dtype, b.dtype), torch.float32)
    return (a.to(dtype) @ b.to(dtype).T) / temp


def contrastive_loss(
    z1: torch.Tensor,
    z2: torch.Tensor,
    z3: torch.Tensor | None = None,
    temp: float = 0.05,
    hard_negative_weight: float = 0.0,
    similarity: str = "cosine",
) -> tuple[torch.Tensor, torch.Tensor]:
    """InfoNCE over in-batch negatives, optionally with hard negatives (docs/FAITHFULNESS.md, "Contrastive loss").

    Args:
        z1: anchors, (N, H).
        z2: positives, (N, H); row i is the positive of anchor i, every other row a negative.
        z3: hard negatives, (N, H) or None. Every anchor sees *all* N hard negatives.
        temp: softmax temperature tau (0.05 in the paper; sentence-transformers' ``scale`` = 1/temp).
        hard_negative_weight: the **log** of the weight alpha of an anchor's own hard negative: it is
            added to logit [i, N + i] after the division by tau, so 0 means alpha = 1 (paper Eq. 5).
        similarity: ``cosine`` (the paper's) or ``dot`` (unnormalised dot product, the ablation of Table D.1).

    Returns:
        (loss, logits): mean cross-entropy over the N anchors (not symmetrised: only z1 rows are
        anchors), and the logits matrix, (N, N) or (N, 2N).
    """
    if similarity not in SIMILARITIES:
        raise ValueError(f"similarity must be one of {SIMILARITIES}, got {similarity!r}")
    sim = cosine_logits if similarity == "cosine" else dot_logits
    logits = sim(z1, z2, temp)  # (N, N)
    if z3 is not None:
        n = z1.size(0)
        hard = sim(z1, z3, temp)  # (N, N)
        if hard_negative_weight != 0.0:
            hard = hard + hard_negative_weight * torch.eye(n, device=hard.device, dtype=hard.dtype)
        logits = torch.cat([logits, hard], dim=1)  # (N, 2N)
    labels = torch.arange(z1.size(0), device=logits.device)  # (N,)
    return F.cross_entropy(logits, labels), logits
