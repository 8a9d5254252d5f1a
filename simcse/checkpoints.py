"""What the SimCSE heads of a run start from, for each kind of checkpoint (used by ``load_cl_model``).

Three kinds of checkpoint reach ``train.py --model_name_or_path`` (README "Starting from a checkpoint"):

* ``"simcse"``: ours, a ``checkpoint-N`` folder or a finished ``output_dir``; its config.json records the
  pooler, its weights hold the MLP as the encoder pooler and the MLM head under the pre-trained names;
* ``"original"``: a folder saved by the original SimCSE code and not converted (``BertForCL`` /
  ``RobertaForCL``, MLP at ``mlp.dense.*``, MLM head at ``lm_head.*``, no pooler in config.json);
* ``"pretrained"``: anything else, a plain encoder or masked-LM checkpoint, and also converted SimCSE
  models (``princeton-nlp/*``), whose config records no pooler.

Trained heads (the first two kinds) are always kept, so continuing or fine-tuning a run throws no trained
weight away. A pre-trained pooler (BERT's NSP pooler) is never the SimCSE MLP. A pre-trained masked-LM head
is RoBERTa's start, as in the original; BERT's only with ``mlm_head_from_checkpoint``.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import torch
from transformers import PretrainedConfig

from simcse.loading import pooler_untrained

# config.json `architectures` of an unconverted folder of the original code (whose config records no
# pooler_type; ours always do, so our own checkpoints, also `BertForCL`, are never mistaken for one).
ORIGINAL_ARCHITECTURES = frozenset({"BertForCL", "RobertaForCL"})

FORMAT_NAMES = {
    "simcse": "SimCSE checkpoint",
    "original": "original SimCSE checkpoint (not converted)",
    "pretrained": "pre-trained checkpoint",
}


def checkpoint_format(config: PretrainedConfig) -> str:
    """``"simcse"``, ``"original"`` or ``"pretrained"`` (module doc), judged from the checkpoint's own config,
    before any SimCSE setting of the new run is written into it."""
    if getattr(config, "pooler_type", None) is not None:
        return "simcse"
    if ORIGINAL_ARCHITECTURES.intersection(getattr(config, "architectures", None) or ()):
        return "original"
    return "pretrained"


def read_original_checkpoint(model_name_or_path: str, hub_kwargs: dict[str, Any]) -> dict[str, torch.Tensor]:
    """The weights of an original-format folder (``pytorch_model.bin``, or a ``model.safetensors`` re-save).

    Read here and renamed by :func:`original_to_our_keys` rather than through transformers'
    ``from_pretrained(key_mapping=...)``: transformers reverts a key mapping when the model is saved, so every
    checkpoint of the continued run would again be in the original format.
    """
    from simcse.convert import find_weight_files, load_state_dict
    from simcse.models import SINGLE_WEIGHT_FILES

    folder = Path(model_name_or_path)
    if folder.is_dir():
        return load_state_dict(find_weight_files(folder)[0])[0]
    from transformers.utils import cached_file  # a hub id: fetch the file transformers would read

    cache = {k: hub_kwargs[k] for k in ("cache_dir", "revision", "token") if hub_kwargs.get(k) is not None}
    for name in SINGLE_WEIGHT_FILES:
        file = cached_file(model_name_or_path, name, _raise_exceptions_for_missing_entries=False, **cache)
        if file is not None:
            return load_state_dict(Path(file))[0]
    raise FileNotFoundError(f"{model_name_or_path}: no {' or '.join(SINGLE_WEIGHT_FILES)} found")


def original_to_our_keys(
    state: dict[str, torch.Tensor], encoder_prefix: str, head_prefix: str
) -> dict[str, torch.Tensor]:
    """Rename an original-format state dict to our keys: ``mlp.*`` -> ``<encoder_prefix>.pooler.*`` (our MLP
    is the encoder's pooling layer) and ``lm_head.*`` -> ``<head_prefix>*`` (BERT: ``cls.predictions.``;
    RoBERTa: ``lm_head.``, unchanged). Encoder keys (``bert.*``/``roberta.*``) are the same in both."""
    out: dict[str, torch.Tensor] = {}
    for key, tensor in state.items():
        if key.startswith("mlp."):
            key = f"{encoder_prefix}.pooler.{key[len('mlp.'):]}"
        elif key.startswith("lm_head."):
            key = head_prefix + key[len("lm_head.") :]
        out[key] = tensor
    return out


def start_mlp(model: Any, source: str, missing: set[str]) -> tuple[str, str]:
    """Keep a trained MLP, start any other fresh; returns (``checkpoint``/``fresh``/``none``, log text)."""
    config = model.config
    if config.pooler_type != "cls":
        return "none", f"none (pooler_type {config.pooler_type})"
    if source == "pretrained":
        model.reset_mlp()
        return "fresh", "freshly initialised (a pre-trained pooler is not the SimCSE MLP)"
    if pooler_untrained(model):  # the one untrained-pooler check (simcse.loading)
        model.reset_mlp()
        return "fresh", "freshly initialised (not in the checkpoint)"
    where = "mlp.dense.*" if source == "original" else f"{model.base_model_prefix}.pooler.dense.*"
    return "checkpoint", f"loaded from the checkpoint ({where})"


def start_mlm_head(model: Any, source: str, missing: set[str], from_checkpoint: bool) -> tuple[str, str]:
    """Keep a trained MLM head; a pre-trained one is kept for RoBERTa and, with ``from_checkpoint``, for BERT;
    otherwise, or when absent, the head starts fresh. A decoder the checkpoint lacks (today's transformers
    saves a tied decoder only as the input embeddings) is an untied copy of the input embeddings.
    Returns (``checkpoint``/``fresh``/``none``, log text)."""
    head = model.mlm_head
    if head is None:
        return "none", "none (no do_mlm)"
    head_keys = [k for k, _ in model.named_parameters() if k.startswith(model._mlm_head_prefix)]
    absent = {k for k in head_keys if k in missing}
    names = model._mlm_head_prefix + "*"
    if source == "original" and model._mlm_head_prefix != "lm_head.":
        names = f"lm_head.* as {names}"
    decoder_absent = any(k.endswith("decoder.weight") for k in absent)
    if len(absent) == len(head_keys):
        status, text = "fresh", "freshly initialised (not in the checkpoint)"
    elif source == "pretrained" and not (model._pretrained_mlm_head_by_default or from_checkpoint):
        model.reset_mlm_head()  # its decoder is a copy of the input embeddings
        status = "fresh"
        text = (
            f"freshly initialised (the checkpoint's pre-trained {names} not used; "
            "--mlm_head_from_checkpoint starts from it)"
        )
        decoder_absent = True
    else:
        status = "checkpoint"
        flag = ", --mlm_head_from_checkpoint" if source == "pretrained" and from_checkpoint else ""
        text = f"loaded from the checkpoint ({names}{flag})"
    if decoder_absent:
        with torch.no_grad():
            head.decoder.weight.copy_(model.encoder.get_input_embeddings().weight)
        text += ", decoder a copy of the input embeddings"
    return status, text
