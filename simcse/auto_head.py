"""One SimCSE head over any supported encoder ``AutoModel`` (README "Supported models").

BERT and RoBERTa keep their dedicated heads (simcse.models: their numbers and checkpoints must not move);
every other type of simcse.families gets a head class made here from transformers' own classes for that
type, with the same forward as BERT's (the shared mixin of simcse.models):

* the encoder is the type's ``AutoModel`` class, stored under its ``base_model_prefix`` so the keys of a
  trained head are the keys of a pre-trained masked-LM checkpoint and conversion only strips the prefix;
* the SimCSE MLP is the encoder's pooling layer where it has one (XLM-R, CamemBERT, MPNet: ``pooler.dense``;
  ALBERT: ``pooler`` + ``pooler_activation``), so ``pooler_output`` is the ``cls`` embedding after export;
  otherwise a :class:`simcse.poolers.SimCSEMLP` at ``mlp.dense`` (the original's name for the MLP);
* with ``do_mlm`` the head modules of the type's ``AutoModelForMaskedLM`` are children of the SimCSE head
  under their own names (``vocab_transform``, ``generator_lm_head``, ``head``/``decoder``, ...), so a
  masked-LM checkpoint's own head weights load; the MLM loss is that class's own forward (mean cross-entropy
  over the masked tokens), its decoder untied from the input embeddings as for BERT and RoBERTa
  (docs/FAITHFULNESS.md, "MLM auxiliary objective");
* ``token_type_ids`` reach the encoder only where its forward takes them.
"""

from __future__ import annotations

import copy
import functools
from typing import Any

import torch
from torch import nn
from transformers import PretrainedConfig, PreTrainedModel
from transformers.modeling_outputs import BaseModelOutputWithPoolingAndCrossAttentions

from simcse.cls_shortcut import cls_embedding
from simcse.families import Family, family
from simcse.poolers import SimCSEMLP, needs_hidden_states, pool
from simcse.settings import DEFAULTS as SETTINGS_DEFAULTS
from simcse.settings import RuntimeOptions


def _build_generic(model: Any, runtime: RuntimeOptions | None) -> None:
    """Build encoder, MLP and (with ``do_mlm``) MLM head on ``model`` (a head class of :func:`head_class`)."""
    from simcse.poolers import check_pooler_type

    config = model.config
    for name, default in SETTINGS_DEFAULTS.items():
        if not hasattr(config, name):
            setattr(config, name, default)
    check_pooler_type(config.pooler_type)
    model.runtime = runtime if runtime is not None else RuntimeOptions()
    fam: Family = model.family
    wants_mlp = config.pooler_type == "cls"
    kwargs = {"add_pooling_layer": wants_mlp} if fam.pooler is not None else {}
    encoder = fam.encoder_class()(config, **kwargs)
    head_roots: list[str] = []
    if config.do_mlm:
        mlm_config = copy.deepcopy(config)
        mlm_config.tie_word_embeddings = False  # untied decoder, as the BERT/RoBERTa heads
        mlm = fam.mlm_class()(mlm_config)
        setattr(mlm, fam.prefix, encoder)  # the MLM forward runs *our* encoder
        for name, child in mlm.named_children():
            if name != fam.prefix:
                setattr(model, name, child)
                if any(True for _ in child.parameters()):
                    head_roots.append(name)
        object.__setattr__(model, "_mlm_model", mlm)  # not a submodule: its children are ours already
    setattr(model, fam.prefix, encoder)
    model._mlm_head_prefix = tuple(f"{name}." for name in head_roots)
    if wants_mlp and fam.separate_mlp:
        model.mlp = SimCSEMLP(config.hidden_size)
        # The embed path (simcse.poolers.embed_with_hf_encoder) finds the MLP on the encoder, so in-training
        # evaluation gives the training-time vectors; a plain attribute, not a submodule (no encoder key).
        object.__setattr__(encoder, "simcse_mlp", model.mlp)


class _GenericSimCSE:
    """The type-specific parts of the generic head; the forward itself is simcse.models' mixin."""

    family: Family
    _mlm_head_name = "_mlm_model"
    _pretrained_mlm_head_by_default = True  # a masked-LM checkpoint's own head weights are its start

    def __init__(self, config: PretrainedConfig, runtime: RuntimeOptions | None = None) -> None:
        super().__init__(config)
        _build_generic(self, runtime)
        self.post_init()

    @property
    def mlm_head(self) -> nn.Module | None:
        return self.__dict__.get("_mlm_model")

    @property
    def mlm_decoder(self) -> nn.Linear:
        return self.mlm_head.get_output_embeddings()

    def get_output_embeddings(self) -> nn.Module | None:
        return None  # nothing to tie: the MLM decoder stays untied

    def reset_mlp(self) -> None:
        """Fresh N(0, initializer_range) init of the MLP (a pre-trained pooler is not the SimCSE MLP)."""
        module = self.mlp if self.family.separate_mlp else self.encoder.pooler
        dense = getattr(module, "dense", module)  # ALBERT's pooler is the Linear itself
        nn.init.normal_(dense.weight, mean=0.0, std=self.config.initializer_range)
        nn.init.zeros_(dense.bias)

    def reset_mlm_head(self) -> None:  # never needed: the pre-trained head is the default start
        raise NotImplementedError

    def _encoder_inputs(self, input_ids, attention_mask, token_type_ids) -> dict[str, torch.Tensor]:
        inputs = {"input_ids": input_ids, "attention_mask": attention_mask}
        if token_type_ids is not None and self.family.token_type_ids:
            inputs["token_type_ids"] = token_type_ids
        return inputs

    def _encode(
        self, input_ids, attention_mask, token_type_ids, training_loss: bool = False, **encoder_kwargs
    ) -> tuple[torch.Tensor, Any]:
        """One encoder pass; returns (pooled (n, H) with the MLP applied for ``cls``, outputs)."""
        pooler_type = self.config.pooler_type
        token_type_ids = token_type_ids if self.family.token_type_ids else None
        if training_loss and not encoder_kwargs and self._use_cls_shortcut():
            pooled = cls_embedding(self.encoder, input_ids, attention_mask, token_type_ids, pooler_type)  # (n, H)
            return pooled, BaseModelOutputWithPoolingAndCrossAttentions(pooler_output=pooled)
        outputs = self.encoder(
            **self._encoder_inputs(input_ids, attention_mask, token_type_ids),
            output_hidden_states=needs_hidden_states(pooler_type),
            return_dict=True,
            **encoder_kwargs,
        )
        if pooler_type == "cls":
            if self.family.separate_mlp:
                return self.mlp(outputs.last_hidden_state[:, 0]), outputs  # (n, H)
            return outputs.pooler_output, outputs  # the encoder's pooling layer = the MLP
        return pool(pooler_type, attention_mask, outputs.last_hidden_state, outputs.hidden_states), outputs

    def _mlm_objective(self, mlm_input_ids, attention_mask, token_type_ids, mlm_labels) -> torch.Tensor:
        """The type's own masked-LM forward and loss (mean over labels != -100); inputs (n, L)."""
        inputs = self._encoder_inputs(mlm_input_ids, attention_mask, token_type_ids)
        return self.mlm_head(**inputs, labels=mlm_labels, return_dict=True).loss

    def _init_weights(self, module: nn.Module) -> None:
        super()._init_weights(module)
        if isinstance(module, SimCSEMLP):
            nn.init.normal_(module.dense.weight, mean=0.0, std=self.config.initializer_range)
            nn.init.zeros_(module.dense.bias)


@functools.cache
def head_class(model_type: str) -> type:
    """The SimCSE head class for ``model_type`` (a subclass of the type's own ``PreTrainedModel``, so
    ``from_pretrained``, weight init and attention kernels are the type's)."""
    from simcse.models import _SimCSEMixin

    fam = family(model_type)
    encoder_cls = fam.encoder_class()
    base = next(c for c in encoder_cls.__mro__[1:] if issubclass(c, PreTrainedModel) and c is not PreTrainedModel)
    name = encoder_cls.__name__.removesuffix("Model") + "ForCL"
    return type(name, (_GenericSimCSE, _SimCSEMixin, base), {"family": fam, "__module__": __name__})


__all__ = ["head_class"]
