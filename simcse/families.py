"""The encoder families SimCSE supports, and what differs between them (README "Supported models").

Everything the SimCSE head, conversion, export and the tool need to know about an encoder is read here from
``config.model_type`` (never from a path) and from transformers' own classes for that type:

* the ``AutoModel`` class and its ``base_model_prefix`` (the key prefix of the encoder in a trained head);
* whether that class has a BERT-style pooling layer (dense + tanh over the first token, possibly as a plain
  ``Linear`` + ``Tanh`` as in ALBERT). When it has one, the SimCSE MLP *is* that layer, so
  ``AutoModel(...).pooler_output`` is the trained ``cls`` embedding after export; when it has none, the MLP
  is a module of its own (``mlp.dense``), exported as ``simcse_mlp.safetensors`` and as the
  sentence-transformers ``Dense`` module;
* whether the encoder's ``forward`` takes ``token_type_ids`` (DistilBERT, MPNet and ModernBERT do not);
* the masked-LM class for ``--do_mlm`` (its head modules keep their pre-trained names);
* which speed features are proven equal on the family (tests/test_any_encoder.py) and why the others
  are off.

BERT and RoBERTa keep their dedicated heads (simcse.models), whose numbers must not move; every other type
goes through the one generic head (simcse.auto_head).
"""

from __future__ import annotations

import functools
import inspect
import logging
from dataclasses import dataclass

logger = logging.getLogger(__name__)

# model_type -> why the [CLS]-only last layer (simcse.cls_shortcut) is off for it; absent = on. The shortcut
# re-runs a BERT-layout last layer by its submodules, so it is on only where that layout is the model's own
# and its equality with the full layer is tested (tests/test_any_encoder.py).
CLS_SHORTCUT_OFF: dict[str, str] = {
    "distilbert": "its layers (TransformerBlock: q_lin/k_lin/v_lin, sa_layer_norm) are not BERT's layout",
    "albert": "its layers are one shared AlbertLayerGroup, not a BERT layer list",
    "electra": "its embeddings are projected (embeddings_project) before the layers",
    "deberta-v2": "it uses disentangled relative-position attention",
    "mpnet": "its attention adds a relative-position bias to every layer",
    "modernbert": "it uses rotary embeddings, pre-LayerNorm layers and local attention",
}
# model_type -> why length buckets (simcse.length_buckets) are off; absent = on (equality tested per family).
LENGTH_BUCKETS_OFF: dict[str, str] = {}

# model_type -> the config fields ``--dropout p`` sets (the encoder's hidden and attention dropout, paper
# Table 3); absent = BERT's two names. ModernBERT's hidden dropout is split over embeddings and MLP outputs.
DROPOUT_FIELDS: dict[str, tuple[str, ...]] = {
    "distilbert": ("dropout", "attention_dropout"),
    "modernbert": ("embedding_dropout", "mlp_dropout", "attention_dropout"),
}
BERT_DROPOUT_FIELDS = ("hidden_dropout_prob", "attention_probs_dropout_prob")


def dropout_fields(model_type: str) -> tuple[str, ...]:
    """The config fields that hold ``model_type``'s encoder dropout (see DROPOUT_FIELDS)."""
    return DROPOUT_FIELDS.get(model_type, BERT_DROPOUT_FIELDS)


# The types with a SimCSE head, in the order the error message and the README list them.
SUPPORTED_MODEL_TYPES: tuple[str, ...] = (
    "bert", "roberta", "xlm-roberta", "camembert", "distilbert", "albert", "electra", "deberta-v2", "mpnet",
    "modernbert",
)


class UnsupportedFamilyError(ValueError):
    """``config.model_type`` is a decoder or a type without a SimCSE head (one line naming the supported list)."""


@dataclass(frozen=True)
class Family:
    """What SimCSE needs to know about one encoder type (module doc)."""

    model_type: str
    encoder_class_name: str  # the AutoModel class, also the exported ``architectures`` entry
    prefix: str  # base_model_prefix: the encoder's key prefix inside a SimCSE head
    pooler: str | None  # "dense" (pooler.dense + tanh), "linear" (pooler + pooler_activation), None (no pooler)
    token_type_ids: bool  # the encoder's forward takes token_type_ids
    mlm_class_name: str | None  # the AutoModelForMaskedLM class, None = no masked-LM head in transformers

    @property
    def cls_shortcut_off(self) -> str | None:
        return CLS_SHORTCUT_OFF.get(self.model_type)

    @property
    def length_buckets_off(self) -> str | None:
        return LENGTH_BUCKETS_OFF.get(self.model_type)

    @property
    def separate_mlp(self) -> bool:
        """The SimCSE MLP is a module of its own (``mlp.dense``), not the encoder's pooling layer."""
        return self.pooler is None

    def encoder_class(self) -> type:
        import transformers

        return getattr(transformers, self.encoder_class_name)

    def mlm_class(self) -> type:
        import transformers

        if self.mlm_class_name is None:
            raise UnsupportedFamilyError(
                f"--do_mlm: model type {self.model_type!r} has no masked-LM head in transformers; train without "
                "--do_mlm"
            )
        return getattr(transformers, self.mlm_class_name)


def unsupported_message(model_type: str | None, source: str = "") -> str:
    """The one line for a type without a SimCSE head: says whether it is a decoder, names the supported list."""
    from transformers.models.auto.modeling_auto import MODEL_FOR_CAUSAL_LM_MAPPING_NAMES, MODEL_MAPPING_NAMES

    where = f"{source}: " if source else ""
    if model_type in MODEL_FOR_CAUSAL_LM_MAPPING_NAMES and model_type in MODEL_MAPPING_NAMES:
        kind = "is a decoder (causal LM), not a bidirectional encoder"
    else:
        kind = "is not supported"
    return f"{where}model type {model_type!r} {kind}; SimCSE heads exist for {', '.join(SUPPORTED_MODEL_TYPES)}"


@functools.cache
def family(model_type: str | None) -> Family:
    """The :class:`Family` of ``model_type``; :class:`UnsupportedFamilyError` for anything else."""
    if model_type not in SUPPORTED_MODEL_TYPES:
        raise UnsupportedFamilyError(unsupported_message(model_type))
    import transformers
    from transformers.models.auto.modeling_auto import MODEL_FOR_MASKED_LM_MAPPING_NAMES, MODEL_MAPPING_NAMES

    encoder_name = MODEL_MAPPING_NAMES[model_type]
    encoder_cls = getattr(transformers, encoder_name)
    init = inspect.signature(encoder_cls.__init__).parameters
    if "add_pooling_layer" not in init:
        pooler = None
    elif model_type == "albert":
        pooler = "linear"  # AlbertModel: pooler = Linear(H, H), pooler_activation = Tanh
    else:
        pooler = "dense"
    forward = inspect.signature(encoder_cls.forward).parameters
    return Family(
        model_type=model_type,
        encoder_class_name=encoder_name,
        prefix=encoder_cls.base_model_prefix,
        pooler=pooler,
        token_type_ids="token_type_ids" in forward,
        mlm_class_name=MODEL_FOR_MASKED_LM_MAPPING_NAMES.get(model_type),
    )


@functools.cache
def mlm_head_roots(model_type: str) -> tuple[str, ...]:
    """The top-level module names of the type's masked-LM head (e.g. DistilBERT: ``vocab_transform``,
    ``vocab_layer_norm``, ``vocab_projector``), read from the class built on the meta device (no memory)."""
    fam = family(model_type)
    if fam.mlm_class_name is None:
        return ()
    import torch
    from transformers import AutoConfig

    with torch.device("meta"):
        mlm = fam.mlm_class()(AutoConfig.for_model(model_type))
    return tuple(n for n, child in mlm.named_children() if n != fam.prefix and any(True for _ in child.parameters()))


def family_or_none(model_type: str | None) -> Family | None:
    try:
        return family(model_type)
    except UnsupportedFamilyError:
        return None


_LOGGED: set[tuple[str, str]] = set()


def log_feature_off_once(model_type: str, feature: str, reason: str) -> None:
    """One INFO line per (type, feature) and process: the speed feature is off on this family, and why."""
    if (model_type, feature) not in _LOGGED:
        _LOGGED.add((model_type, feature))
        logger.info("%s is off for model type %r: %s (the same numbers, computed in full)", feature, model_type,
                    reason)


__all__ = [
    "CLS_SHORTCUT_OFF", "Family", "LENGTH_BUCKETS_OFF", "SUPPORTED_MODEL_TYPES", "UnsupportedFamilyError",
    "family", "family_or_none", "log_feature_off_once", "mlm_head_roots", "unsupported_message",
]
