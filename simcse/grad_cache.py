"""Gradient caching for the contrastive loss: the paper's batch sizes in the memory of a chunk.

The contrastive loss couples every sentence of a batch (each one is a negative of all others), so gradient
accumulation cannot split it: it would shrink the pool of negatives. Gradient caching (Gao et al. 2021,
"Scaling Deep Contrastive Learning Batch Size under Memory Limited Setup") computes the *same* loss and
gradients as one full-batch step with the activations of one chunk at a time:

1. embed the batch in chunks of ``chunk_size`` examples without autograd, keeping only the (B, S, H) vectors;
   the last chunk alone is encoded with autograd and keeps its graph (one chunk's activations, the memory
   the replay needs anyway), so it is never encoded twice;
2. compute the loss on those vectors (gathered across DDP ranks as usual) and its gradient with respect to
   them, the (B, S, H) "cached gradient";
3. backpropagate the last chunk's slice through its kept graph (freeing it), then re-encode every other
   chunk with autograd and backpropagate its slice of the cached gradient.

A batch of one chunk thus costs what a plain step costs; n chunks cost n - 1 extra no-grad passes.

Step 3 runs inside ``backward`` of the loss that ``CLTrainer.compute_loss`` returns (:class:`_ReplayChunks`),
so the Trainer's own ``backward`` drives it: gradient accumulation (the 1/GA factor), fp16 loss scaling
and any other factor applied to the loss reach the parameters, multiplied into the cached gradient.
Under DDP every grad-enabled pass but the last backpropagated one runs in ``no_sync``: one all-reduce per
step, of the summed chunk gradients (when the Trainer itself is in ``no_sync`` for an accumulation
micro-step, none). With one chunk that pass is the kept one; with more, the last re-encoded chunk.

Each chunk's two passes must compute the same function, dropout included. Before the first pass the CPU
and the device random states are recorded; the second pass restores them, runs under the same autocast
setting, and goes through the same entry point (``model.contrastive_embeddings``: the same length buckets,
the same [CLS]-only-last-layer branch), so it draws bitwise the same dropout masks
(tests/test_grad_cache.py). Afterwards the random state is what it was after the first passes.

``--do_mlm`` is refused: the MLM term would need its own chunked pass (and a weighting by each chunk's
masked tokens); see README "Large batches: gradient caching".
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable
from typing import Any

import torch
from torch import nn
from transformers.modeling_outputs import SequenceClassifierOutput

from simcse.distributed import gather_with_local_grad
from simcse.losses import contrastive_loss

MLM_REFUSAL = (
    "--gradient_cache_batch_size does not support --do_mlm (the MLM term is not chunked); "
    "drop one of the two flags"
)

_CHUNK_KEYS = ("input_ids", "attention_mask", "token_type_ids")


def _core(model: nn.Module) -> nn.Module:
    """The SimCSE model inside a DDP (or other ``.module``) wrapper."""
    while hasattr(model, "module") and isinstance(model.module, nn.Module):
        model = model.module
    return model


def _rng_state(device: torch.device) -> tuple[torch.Tensor, torch.Tensor | None]:
    """(CPU state, device state or None): what dropout on ``device`` draws from."""
    if device.type == "cuda":
        return torch.get_rng_state(), torch.cuda.get_rng_state(device)
    return torch.get_rng_state(), None


def _set_rng_state(device: torch.device, state: tuple[torch.Tensor, torch.Tensor | None]) -> None:
    torch.set_rng_state(state[0])
    if state[1] is not None:
        torch.cuda.set_rng_state(state[1], device)


def _autocast_state(device: torch.device) -> tuple[str, bool, torch.dtype]:
    kind = device.type if device.type in ("cuda", "cpu") else "cpu"
    return kind, torch.is_autocast_enabled(kind), torch.get_autocast_dtype(kind)


class _ReplayChunks(torch.autograd.Function):
    """Identity on the loss value; its backward re-encodes the chunks and backpropagates the cached gradient."""

    @staticmethod
    def forward(ctx, loss: torch.Tensor, anchor: torch.Tensor, replay: Callable[[torch.Tensor], None]):
        ctx.replay = replay
        return loss.detach().clone()

    @staticmethod
    def backward(ctx, grad_output: torch.Tensor):
        replay, ctx.replay = ctx.replay, None  # once: a second backward has no graph to re-run
        if replay is None:
            raise RuntimeError("gradient caching: backward ran twice on the same loss")
        replay(grad_output)
        return None, None, None


def chunk_slices(batch_size: int, chunk_size: int) -> list[slice]:
    """Consecutive example slices of at most ``chunk_size`` covering ``range(batch_size)``."""
    if chunk_size < 1:
        raise ValueError(f"gradient cache chunk size must be >= 1, got {chunk_size}")
    return [slice(i, min(i + chunk_size, batch_size)) for i in range(0, batch_size, chunk_size)]


def _loss_and_cached_grad(core: nn.Module, embeddings: torch.Tensor) -> tuple[torch.Tensor, ...]:
    """The contrastive loss of the (B, S, H) leaf ``embeddings`` (negatives gathered across DDP ranks as in the
    plain forward), its logits, and its gradient with respect to them: (loss, logits, (B, S, H) cached grad)."""
    config = core.config
    with torch.enable_grad():
        z1, z2 = embeddings[:, 0], embeddings[:, 1]  # (B, H) anchors, positives
        z3 = embeddings[:, 2] if embeddings.size(1) == 3 else None  # (B, H) hard negatives
        if core.training and config.gather_negatives:
            z3 = gather_with_local_grad(z3) if z3 is not None else None  # (N, H), N = B * world size
            z1, z2 = gather_with_local_grad(z1), gather_with_local_grad(z2)
        loss, logits = contrastive_loss(
            z1, z2, z3, temp=config.temp, hard_negative_weight=config.hard_negative_weight,
            similarity=config.similarity,
        )
        (cached_grad,) = torch.autograd.grad(loss, embeddings)  # (B, S, H)
    return loss, logits, cached_grad


def cached_contrastive_loss(
    model: nn.Module, inputs: dict[str, Any], chunk_size: int
) -> SequenceClassifierOutput:
    """The full-batch SimCSE loss of ``inputs`` ((B, S, L) tensors) with gradient caching in chunks of
    ``chunk_size`` examples. ``model``: a SimCSE model, possibly DDP-wrapped (then called through the wrapper,
    so DDP sees each grad-enabled forward). The returned ``loss``'s backward re-encodes the chunks."""
    if inputs.get("mlm_input_ids") is not None:
        raise ValueError(MLM_REFUSAL)
    core = _core(model)
    chunk_inputs = {k: inputs[k] for k in _CHUNK_KEYS if inputs.get(k) is not None}
    input_ids = chunk_inputs["input_ids"]  # (B, S, L)
    device = input_ids.device
    slices = chunk_slices(input_ids.size(0), chunk_size)

    def encode(sl: slice) -> torch.Tensor:  # (b, S, H) for the chunk's examples
        return model(**{k: v[sl] for k, v in chunk_inputs.items()}, embeddings_only=True)

    no_sync = getattr(model, "no_sync", None)

    def sync_unless(local: bool):
        """DDP's ``no_sync`` for a grad-enabled pass whose backward must not all-reduce."""
        return no_sync() if (no_sync is not None and local) else contextlib.nullcontext()

    replayed, kept_slice = slices[:-1], slices[-1]
    states = []
    with torch.no_grad():
        pieces = []
        for sl in replayed:
            states.append(_rng_state(device))
            pieces.append(encode(sl))
    with torch.enable_grad(), sync_unless(bool(replayed)):
        kept = encode(kept_slice)  # (b, S, H) with its graph: backpropagated first, never re-encoded
    embeddings = torch.cat([*pieces, kept.detach()]).detach().requires_grad_(True)  # (B, S, H), a leaf

    loss, logits, cached_grad = _loss_and_cached_grad(core, embeddings)
    autocast = _autocast_state(device)
    graph = [kept]  # released by the first backward, so a second one cannot reuse it

    def replay(grad_output: torch.Tensor) -> None:
        kind, enabled, dtype = autocast
        fork_devices = [device] if device.type == "cuda" else []
        last_chunk = graph.pop()
        torch.autograd.backward(last_chunk, (cached_grad[kept_slice] * grad_output).to(last_chunk.dtype))
        with torch.random.fork_rng(devices=fork_devices), torch.enable_grad(), torch.autocast(
            kind, dtype=dtype, enabled=enabled
        ):
            for i, (sl, state) in enumerate(zip(replayed, states)):
                _set_rng_state(device, state)
                with sync_unless(i < len(replayed) - 1):
                    chunk = encode(sl)  # (b, S, H), the same function as the first pass
                    grad = (cached_grad[sl] * grad_output).to(chunk.dtype)
                    torch.autograd.backward(chunk, grad)

    anchor = torch.zeros((), device=device, requires_grad=True)  # makes the Function part of the graph
    surrogate = _ReplayChunks.apply(loss.detach(), anchor, replay)
    return SequenceClassifierOutput(loss=surrogate, logits=logits.detach())


__all__ = ["MLM_REFUSAL", "cached_contrastive_loss", "chunk_slices"]
