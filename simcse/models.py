"""SimCSE training heads for BERT and RoBERTa encoders (docs/FAITHFULNESS.md, "Model head and inputs"), and the
dispatch to the generic head of the other supported types (simcse.auto_head; README "Supported encoders").

Design choices that differ from the original code, and why:

* The SimCSE MLP (dense H->H + tanh) *is* the encoder's HF pooling layer (``bert.pooler``), freshly
  initialised. It is the same architecture, so the saved weights load straight into a plain
  ``BertModel``/``RobertaModel`` whose ``pooler_output`` is the SimCSE ``cls`` embedding: no key
  renaming is needed, and ``AutoModel.from_pretrained`` works on every checkpoint we write.
* The SimCSE settings (``pooler_type``, ``temp``, ``mlp_only_train``, ...) live in the model
  config, so checkpoints describe themselves and tools pick the right pooler.
* The MLM head keeps the pre-trained checkpoint key names (``cls.predictions.*`` for BERT,
  ``lm_head.*`` for RoBERTa), and its decoder is *not* tied to the input embeddings (a [QUIRK] of the
  original, kept for faithful numbers). What the heads of a run start from, for each kind of checkpoint,
  is :mod:`simcse.checkpoints` (README "Starting from a checkpoint").
* The model class is chosen from ``config.model_type``, never from a substring of a path.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn
from transformers import AutoConfig, PretrainedConfig
from transformers.activations import ACT2FN
from transformers.modeling_outputs import BaseModelOutputWithPoolingAndCrossAttentions, SequenceClassifierOutput
from transformers.models.bert.modeling_bert import BertModel, BertPreTrainedModel
from transformers.models.roberta.modeling_roberta import RobertaModel, RobertaPreTrainedModel

from simcse.checkpoints import (
    FORMAT_NAMES,
    checkpoint_format,
    original_to_our_keys,
    read_original_checkpoint,
    start_mlm_head,
    start_mlp,
)
from simcse.cls_shortcut import CLS_POOLERS, cls_embedding, supports_cls_shortcut
from simcse.distributed import gather_with_local_grad
from simcse.families import SUPPORTED_MODEL_TYPES as FAMILY_TYPES
from simcse.families import UnsupportedFamilyError, unsupported_message
from simcse.length_buckets import effective_length_buckets, encode_in_buckets
from simcse.load_errors import ModelLoadError, translate_load_errors
from simcse.loading import (
    SINGLE_WEIGHT_FILES,
    WEIGHT_FILES,
    check_model_weights,
    load_pretrained,
    restore_separate_mlp,
)
from simcse.losses import contrastive_loss
from simcse.poolers import check_pooler_type, needs_hidden_states, pool
from simcse.settings import DEFAULTS as SETTINGS_DEFAULTS
from simcse.settings import RuntimeOptions, SimCSESettings

logger = logging.getLogger(__name__)

__all__ = [  # the weight-file names and check live in simcse.loading; re-exported for older imports
    "SINGLE_WEIGHT_FILES", "WEIGHT_FILES", "check_model_weights", "BertForCL", "RobertaForCL", "MODEL_CLASSES",
    "UnsupportedModelError", "load_cl_model", "model_class_for",
]

SUPPORTED_MODEL_TYPES = FAMILY_TYPES  # bert and roberta here; the others through simcse.auto_head


class UnsupportedModelError(ModelLoadError):
    """The checkpoint's ``config.model_type`` has no SimCSE head."""


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


def _flat(t: torch.Tensor | None) -> torch.Tensor | None:
    """(B, S, L) -> (B*S, L), rows ordered ex0-s0, ex0-s1, (ex0-s2), ex1-s0, ..."""
    return None if t is None else t.reshape(-1, t.shape[-1])


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

    def _build_simcse(self, encoder_cls: type, head_cls: type, runtime: RuntimeOptions | None) -> None:
        config = self.config
        for name, default in SETTINGS_DEFAULTS.items():
            if not hasattr(config, name):
                setattr(config, name, default)
        check_pooler_type(config.pooler_type)
        # Speed options: fixed when the model is built, never saved in the checkpoint.
        self.runtime = runtime if runtime is not None else RuntimeOptions()
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

    @torch.no_grad()
    def reset_mlm_head(self) -> None:
        """Fresh init of the MLM head, the same as for a head the checkpoint lacks: dense layers
        N(0, initializer_range) with zero bias, LayerNorm 1/0, output bias 0, and the (untied) decoder a
        copy of the input embeddings. Used when a pre-trained BERT head is deliberately not loaded."""
        head = self.mlm_head
        for module in head.modules():
            if isinstance(module, nn.Linear) and module is not head.decoder:
                nn.init.normal_(module.weight, mean=0.0, std=self.config.initializer_range)
                if module.bias is not None:
                    nn.init.zeros_(module.bias)
            elif isinstance(module, nn.LayerNorm):
                nn.init.ones_(module.weight)
                nn.init.zeros_(module.bias)
        nn.init.zeros_(head.predictions.bias if hasattr(head, "predictions") else head.bias)
        head.decoder.weight.copy_(self.encoder.get_input_embeddings().weight)

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

    runtime: RuntimeOptions  # set in __init__ (load_cl_model(..., runtime=...))

    # Read-only views of the speed options: they are fixed when the model is built, so a caller that still
    # assigns them (the old API) fails loudly instead of silently measuring or testing the default.
    @property
    def length_buckets(self) -> int:
        return self.runtime.length_buckets

    @property
    def cls_only_last_layer(self) -> bool:
        return self.runtime.cls_only_last_layer

    @property
    def same_dropout_mask(self) -> bool:
        """The "fixed 0.1" ablation (RuntimeOptions.same_dropout_mask): both views share one dropout mask."""
        return self.runtime.same_dropout_mask

    def _use_cls_shortcut(self) -> bool:
        """Whether the training forward may run the last layer at [CLS] only (same loss, less work).
        Not under torch.compile (not measured there; compiled graphs keep the full layer)."""
        return (
            self.runtime.cls_only_last_layer
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
        if kwargs.pop("embeddings_only", False):  # gradient caching (simcse/grad_cache.py): vectors, no loss
            return self.contrastive_embeddings(input_ids, attention_mask, token_type_ids)
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

    def _encode_views(
        self, input_ids: torch.Tensor, attention_mask: torch.Tensor, token_type_ids: torch.Tensor | None, **kwargs: Any
    ) -> tuple[torch.Tensor, Any]:
        """(B, S, L) inputs -> ((B, S, H) pooled vectors, hidden states or None): one pass over all B*S sentences
        (length buckets unless encoder options are passed; the [CLS]-only last layer where it applies). The one
        encoder path of the loss forward and of gradient caching, so that both take the same branches. Under
        "fixed 0.1" the inputs hold one view (S = 1) and both views are its vector: (B, 2, H)."""
        batch_size, num_sent, _ = input_ids.shape
        ids, mask, tt = _flat(input_ids), _flat(attention_mask), _flat(token_type_ids)  # (B*S, L), ex0-s0, ex0-s1, ...
        buckets = effective_length_buckets(self.runtime.length_buckets, input_ids.device)
        if buckets > 1 and not kwargs:
            pooled = encode_in_buckets(
                lambda i, m, t: self._encode(i, m, t, training_loss=True)[0], ids, mask, tt, buckets
            )
            hidden_states = None
        else:
            pooled, outputs = self._encode(ids, mask, tt, training_loss=True, **kwargs)  # (B*S, H)
            hidden_states = outputs.hidden_states
        pooled = pooled.view(batch_size, num_sent, -1)  # (B, S, H)
        if self.same_dropout_mask:
            pooled = pooled.expand(-1, 2, -1)  # (B, 1, H) -> (B, 2, H): z2 is z1, one mask for both views
        return pooled, hidden_states

    def contrastive_embeddings(
        self, input_ids: torch.Tensor, attention_mask: torch.Tensor, token_type_ids: torch.Tensor | None = None
    ) -> torch.Tensor:
        """The (B, S, H) vectors the contrastive loss reads, for (B, S, L) inputs: the loss forward's encoder
        path (:meth:`_encode_views`), without the loss. Gradient caching (simcse/grad_cache.py) calls it twice
        per chunk, with the same random state, so both passes must take the same branches."""
        if self.same_dropout_mask:  # "fixed 0.1": one encoding per sentence serves as both views
            input_ids, attention_mask, token_type_ids, _, _ = _first_view(
                input_ids, attention_mask, token_type_ids, None, None
            )
        return self._encode_views(input_ids, attention_mask, token_type_ids)[0]

    def _contrastive_forward(
        self, input_ids, attention_mask, token_type_ids, mlm_input_ids, mlm_labels, return_dict, **kwargs
    ):
        if self.same_dropout_mask:
            # "fixed 0.1" (paper Table 3): encode each sentence once; its embedding is both views.
            input_ids, attention_mask, token_type_ids, mlm_input_ids, mlm_labels = _first_view(
                input_ids, attention_mask, token_type_ids, mlm_input_ids, mlm_labels
            )
        num_sent = input_ids.shape[1]  # (B, S, L); S = 2 pairs, 3 with hard negatives
        # One pass over all B*S sentences: the two views of a sentence differ only by dropout.
        pooled, hidden_states = self._encode_views(input_ids, attention_mask, token_type_ids, **kwargs)
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
            similarity=self.config.similarity,
        )

        if self.config.do_mlm and mlm_input_ids is not None:
            # The MLM objective needs its own pass over the masked ids (dropout active again).
            mlm_loss = self._mlm_objective(_flat(mlm_input_ids), _flat(attention_mask), _flat(token_type_ids),
                                           _flat(mlm_labels))
            loss = loss + self.config.mlm_weight * mlm_loss

        if not return_dict:
            return (loss, logits)
        return SequenceClassifierOutput(loss=loss, logits=logits, hidden_states=hidden_states)

    def _mlm_objective(self, mlm_input_ids, attention_mask, token_type_ids, mlm_labels) -> torch.Tensor:
        """The masked-LM loss of one encoder pass over the masked ids; inputs (n, L)."""
        mlm_out = self.encoder(
            input_ids=mlm_input_ids, attention_mask=attention_mask, token_type_ids=token_type_ids, return_dict=True
        )
        return self._mlm_loss(mlm_out.last_hidden_state, mlm_labels)

    @property
    def mlm_decoder(self) -> nn.Linear:
        """The vocabulary projection of the MLM head (untied from the input embeddings)."""
        return self.mlm_head.decoder

    def _mlm_loss(self, hidden: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
        """Cross-entropy of the masked tokens, mean over labels != -100
        (docs/FAITHFULNESS.md, "MLM auxiliary objective").

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
        return F.cross_entropy(scores.to(torch.promote_types(scores.dtype, torch.float32)), labels)  # >= fp32

    def _init_simcse_weights(self, module: nn.Module) -> None:
        # The output bias lives outside nn.Linear, so HF's generic init does not cover it.
        if isinstance(module, (_BertPredictions, _RobertaMLMHead)):
            nn.init.zeros_(module.bias)


class BertForCL(_SimCSEMixin, BertPreTrainedModel):
    """SimCSE on a BERT encoder (stored as ``bert``; the MLP is ``bert.pooler``)."""

    _mlm_head_name = "cls"
    _mlm_head_prefix = "cls.predictions."  # the original's names: lm_head.* (decoder.bias duplicating bias)
    _pretrained_mlm_head_by_default = False  # see load_cl_model
    _keys_to_ignore_on_load_unexpected = [
        r"cls\.seq_relationship",
        r"lm_head\.decoder\.bias",
        r"cls\.predictions\.decoder\.bias",
    ]

    def __init__(self, config: PretrainedConfig, runtime: RuntimeOptions | None = None) -> None:
        super().__init__(config)
        self._build_simcse(BertModel, _BertMLMHead, runtime)
        self.post_init()

    def _init_weights(self, module: nn.Module) -> None:
        super()._init_weights(module)
        self._init_simcse_weights(module)


class RobertaForCL(_SimCSEMixin, RobertaPreTrainedModel):
    """SimCSE on a RoBERTa encoder (stored as ``roberta``; the MLP is ``roberta.pooler``)."""

    _mlm_head_name = "lm_head"
    _mlm_head_prefix = "lm_head."  # the original's names too
    _pretrained_mlm_head_by_default = True  # see load_cl_model
    _keys_to_ignore_on_load_unexpected = [r"lm_head\.decoder\.bias"]

    def __init__(self, config: PretrainedConfig, runtime: RuntimeOptions | None = None) -> None:
        super().__init__(config)
        self._build_simcse(RobertaModel, _RobertaMLMHead, runtime)
        self.post_init()

    def _init_weights(self, module: nn.Module) -> None:
        super()._init_weights(module)
        self._init_simcse_weights(module)


MODEL_CLASSES: dict[str, type] = {"bert": BertForCL, "roberta": RobertaForCL}


def model_class_for(config: PretrainedConfig, source: str = "") -> type:
    """Pick the SimCSE class from ``config.model_type`` (BERT/RoBERTa: their own heads; the other types of
    simcse.families: the generic head of simcse.auto_head); one clear line for decoders and unknown types."""
    model_type = getattr(config, "model_type", None)
    if model_type in MODEL_CLASSES:
        return MODEL_CLASSES[model_type]
    if model_type not in FAMILY_TYPES or getattr(config, "is_decoder", False):
        raise UnsupportedModelError(unsupported_message(model_type, source))
    from simcse.auto_head import head_class

    return head_class(model_type)


def _refuse_mlm_without_head(cls: type, model_name_or_path: str) -> None:
    """``do_mlm`` on a type without a masked-LM head in transformers: one clear line before any work."""
    if cls in MODEL_CLASSES.values():
        return  # BERT and RoBERTa: their own MLM heads
    try:
        cls.family.mlm_class()
    except UnsupportedFamilyError as err:
        raise UnsupportedModelError(f"{model_name_or_path}: {err}") from None


def _restore_exported_mlp(model: nn.Module, model_name_or_path: str, config: PretrainedConfig, info: dict) -> set:
    """An exported folder's trained separate MLP (``simcse_mlp.safetensors``) into ``model.mlp``; returns the
    keys still missing (``info["missing_keys"]`` is updated the same way)."""
    missing = set(info.get("missing_keys", []))
    if getattr(model, "mlp", None) is not None and "mlp.dense.weight" in missing:
        if restore_separate_mlp(model.mlp, model_name_or_path, config):
            missing -= {"mlp.dense.weight", "mlp.dense.bias"}
            info["missing_keys"] = [k for k in info.get("missing_keys", []) if not k.startswith("mlp.")]
    return missing


def load_cl_model(
    model_name_or_path: str,
    config: PretrainedConfig | None = None,
    simcse_settings: SimCSESettings | Mapping[str, Any] | None = None,
    runtime: RuntimeOptions | None = None,
    mlm_head_from_checkpoint: bool = False,
    **from_pretrained_kwargs: Any,
) -> nn.Module:
    """Load a pre-trained encoder (or a SimCSE checkpoint) into the matching SimCSE head.

    ``simcse_settings``: a :class:`SimCSESettings` (every setting is written into the config), a dict
    of some settings (those override what the checkpoint records, the rest is kept or defaulted), or
    None (the checkpoint's own settings, defaults for a plain encoder). ``runtime``: the speed options
    the model is built with (never saved). What the heads start from depends on the checkpoint
    (:func:`checkpoint_format`):

    * trained heads are always kept: the MLP and the MLM head of our checkpoints, and of unconverted
      original-format folders (``mlp.dense.*`` -> the encoder pooler, BERT's ``lm_head.*`` ->
      ``cls.predictions.*``), so continuing or fine-tuning a run throws no trained weight away;
    * a pre-trained checkpoint's pooler (BERT's NSP pooler) is never the SimCSE MLP: the MLP starts fresh;
    * a pre-trained masked-LM head (with ``do_mlm``): RoBERTa's ``lm_head.*`` is loaded, as in the original;
      BERT's ``cls.predictions.*`` is *not* loaded (the head starts fresh) unless ``mlm_head_from_checkpoint``
      (README "Starting from a checkpoint" says why this is the default and what the flag changes);
    * a head the checkpoint lacks starts fresh; a missing decoder is a copy of the input embeddings.

    One INFO line says what was loaded and what was freshly initialised; the same facts are kept in
    ``model.simcse_heads`` (train.py writes them into the run record).
    """
    if config is None:
        with translate_load_errors(model_name_or_path, part="config"):
            config = AutoConfig.from_pretrained(model_name_or_path)
    cls = model_class_for(config, model_name_or_path)
    source = checkpoint_format(config)
    if not isinstance(simcse_settings, SimCSESettings):
        simcse_settings = SimCSESettings.from_config(config, **dict(simcse_settings or {}))
    simcse_settings.to_config(config)
    runtime = runtime or RuntimeOptions()
    kwargs = {**runtime.from_pretrained_kwargs(), **from_pretrained_kwargs}
    if source == "original":
        with translate_load_errors(model_name_or_path):
            state = read_original_checkpoint(model_name_or_path, kwargs)
        kwargs["state_dict"] = original_to_our_keys(state, cls.base_model_prefix, cls._mlm_head_prefix)
    if config.do_mlm:
        _refuse_mlm_without_head(cls, model_name_or_path)
    model, info = load_pretrained(cls, model_name_or_path, config=config, runtime=runtime, **kwargs)
    missing = _restore_exported_mlp(model, model_name_or_path, config, info)
    mlp, mlp_text = start_mlp(model, source, missing)
    mlm, mlm_text = start_mlm_head(model, source, missing, mlm_head_from_checkpoint)
    if mlm != "none":
        model.config.mlm_head_init = mlm  # recorded in config.json and the model card
    elif hasattr(model.config, "mlm_head_init"):
        del model.config.mlm_head_init  # left by an earlier MLM run: this one has no MLM head
    model.simcse_heads = {"checkpoint_format": source, "mlp": mlp, "mlm_head": mlm}
    logger.info("SimCSE heads of %s (%s): MLP %s; MLM head %s", model_name_or_path, FORMAT_NAMES[source], mlp_text,
                mlm_text)
    return model
