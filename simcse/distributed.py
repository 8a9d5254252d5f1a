"""Gathering sentence embeddings across DDP ranks, the way SimCSE does it.
(docs/FAITHFULNESS.md, "Distributed gathering")

Each rank all-gathers z1/z2/z3 from every rank, then puts its *own* tensor back in its slot so
that gradients flow into the local shard (``all_gather`` outputs carry no autograd history).
Every rank then computes the same full-batch loss over N = B * W rows, and DDP averages the
gradients, so the applied gradient is (1/W) times the gradient of the full-batch loss. The
authors consider that intended (issue #212); we reproduce it and do not rescale the loss.
"""

from __future__ import annotations

import torch
import torch.distributed as dist


def is_distributed() -> bool:
    return dist.is_available() and dist.is_initialized() and dist.get_world_size() > 1


def gather_with_local_grad(t: torch.Tensor) -> torch.Tensor:
    """All-gather ``t`` (B, H) from every rank into (B * W, H), in rank order.

    The local slot keeps ``t`` itself (with its autograd graph); the other ranks' slots are
    constants. All ranks must pass tensors of the same shape (use ``dataloader_drop_last``).
    A no-op outside an initialised process group.
    """
    if not is_distributed():
        return t
    t = t.contiguous()
    slots = [torch.zeros_like(t) for _ in range(dist.get_world_size())]
    dist.all_gather(slots, t)
    slots[dist.get_rank()] = t
    return torch.cat(slots, dim=0)
