"""Length buckets: encode a training batch as length-sorted groups, each padded to its own length.

Padding positions are masked out of attention and pooling, so the pooled vectors are the same function
of the input as one padded pass (equal up to float rounding, tests/test_models.py) with fewer token
positions computed: on the wiki data at batch 64 and max length 32, 4 buckets compute ~25% fewer.
Dropout masks are drawn per element either way, so the training objective is unchanged. This is not a
property of the model, only of how its training forward batches the encoder work (speed only).
"""

from __future__ import annotations

from collections.abc import Callable

import torch

from simcse.encode import length_order, restore_order
from simcse.settings import DEFAULT_LENGTH_BUCKETS  # 0 = automatic: CPU_LENGTH_BUCKETS on the CPU, else 1

CPU_LENGTH_BUCKETS = 4  # the best of 1/4/8/16 for MiniLM at batch 64 (benchmarks/README.md)

# (input_ids, attention_mask, token_type_ids or None), each (k, width) -> pooled (k, H)
PooledEncoder = Callable[[torch.Tensor, torch.Tensor, "torch.Tensor | None"], torch.Tensor]


def effective_length_buckets(length_buckets: int, device: torch.device) -> int:
    """How many length buckets a training forward on ``device`` uses for the setting ``length_buckets``.

    Automatic (0) buckets only on the CPU: there fewer padded positions are less work (1.05-1.2x per
    step), while on a GPU a small-batch step is bound by kernel launches (4 buckets = 4x the launches)
    and varying shapes defeat CUDA graphs; under torch.compile the data-dependent widths break the graph.
    """
    if length_buckets > 0:
        return length_buckets
    if device.type == "cpu" and not torch.compiler.is_compiling():
        return CPU_LENGTH_BUCKETS
    return 1


def encode_in_buckets(
    encode: PooledEncoder,
    input_ids: torch.Tensor,
    attention_mask: torch.Tensor,
    token_type_ids: torch.Tensor | None,
    buckets: int,
) -> torch.Tensor:
    """Pooled (n, H) vectors of the (n, L) batch, from ``buckets`` calls of ``encode`` on length-sorted
    groups cropped to their longest row; rows come back in input order."""
    n = input_ids.size(0)
    lengths = attention_mask.sum(dim=1)  # (n,)
    order = length_order(lengths)  # (n,) stable: equal lengths keep their input order
    pieces = []
    for idx in torch.tensor_split(order, min(buckets, n)):
        width = int(lengths[idx].max())
        if bool(attention_mask[idx, width:].any()):  # left padding: cannot crop, use the full width
            width = input_ids.size(1)
        tt = None if token_type_ids is None else token_type_ids[idx, :width]
        pieces.append(encode(input_ids[idx, :width], attention_mask[idx, :width], tt))  # (k, H)
    return restore_order(torch.cat(pieces), order)  # (n, H) back in input order


__all__ = ["CPU_LENGTH_BUCKETS", "DEFAULT_LENGTH_BUCKETS", "effective_length_buckets", "encode_in_buckets"]
