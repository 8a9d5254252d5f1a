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
Training, evaluation and the inference tool use it (``RuntimeOptions.cls_only_last_layer``, on by
default); ``sent_emb=True`` keeps the full ``last_hidden_state``.

The encoder is run through its own modules, none of them changed or swapped: the embeddings,
transformers' bidirectional mask for ``config._attn_implementation`` (``create_bidirectional_mask``,
as ``BertModel.forward`` builds it), then the layer modules one by one. The last layer is applied
through its submodules (``attention.self.query/key/value``, ``attention.output``, ``intermediate``,
``output``; the parameter names every BERT/RoBERTa checkpoint has) and its [CLS] attention row is
computed by transformers' attention function for the configured implementation
(``ALL_ATTENTION_FUNCTIONS``, ``eager_attention_forward`` for eager). Several threads may therefore run
the same model. Encoders that do not look like that (relative position embeddings, decoders, attention
kernels other than eager and sdpa, other layouts) are run in full.

Kept rather than removed (issue 15) because it pays: 1.14x training sentences/s on all-MiniLM-L6-v2
(batch 64, len 32, CPU; benchmarks/bench_features.py, variant ``cls_only_last_layer`` against the full last
layer in the same process) and 1.10x in evaluation (benchmarks/README.md). This rebuild does the same
arithmetic as the layer-list version it replaces: a seeded 12-step unsupervised run gives bitwise the same
losses and dev metrics. See also docs/FAITHFULNESS.md ("Poolers").
"""

from __future__ import annotations

import torch
from torch import nn
from transformers.masking_utils import create_bidirectional_mask
from transformers.modeling_utils import ALL_ATTENTION_FUNCTIONS
from transformers.models.bert.modeling_bert import eager_attention_forward

CLS_POOLERS = ("cls", "cls_before_pooler")  # the poolers that read position 0 of the last layer only

# Attention kernels whose mask is a dense (n, 1, L, L) tensor or None, so the [CLS] row can be taken.
SUPPORTED_ATTENTION = ("eager", "sdpa")

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
    if getattr(config, "_attn_implementation", None) not in SUPPORTED_ATTENTION:
        return False
    layers = getattr(getattr(encoder, "encoder", None), "layer", None)
    if getattr(encoder, "embeddings", None) is None or not isinstance(layers, nn.ModuleList) or len(layers) < 1:
        return False
    last = layers[-1]
    names = {name for name, _ in last.named_modules()}
    attn = getattr(getattr(last, "attention", None), "self", None)
    has_heads = all(hasattr(attn, a) for a in ("num_attention_heads", "attention_head_size", "scaling", "config"))
    return has_heads and all(part in names for part in _LAYER_PARTS)


def first_position_of_last_layer(layer: nn.Module, hidden: torch.Tensor, mask: torch.Tensor | None) -> torch.Tensor:
    """A BERT/RoBERTa layer's output at position 0; hidden: (n, L, H) input of the layer; mask: the
    encoder's attention mask for its kernel ((n, 1, L, L), or None without padding), or a plain (n, L)
    padding mask. Returns (n, 1, H)."""
    attn = layer.attention.self
    if mask is not None and mask.dim() == 2:
        mask = create_bidirectional_mask(config=attn.config, inputs_embeds=hidden, attention_mask=mask)
    n, length, _ = hidden.shape
    heads, head_dim = attn.num_attention_heads, attn.attention_head_size
    first = hidden[:, :1]  # (n, 1, H)
    q = attn.query(first).view(n, 1, heads, head_dim).transpose(1, 2)  # (n, h, 1, d)
    k = attn.key(hidden).view(n, length, heads, head_dim).transpose(1, 2)  # (n, h, L, d)
    v = attn.value(hidden).view(n, length, heads, head_dim).transpose(1, 2)  # (n, h, L, d)
    row_mask = None if mask is None else mask[:, :, :1, :]  # (n, 1, 1, L): the [CLS] query's row
    attention = ALL_ATTENTION_FUNCTIONS.get_interface(attn.config._attn_implementation, eager_attention_forward)
    dropout = attn.dropout.p if attn.training else 0.0  # attention-probability dropout, as the layer's own
    context, _ = attention(attn, q, k, v, row_mask, dropout=dropout, scaling=attn.scaling)  # (n, 1, h, d)
    context = context.reshape(n, 1, heads * head_dim)  # (n, 1, H)
    attended = layer.attention.output(context, first)  # dense, dropout, LayerNorm(. + residual)
    return layer.output(layer.intermediate(attended), attended)  # feed-forward, dropout, LayerNorm


def encode_first_position(
    encoder: nn.Module,
    input_ids: torch.Tensor,
    attention_mask: torch.Tensor,
    token_type_ids: torch.Tensor | None,
) -> torch.Tensor:
    """The encoder's last hidden state at position 0, (n, 1, H): the steps of ``BertModel.forward`` for an
    encoder (embeddings, mask, layers), with the last layer at [CLS] only."""
    hidden = encoder.embeddings(input_ids=input_ids, token_type_ids=token_type_ids)  # (n, L, H)
    mask = create_bidirectional_mask(config=encoder.config, inputs_embeds=hidden, attention_mask=attention_mask)
    layers = encoder.encoder.layer
    for layer in layers[:-1]:
        hidden = layer(hidden, mask)  # (n, L, H)
    return first_position_of_last_layer(layers[-1], hidden, mask)


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
