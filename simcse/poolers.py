"""Sentence poolers: how a token-level encoder output becomes one sentence vector.

The same formulas serve training (`simcse.models`), in-training evaluation, `evaluation.py` and the
`SimCSE` tool, so the embedding a user evaluates is the embedding the model was trained on
(the original kept two copies that could drift apart).

Pooler names (docs/FAITHFULNESS.md, "Poolers"):

=====================  ===========================================================================
``cls``                first token, then the SimCSE MLP (dense + tanh). On a plain HF encoder this
                       is ``pooler_output``, which *is* the trained MLP for converted checkpoints.
``cls_before_pooler``  first token of the last layer, no MLP.
``avg``                masked mean of the last layer (special tokens included).
``avg_top2``           masked mean of the average of the last two layers.
``avg_first_last``     masked mean of the average of the first transformer layer and the last one
                       (``hidden_states[1]``, the definition since Jan 2022).
``avg_first_last_legacy``  as above but with the embedding layer ``hidden_states[0]``: the
                       definition behind the paper's "first-last avg." baseline rows.
=====================  ===========================================================================
"""

from __future__ import annotations

from collections.abc import Sequence

import torch

from simcse.cls_shortcut import CLS_POOLERS, cls_embedding, supports_cls_shortcut
from simcse.settings import test_time_pooler

POOLER_TYPES: tuple[str, ...] = (
    "cls",
    "cls_before_pooler",
    "avg",
    "avg_top2",
    "avg_first_last",
    "avg_first_last_legacy",
)

_NEEDS_HIDDEN_STATES = frozenset({"avg_top2", "avg_first_last", "avg_first_last_legacy"})


def check_pooler_type(pooler_type: str) -> str:
    """Return ``pooler_type`` or raise a ``ValueError`` listing the valid names."""
    if pooler_type not in POOLER_TYPES:
        raise ValueError(f"unknown pooler {pooler_type!r}; choose one of: {', '.join(POOLER_TYPES)}")
    return pooler_type


def needs_hidden_states(pooler_type: str) -> bool:
    """Whether the encoder must be run with ``output_hidden_states=True`` for this pooler."""
    return pooler_type in _NEEDS_HIDDEN_STATES


def masked_mean(x: torch.Tensor, attention_mask: torch.Tensor) -> torch.Tensor:
    """Mean over the tokens whose mask is 1.

    x: (n, L, H); attention_mask: (n, L) -> (n, H)
    """
    mask = attention_mask.unsqueeze(-1).to(x.dtype)  # (n, L, 1)
    return (x * mask).sum(dim=1) / mask.sum(dim=1).clamp(min=1e-9)


def pool(
    pooler_type: str,
    attention_mask: torch.Tensor,
    last_hidden_state: torch.Tensor,
    hidden_states: Sequence[torch.Tensor] | None = None,
) -> torch.Tensor:
    """Pool token states into sentence vectors, *without* the MLP.

    For ``cls`` this returns the raw first-token vector; the caller applies the MLP (the training
    model's own head, or the HF ``pooler`` of a plain encoder).

    attention_mask: (n, L); last_hidden_state: (n, L, H); hidden_states: tuple of (n, L, H) where
    ``hidden_states[0]`` is the embedding output. Returns (n, H).
    """
    check_pooler_type(pooler_type)
    if pooler_type in CLS_POOLERS:
        return last_hidden_state[:, 0]
    if pooler_type == "avg":
        return masked_mean(last_hidden_state, attention_mask)
    if hidden_states is None:
        raise ValueError(f"pooler {pooler_type!r} needs the encoder's hidden_states (output_hidden_states=True)")
    if pooler_type == "avg_top2":
        return masked_mean((hidden_states[-1] + hidden_states[-2]) / 2.0, attention_mask)
    first = hidden_states[0] if pooler_type == "avg_first_last_legacy" else hidden_states[1]
    return masked_mean((first + hidden_states[-1]) / 2.0, attention_mask)


_SHORTCUT_INPUTS = frozenset({"input_ids", "attention_mask", "token_type_ids"})


def embed_with_hf_encoder(
    model: torch.nn.Module, batch: dict[str, torch.Tensor], pooler_type: str, cls_only_last_layer: bool = False
) -> torch.Tensor:
    """Sentence embeddings from a plain HF ``BertModel``/``RobertaModel``
    (docs/FAITHFULNESS.md, "Poolers", right column).

    ``cls`` reads ``pooler_output`` (the trained MLP of a converted SimCSE checkpoint); every other
    pooler reads the token states. batch: tokenizer output with (n, L) tensors -> (n, H).
    ``cls_only_last_layer``: the [CLS] poolers read one position of the last layer, so that layer can be
    run for [CLS] only (simcse.cls_shortcut: the same vectors up to float rounding, ~1/n_layers less
    work). Off in this low-level function unless asked; the encode path (simcse.encode) passes
    ``RuntimeOptions.cls_only_last_layer`` (on by default).
    """
    check_pooler_type(pooler_type)
    if (
        cls_only_last_layer
        and pooler_type in CLS_POOLERS
        and "attention_mask" in batch
        and set(batch) <= _SHORTCUT_INPUTS
        and supports_cls_shortcut(model)
    ):
        ids, mask, token_types = batch["input_ids"], batch["attention_mask"], batch.get("token_type_ids")
        return cls_embedding(model, ids, mask, token_types, pooler_type)  # (n, H)
    outputs = model(**batch, output_hidden_states=needs_hidden_states(pooler_type), return_dict=True)
    if pooler_type == "cls":
        if getattr(outputs, "pooler_output", None) is None:
            raise ValueError("pooler 'cls' needs an encoder with a pooling layer (pooler_output is None)")
        return outputs.pooler_output
    return pool(pooler_type, batch["attention_mask"], outputs.last_hidden_state, outputs.hidden_states)


def eval_pooler_from_config(config) -> str | None:
    """The pooler a SimCSE checkpoint should be *used* with, read from its own config.

    Training records ``pooler_type`` and ``mlp_only_train`` in ``config.json``. The MLP is kept at
    test time unless ``mlp_only_train`` (the unsupervised recipe), in which case the raw [CLS]
    vector (``cls_before_pooler``) is the embedding. Returns None for checkpoints that record
    nothing (third-party models), so callers can fall back to their own default.
    """
    pooler_type = getattr(config, "pooler_type", None)
    if pooler_type is None:
        return None
    return test_time_pooler(pooler_type, bool(getattr(config, "mlp_only_train", False)))
