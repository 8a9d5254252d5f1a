"""SimCSE training heads for BERT and RoBERTa encoders (SPEC 1).

Design choices that differ from the original code, and why:

* The SimCSE MLP (dense H->H + tanh) *is* the encoder's HF pooling layer (``bert.pooler``), freshly
  initialised. It is the same architecture, so the saved weights load straight into a plain
  ``BertModel``/``RobertaModel`` whose ``pooler_output`` is the SimCSE ``cls`` embedding: no key
  renaming is needed, and ``AutoModel.from_pretrained`` works on every checkpoint we write.
* The SimCSE settings (``pooler_type``, ``temp``, ``mlp_only_train``, ...) live in the model
  config, so checkpoints describe themselves and tools pick the right pooler.
* The MLM head keeps the pre-trained checkpoint key names (``cls.predictions.*`` for BERT,
  ``lm_head.*`` for RoBERTa) so it loads from the pre-trained masked-LM weights, and its decoder
  is *not* tied to the input embeddings (a [QUIRK] of the original, kept for faithful numbers).
* The model class is chosen from ``config.model_type``, never from a substring of a path.
"""

from __future__ import annotations

import logging
import os
from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn
from transformers import AutoConfig, PretrainedConfig
from transformers.activations import ACT2FN
from transformers.modeling_outputs import BaseModelOutputWithPoolingAndCrossAttentions, SequenceClassifierOutput
from transformers.models.bert.modeling_bert import BertModel, BertPreTrainedModel
from transformers.models.roberta.modeling_roberta import RobertaModel, RobertaPreTrainedModel

from simcse.cls_shortcut import CLS_POOLERS, cls_embedding, supports_cls_shortcut
from simcse.distributed import gather_with_local_grad
from simcse.length_buckets import DEFAULT_LENGTH_BUCKETS, effective_length_buckets, encode_in_buckets
from simcse.losses import contrastive_loss
from simcse.poolers import check_pooler_type, needs_hidden_states, pool

logger = logging.getLogger(__name__)

# SimCSE settings stored in config.json, with the paper's defaults.
SIMCSE_CONFIG_DEFAULTS: dict[str, Any] = {
    "pooler_type": "cls",
    "temp": 0.05,
    "hard_negative_weight": 0.0,
    "do_mlm": False,
    "mlm_weight": 0.1,
    "mlp_only_train": False,
    "gather_negatives": True,
}

SUPPORTED_MODEL_TYPES = ("bert", "roberta")


# Weight files transformers can load a local model folder from (sharded checkpoints have an index).
# Unsharded weight files: the ones conversion (simcse.convert) reads and rewrites.
SINGLE_WEIGHT_FILES: tuple[str, ...] = ("model.safetensors", "pytorch_model.bin")
WEIGHT_FILES: tuple[str, ...] = (  # any of these makes a loadable folder (sharded indexes too)
    "model.safetensors",
    "model.safetensors.index.json",
    "pytorch_model.bin",
    "pytorch_model.bin.index.json",
)


def check_model_weights(model_name_or_path: str | os.PathLike) -> None:
    """A local model folder must hold weights: without them transformers fails late, with an OSError
    traceback; name the incomplete folder before any work (hub ids are left to transformers)."""
    folder = Path(model_name_or_path)
    if folder.is_dir() and not any((folder / name).is_file() for name in WEIGHT_FILES):
        raise FileNotFoundError(
            f"{folder}: model folder has no weights (expected {' or '.join(WEIGHT_FILES[::2])}); "
            "is the download or the copy incomplete?"
        )


class UnsupportedModelError(ValueError):
    """The checkpoint's ``config.model_type`` has no SimCSE head."""


def simcse_setting(config: PretrainedConfig, name: str) -> Any:
    return getattr(config, name, SIMCSE_CONFIG_DEFAULTS[name])


class _BertPredictions(nn.Module):
    """Holds ``transform``, ``decoder`` and ``bias`` so the keys read ``cls.predictions.*``."""

    def __init__(self, config: PretrainedConfig) -> None:
        super().__init__()
        self.transform = nn.Module()
        self.transform.dense = nn.Linear(config.hidden_size, config.hidden_size)
        self.transform.LayerNorm = nn.LayerNorm(config.hidden_size, eps=config.layer_norm_eps)
        self.decoder = nn.Linear(config.hidden_size, config.vocab_size, bias=False)
        self.bias = nn.Parameter(torch.zeros(config.vocab_size))


class _BertMLMHead(nn.Module):
    """BERT's masked-LM head with the pre-trained key names (``cls.predictions.*``), decoder untied."""

    def __init__(self, config: PretrainedConfig) -> None:
        super().__init__()
        self.predictions = _BertPredictions(config)
        self.act = ACT2FN[config.hidden_act] if isinstance(config.hidden_act, str) else config.hidden_act

    @property
    def decoder(self) -> nn.Linear:
        return self.predictions.decoder

    def forward(self, h: torch.Tensor) -> torch.Tensor:  # (..., H) -> (..., V)
        p = self.predictions
        h = p.transform.LayerNorm(self.act(p.transform.dense(h)))
        return p.decoder(h) + p.bias


class _RobertaMLMHead(nn.Module):
    """RoBERTa's masked-LM head with the pre-trained key names (``lm_head.*``), decoder untied."""

    def __init__(self, config: PretrainedConfig) -> None:
        super().__init__()
        self.dense = nn.Linear(config.hidden_size, config.hidden_size)
        self.layer_norm = nn.LayerNorm(config.hidden_size, eps=config.layer_norm_eps)
        self.decoder = nn.Linear(config.hidden_size, config.vocab_size, bias=False)
        self.bias = nn.Parameter(torch.zeros(config.vocab_size))

    def forward(self, h: torch.Tensor) -> torch.Tensor:  # (..., H) -> (..., V)
        return self.decoder(self.layer_norm(F.gelu(self.dense(h)))) + self.bias


def _first_view(input_ids, attention_mask, token_type_ids, mlm_input_ids, mlm_labels):
    """Keep sentence 0 of each (B, 2, L) example: the two views of unsupervised data are the same tokens.

    Returns the five tensors (None stays None) as (B, 1, L).
    """
    if input_ids.size(1) != 2 or not torch.equal(input_ids[:, 0], input_ids[:, 1]):
        raise ValueError("--same_dropout_mask needs unsupervised data (each example twice the same sentence)")
    return tuple(None if t is None else t[:, :1] for t in (input_ids, attention_mask, token_type_ids,
                                                           mlm_input_ids, mlm_labels))


class _SimCSEMixin:
    """Forward logic shared by :class:`BertForCL` and :class:`RobertaForCL`."""

    config: PretrainedConfig
    base_model_prefix: str
    _mlm_head_name: str

    def _build_simcse(self, encoder_cls: type, head_cls: type) -> None:
        config = self.config
        for name, default in SIMCSE_CONFIG_DEFAULTS.items():
            if not hasattr(config, name):
                setattr(config, name, default)
        check_pooler_type(config.pooler_type)
        # The HF pooling layer doubles as the SimCSE MLP; only the `cls` pooler has one.
        setattr(self, self.base_model_prefix, encoder_cls(config, add_pooling_layer=config.pooler_type == "cls"))
        if config.do_mlm:
            setattr(self, self._mlm_head_name, head_cls(config))

    @property
    def encoder(self) -> nn.Module:
        return getattr(self, self.base_model_prefix)

    @property
    def mlm_head(self) -> nn.Module | None:
        return getattr(self, self._mlm_head_name, None)

    def reset_mlp(self) -> None:
        """Fresh N(0, initializer_range) init of the MLP: SimCSE does not start from BERT's NSP pooler."""
        dense = self.encoder.pooler.dense
        nn.init.normal_(dense.weight, mean=0.0, std=self.config.initializer_range)
        nn.init.zeros_(dense.bias)

    def _encode(
        self, input_ids, attention_mask, token_type_ids, training_loss: bool = False, **encoder_kwargs
    ) -> tuple[torch.Tensor, Any]:
        """One encoder pass; returns (pooled, outputs). pooled: (n, H), MLP applied for `cls`.

        ``training_loss``: the caller needs the pooled vectors only (the contrastive loss), so a [CLS]
        pooler may skip the last layer's other positions (simcse.cls_shortcut; ``outputs`` then holds
        only ``pooler_output``).
        """
        pooler_type = self.config.pooler_type
        if training_loss and not encoder_kwargs and self._use_cls_shortcut():
            pooled = cls_embedding(self.encoder, input_ids, attention_mask, token_type_ids, pooler_type)  # (n, H)
            return pooled, BaseModelOutputWithPoolingAndCrossAttentions(pooler_output=pooled)
        outputs = self.encoder(
            input_ids=input_ids,
            attention_mask=attention_mask,
            token_type_ids=token_type_ids,
            output_hidden_states=needs_hidden_states(pooler_type),
            return_dict=True,
            **encoder_kwargs,
        )
        if pooler_type == "cls":
            return outputs.pooler_output, outputs  # dense + tanh over the first token = the MLP
        return pool(pooler_type, attention_mask, outputs.last_hidden_state, outputs.hidden_states), outputs

    length_buckets: int = DEFAULT_LENGTH_BUCKETS
    same_dropout_mask: bool = False  # train.py --same_dropout_mask: the "fixed 0.1" ablation (unsup only)
    cls_only_last_layer: bool = True  # speed only (train.py --cls_only_last_layer); see simcse.cls_shortcut

    def _use_cls_shortcut(self) -> bool:
        """Whether the training forward may run the last layer at [CLS] only (same loss, less work).
        Not under torch.compile: swapping the layer list inside a compiled forward would break the graph."""
        return (
            self.cls_only_last_layer
            and self.config.pooler_type in CLS_POOLERS
            and not torch.compiler.is_compiling()
            and supports_cls_shortcut(self.encoder)
        )
    # forward() takes **kwargs only to pass encoder options through; it does not normalise its loss by
    # token counts, so transformers must not treat it as a loss-kwargs model (GA / device scaling).
    accepts_loss_kwargs = False

    def forward(
        self,
        input_ids: torch.Tensor,
        attention_mask: torch.Tensor | None = None,
        token_type_ids: torch.Tensor | None = None,
        mlm_input_ids: torch.Tensor | None = None,
        mlm_labels: torch.Tensor | None = None,
        sent_emb: bool = False,
        return_dict: bool = True,
        **kwargs: Any,
    ):
        """Training loss (inputs (B, S, L)) or, with ``sent_emb=True``, sentence embeddings (inputs (n, L))."""
        kwargs.pop("labels", None)  # never used: the positives are defined by position
        kwargs.pop("output_hidden_states", None)
        kwargs.pop("num_items_in_batch", None)
        if attention_mask is None:
            attention_mask = torch.ones_like(input_ids)
        if sent_emb:
            return self._sentence_embedding(input_ids, attention_mask, token_type_ids, return_dict, **kwargs)
        return self._contrastive_forward(
            input_ids, attention_mask, token_type_ids, mlm_input_ids, mlm_labels, return_dict, **kwargs
        )

    def _sentence_embedding(self, input_ids, attention_mask, token_type_ids, return_dict, **kwargs):
        pooled, outputs = self._encode(input_ids, attention_mask, token_type_ids, **kwargs)
        if self.config.pooler_type == "cls" and self.config.mlp_only_train:
            pooled = outputs.last_hidden_state[:, 0]  # train with the MLP, use raw [CLS] (unsup recipe)
        if not return_dict:
            return (outputs.last_hidden_state, pooled)
        return BaseModelOutputWithPoolingAndCrossAttentions(
            last_hidden_state=outputs.last_hidden_state, pooler_output=pooled, hidden_states=outputs.hidden_states
        )

    def _contrastive_forward(
        self, input_ids, attention_mask, token_type_ids, mlm_input_ids, mlm_labels, return_dict, **kwargs
    ):
        if self.same_dropout_mask:
            # "fixed 0.1" (paper Table 3): encode each sentence once; its embedding is both views.
            input_ids, attention_mask, token_type_ids, mlm_input_ids, mlm_labels = _first_view(
                input_ids, attention_mask, token_type_ids, mlm_input_ids, mlm_labels
            )
        batch_size, num_sent, seq_len = input_ids.shape  # (B, S, L); S = 2 pairs, 3 with hard negatives

        def flat(t: torch.Tensor | None) -> torch.Tensor | None:
            # (B, S, L) -> (B*S, L), rows ordered ex0-s0, ex0-s1, (ex0-s2), ex1-s0, ...
            return None if t is None else t.reshape(batch_size * num_sent, -1)

        # One pass over all B*S sentences: the two views of a sentence differ only by dropout.
        buckets = effective_length_buckets(self.length_buckets, input_ids.device)
        if buckets > 1 and not kwargs:
            pooled = encode_in_buckets(
                lambda ids, mask, tt: self._encode(ids, mask, tt, training_loss=True)[0],
                flat(input_ids),
                flat(attention_mask),
                flat(token_type_ids),
                buckets,
            )
            hidden_states = None
        else:
            pooled, outputs = self._encode(
                flat(input_ids), flat(attention_mask), flat(token_type_ids), training_loss=True, **kwargs
            )
            hidden_states = outputs.hidden_states
        pooled = pooled.view(batch_size, num_sent, -1)  # (B, S, H)
        if self.same_dropout_mask:
            pooled = pooled.expand(-1, 2, -1)  # (B, 1, H) -> (B, 2, H): z2 is z1, one mask for both views
        z1, z2 = pooled[:, 0], pooled[:, 1]  # (B, H) anchors, positives
        z3 = pooled[:, 2] if num_sent == 3 else None  # (B, H) hard negatives

        if self.training and self.config.gather_negatives:
            z3 = gather_with_local_grad(z3) if z3 is not None else None  # (N, H), N = B * world size
            z1, z2 = gather_with_local_grad(z1), gather_with_local_grad(z2)

        loss, logits = contrastive_loss(
            z1,
            z2,
            z3,
            temp=self.config.temp,
            hard_negative_weight=self.config.hard_negative_weight,
            similarity=getattr(self.config, "similarity", "cosine"),
        )

        if self.config.do_mlm and mlm_input_ids is not None:
            # The MLM objective needs its own pass over the masked ids (dropout active again).
            mlm_out = self.encoder(
                input_ids=flat(mlm_input_ids),
                attention_mask=flat(attention_mask),
                token_type_ids=flat(token_type_ids),
                return_dict=True,
            )
            mlm_loss = self._mlm_loss(mlm_out.last_hidden_state, flat(mlm_labels))
            loss = loss + self.config.mlm_weight * mlm_loss

        if not return_dict:
            return (loss, logits)
        return SequenceClassifierOutput(loss=loss, logits=logits, hidden_states=hidden_states)

    def _mlm_loss(self, hidden: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
        """Cross-entropy of the masked tokens (SPEC 1.7: mean over labels != -100).

        hidden: (n, L, H), labels: (n, L). Only the masked positions (~15%) go through the vocabulary
        projection: the other positions are ignored by the loss, so computing their (V,) scores, as the
        original does, only costs time (the projection and softmax over 30k words dominate the MLM step).
        Under torch.compile the full projection is kept: a data-dependent row count breaks the graph.
        """
        hidden = hidden.reshape(-1, hidden.size(-1))  # (n*L, H)
        labels = labels.reshape(-1)  # (n*L,)
        if not torch.compiler.is_compiling():
            keep = labels != -100  # (n*L,); the one host sync of the MLM path
            hidden, labels = hidden[keep], labels[keep]  # (m, H), (m,)
        scores = self.mlm_head(hidden)  # (m, V)
        return F.cross_entropy(scores.float(), labels)

    def _init_simcse_weights(self, module: nn.Module) -> None:
        # The output bias lives outside nn.Linear, so HF's generic init does not cover it.
        if isinstance(module, (_BertPredictions, _RobertaMLMHead)):
            nn.init.zeros_(module.bias)


class BertForCL(_SimCSEMixin, BertPreTrainedModel):
    """SimCSE on a BERT encoder (stored as ``bert``; the MLP is ``bert.pooler``)."""

    _mlm_head_name = "cls"
    _keys_to_ignore_on_load_unexpected = [r"cls\.seq_relationship", r"lm_head\.decoder\.bias"]

    def __init__(self, config: PretrainedConfig) -> None:
        super().__init__(config)
        self._build_simcse(BertModel, _BertMLMHead)
        self.post_init()

    def _init_weights(self, module: nn.Module) -> None:
        super()._init_weights(module)
        self._init_simcse_weights(module)


class RobertaForCL(_SimCSEMixin, RobertaPreTrainedModel):
    """SimCSE on a RoBERTa encoder (stored as ``roberta``; the MLP is ``roberta.pooler``)."""

    _mlm_head_name = "lm_head"
    _keys_to_ignore_on_load_unexpected = [r"lm_head\.decoder\.bias"]

    def __init__(self, config: PretrainedConfig) -> None:
        super().__init__(config)
        self._build_simcse(RobertaModel, _RobertaMLMHead)
        self.post_init()

    def _init_weights(self, module: nn.Module) -> None:
        super()._init_weights(module)
        self._init_simcse_weights(module)


MODEL_CLASSES: dict[str, type] = {"bert": BertForCL, "roberta": RobertaForCL}


def model_class_for(config: PretrainedConfig, source: str = "") -> type:
    """Pick the SimCSE class from ``config.model_type``; a clear error for anything else."""
    model_type = getattr(config, "model_type", None)
    if model_type not in MODEL_CLASSES:
        where = f"{source}: " if source else ""
        raise UnsupportedModelError(
            f"{where}model type {model_type!r} is not supported; SimCSE heads exist for {', '.join(MODEL_CLASSES)}"
        )
    return MODEL_CLASSES[model_type]


def load_cl_model(
    model_name_or_path: str,
    config: PretrainedConfig | None = None,
    simcse_settings: dict[str, Any] | None = None,
    **from_pretrained_kwargs: Any,
) -> nn.Module:
    """Load a pre-trained encoder (or a SimCSE checkpoint) into the matching SimCSE head.

    ``simcse_settings`` (pooler_type, temp, ...) are written into the config. A checkpoint that
    already records a SimCSE ``pooler_type`` keeps its trained MLP; for any other checkpoint the
    MLP is freshly initialised (BERT's NSP pooler is not SimCSE's MLP) and, with MLM, a missing
    decoder is initialised by value from the input embeddings.
    """
    if config is None:
        config = AutoConfig.from_pretrained(model_name_or_path)
    cls = model_class_for(config, model_name_or_path)
    is_simcse_checkpoint = getattr(config, "pooler_type", None) is not None
    for name, value in {**SIMCSE_CONFIG_DEFAULTS, **(simcse_settings or {})}.items():
        if name in (simcse_settings or {}) or not hasattr(config, name):
            setattr(config, name, value)
    model, info = cls.from_pretrained(
        model_name_or_path, config=config, output_loading_info=True, **from_pretrained_kwargs
    )
    missing = set(info.get("missing_keys", []))
    if config.pooler_type == "cls" and (not is_simcse_checkpoint or any(".pooler." in k for k in missing)):
        model.reset_mlp()
    head = model.mlm_head
    if head is not None and any(k.endswith("decoder.weight") for k in missing):
        with torch.no_grad():
            head.decoder.weight.copy_(model.encoder.get_input_embeddings().weight)
        logger.info("MLM decoder not in checkpoint: initialised from the input embeddings (untied copy)")
    return model
