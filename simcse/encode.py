"""The one path from sentences to vectors: tokenise, sort by token length, batch, pool, restore the order.

``evaluation.py``, in-training evaluation (``simcse.trainer.SentenceEmbedder``), the SentEval batcher
(``simcse.evaluation``) and the ``SimCSE`` tool all embed through :func:`make_embed_fn`, so a sentence
gets the same vector whichever of them asks. The training forward's length buckets
(``simcse.length_buckets``) use the same :func:`length_order` / :func:`restore_order` helpers.

Sorting by *token* length and cutting batches at length changes (:func:`length_batches`) means most
batches need no padding at all; padding is masked out of attention and pooling, so the vectors are
those of one sentence at a time up to float rounding. See docs/FAITHFULNESS.md ("evaluation.py").
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

import torch
from tqdm.auto import tqdm

from simcse.poolers import check_pooler_type, embed_with_hf_encoder

EmbedFn = Callable[[list[str]], torch.Tensor]


def length_order(lengths: Sequence[int] | torch.Tensor) -> list[int] | torch.Tensor:
    """Indices that sort ``lengths`` ascending, ties kept in input order (a list for a list, a tensor
    for a tensor)."""
    if isinstance(lengths, torch.Tensor):
        return torch.argsort(lengths, stable=True)
    return sorted(range(len(lengths)), key=lambda i: lengths[i])


def restore_order(rows_in_order: torch.Tensor, order: Sequence[int] | torch.Tensor) -> torch.Tensor:
    """Rows computed in ``order`` (row j belongs to input ``order[j]``) back in input order: (n, ...)."""
    order = torch.as_tensor(order, dtype=torch.long, device=rows_in_order.device)
    inverse = torch.empty_like(order)
    inverse[order] = torch.arange(order.numel(), device=order.device)
    return rows_in_order[inverse]


def length_batches(order: Sequence[int], lengths: Sequence[int], batch_size: int) -> list[list[int]]:
    """Cut the length-sorted ``order`` into batches of at most ``batch_size`` that never mix token
    lengths unless a length group is small: full batches need no padding at all, which saves the
    padded positions' compute. Groups shorter than a quarter batch are merged with their neighbours.
    """
    batches: list[list[int]] = []
    cur: list[int] = []
    for i in order:
        boundary = cur and lengths[i] != lengths[cur[-1]] and len(cur) >= batch_size // 4
        if len(cur) == batch_size or boundary:
            batches.append(cur)
            cur = []
        cur.append(i)
    if cur:
        batches.append(cur)
    return batches


def model_max_length(model: Any, tokenizer: Any) -> int:
    """Longest input the encoder accepts: min(tokenizer limit, position embeddings minus RoBERTa's offset)."""
    limit = getattr(model.config, "max_position_embeddings", None) or 512
    if getattr(model.config, "model_type", "") in ("roberta", "xlm-roberta", "camembert", "longformer"):
        limit -= (getattr(model.config, "pad_token_id", 1) or 1) + 1
    tok_limit = getattr(tokenizer, "model_max_length", None)
    if tok_limit is not None and tok_limit < 1_000_000:
        limit = min(limit, int(tok_limit))
    return int(limit)


_MODEL_INPUTS = ("input_ids", "attention_mask", "token_type_ids")


def make_embed_fn(
    model: Any,
    tokenizer: Any,
    pooler: str,
    device: str | torch.device | None = None,
    max_seq_length: int | None = None,
    batch_size: int = 128,
    cls_only_last_layer: bool = True,
    progress: bool | None = False,
) -> EmbedFn:
    """sentences -> (n, H) float CPU tensor with the given pooler (no L2 normalisation), in input order.

    ``model``: a plain HF encoder (``BertModel``/``RobertaModel``, or a SimCSE head's ``.encoder``).
    Tokenises once, sorts by token length, runs :func:`length_batches` of ``batch_size`` under
    ``inference_mode`` and restores the input order. Sentences longer than ``max_seq_length`` (default:
    the model's limit) are truncated instead of crashing. With a [CLS] pooler and ``cls_only_last_layer``
    the last layer runs at [CLS] only (simcse.cls_shortcut; the same vectors, less work). ``progress``:
    a tqdm bar over batches; None shows it for more than 8 batches.
    """
    check_pooler_type(pooler)
    dev = torch.device(device) if device is not None else next(model.parameters()).device
    max_len = max_seq_length or model_max_length(model, tokenizer)

    def embed(sentences: list[str]) -> torch.Tensor:
        if not sentences:
            return torch.zeros(0, model.config.hidden_size)
        enc = tokenizer(list(sentences), truncation=True, max_length=max_len, padding=False)
        ids = enc["input_ids"]
        lengths = [len(x) for x in ids]
        batches = length_batches(length_order(lengths), lengths, batch_size)
        out = torch.empty(len(ids), model.config.hidden_size)
        keys = [k for k in enc.keys() if k in _MODEL_INPUTS]
        show = len(batches) > 8 if progress is None else progress
        with torch.inference_mode():
            for idx in tqdm(batches, desc="encode", disable=not show, leave=False):
                feats = tokenizer.pad([{k: enc[k][i] for k in keys} for i in idx], return_tensors="pt")
                batch = {k: v.to(dev) for k, v in feats.items()}
                out[idx] = embed_with_hf_encoder(model, batch, pooler, cls_only_last_layer).float().cpu()  # (b, H)
        return out

    return embed


__all__ = ["EmbedFn", "length_batches", "length_order", "make_embed_fn", "model_max_length", "restore_order"]
