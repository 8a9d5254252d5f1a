"""Training shortcut for the [CLS] poolers: the encoder's last layer is run at the first position only.

With ``pooler_type`` ``cls`` or ``cls_before_pooler`` the contrastive loss reads nothing but the last
layer's output at position 0. In a post-LayerNorm BERT/RoBERTa layer that output depends on the
position-0 query, the keys and values of *every* position (computed from the previous layer), and
position-wise work (attention output projection, residual + LayerNorm, feed-forward) at position 0
alone. So the last layer needs its key/value projections for all L positions but its query, attention
row, output projection and feed-forward for one: about 10/12 of a layer's matrix work is skipped,
1/n_layers of the encoder minus the keys and values (~14% for a 6-layer MiniLM, ~7% for BERT-base).

The result is the same function (tested to float rounding, values and gradients); dropout is drawn for
the elements that are computed, with the same probabilities, so the training objective is unchanged.
Training and evaluation use it; ``sent_emb=True`` and the inference tool keep the full ``last_hidden_state``.

The first n-1 layers are run by transformers' own forward (with its masks and attention kernels) on a
temporary copy of the layer list without the last layer; the last layer is then applied through its
own submodules (``attention.self.query/key/value``, ``attention.output``, ``intermediate``, ``output``),
the parameter names every BERT/RoBERTa checkpoint has. Encoders that do not look like that (relative
position embeddings, decoders, other layouts) are run in full. Because the layer list is swapped for the
duration of a call, the shortcut is for a single-threaded loop (training, evaluation): another thread
running the same model object meanwhile would see the shortened list. The inference tool does not use it.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager

import torch
import torch.nn.functional as F
from torch import nn

CLS_POOLERS = ("cls", "cls_before_pooler")  # the poolers that read position 0 of the last layer only

_LAYER_PARTS = (
    "attention.self.query",
    "attention.self.key",
    "attention.self.value",
    "attention.self.dropout",
    "attention.output",
    "intermediate",
    "output",
)


def supports_cls_shortcut(encoder: nn.Module) -> bool:
    """Whether ``encoder`` (a ``BertModel``/``RobertaModel``) has the layout the shortcut relies on."""
    config = encoder.config
    if getattr(config, "position_embedding_type", "absolute") != "absolute" or getattr(config, "is_decoder", False):
        return False
    layers = getattr(getattr(encoder, "encoder", None), "layer", None)
    if not isinstance(layers, nn.ModuleList) or len(layers) < 1:
        return False
    last = layers[-1]
    names = {name for name, _ in last.named_modules()}
    attn = getattr(getattr(last, "attention", None), "self", None)
    has_heads = hasattr(attn, "num_attention_heads") and hasattr(attn, "attention_head_size")
    return has_heads and all(part in names for part in _LAYER_PARTS)


@contextmanager
def _without_last_layer(encoder: nn.Module) -> Iterator[nn.Module]:
    """Let transformers run the first n-1 layers; yields the last one. The layer list is restored
    afterwards, whatever happens, so parameters and ``state_dict`` never change."""
    body = encoder.encoder
    layers = body.layer
    body.layer = layers[:-1]  # a new ModuleList holding the same layer modules
    try:
        yield layers[-1]
    finally:
        body.layer = layers


def first_position_of_last_layer(layer: nn.Module, hidden: torch.Tensor, attention_mask: torch.Tensor) -> torch.Tensor:
    """A BERT/RoBERTa layer's output at position 0. hidden: (n, L, H) input of the layer; returns (n, 1, H)."""
    attn = layer.attention.self
    n, length, _ = hidden.shape
    heads, head_dim = attn.num_attention_heads, attn.attention_head_size
    first = hidden[:, :1]  # (n, 1, H)
    q = attn.query(first).view(n, 1, heads, head_dim).transpose(1, 2)  # (n, h, 1, d)
    k = attn.key(hidden).view(n, length, heads, head_dim).transpose(1, 2)  # (n, h, L, d)
    v = attn.value(hidden).view(n, length, heads, head_dim).transpose(1, 2)  # (n, h, L, d)
    keep = attention_mask[:, None, None, :].bool()  # (n, 1, 1, L): padded keys are masked out
    dropout = attn.dropout.p if layer.training else 0.0  # attention-probability dropout, as the layer's own
    context = F.scaled_dot_product_attention(q, k, v, attn_mask=keep, dropout_p=dropout)  # (n, h, 1, d)
    context = context.transpose(1, 2).reshape(n, 1, heads * head_dim)  # (n, 1, H)
    attended = layer.attention.output(context, first)  # dense, dropout, LayerNorm(. + residual)
    return layer.output(layer.intermediate(attended), attended)  # feed-forward, dropout, LayerNorm


def encode_first_position(
    encoder: nn.Module,
    input_ids: torch.Tensor,
    attention_mask: torch.Tensor,
    token_type_ids: torch.Tensor | None,
) -> torch.Tensor:
    """The encoder's last hidden state at position 0, (n, 1, H), skipping the rest of the last layer."""
    with _without_last_layer(encoder) as last:
        hidden = encoder(
            input_ids=input_ids, attention_mask=attention_mask, token_type_ids=token_type_ids, return_dict=True
        ).last_hidden_state  # (n, L, H): input of the last layer
    return first_position_of_last_layer(last, hidden, attention_mask)


def cls_embedding(
    encoder: nn.Module,
    input_ids: torch.Tensor,
    attention_mask: torch.Tensor,
    token_type_ids: torch.Tensor | None,
    pooler_type: str,
) -> torch.Tensor:
    """(n, H) sentence vectors of a [CLS] pooler with the last layer at position 0 only: the raw state for
    ``cls_before_pooler``, the encoder's pooling layer (the SimCSE MLP: dense + tanh) over it for ``cls``."""
    first = encode_first_position(encoder, input_ids, attention_mask, token_type_ids)  # (n, 1, H)
    if pooler_type == "cls_before_pooler":
        return first[:, 0]
    if getattr(encoder, "pooler", None) is None:
        raise ValueError("pooler 'cls' needs an encoder with a pooling layer (pooler_output is None)")
    return encoder.pooler(first)  # the pooling layer reads position 0
