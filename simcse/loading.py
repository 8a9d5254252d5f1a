"""The one way a checkpoint becomes a model: the weights check, ``from_pretrained`` and its loading report.

Training (``simcse.models.load_cl_model``), ``evaluation.py``, in-training evaluation and the ``SimCSE``
tool all load through :func:`load_pretrained`, so a folder without weights fails the same way
everywhere (one line naming the folder, before any work), and every loaded model carries
transformers' loading report (``model.simcse_loading_info``) for :func:`pooler_untrained`.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import torch

from simcse.load_errors import check_loading_info, check_model_source, translate_load_errors

# Unsharded weight files: the ones conversion (simcse.convert) reads and rewrites.
SINGLE_WEIGHT_FILES: tuple[str, ...] = ("model.safetensors", "pytorch_model.bin")
WEIGHT_FILES: tuple[str, ...] = (  # any of these makes a loadable folder (sharded indexes too)
    "model.safetensors",
    "model.safetensors.index.json",
    "pytorch_model.bin",
    "pytorch_model.bin.index.json",
)


def check_model_weights(model_name_or_path: str | os.PathLike) -> None:
    """A local model folder must hold a config and weights: without them transformers fails late, with a
    traceback; name the incomplete folder before any work, in one line (simcse.load_errors; hub ids are
    checked when they are fetched)."""
    if Path(model_name_or_path).is_dir():
        check_model_source(model_name_or_path)


def load_pretrained(model_class: Any, model_name_or_path: str | os.PathLike, **kwargs: Any) -> tuple[Any, dict]:
    """``model_class.from_pretrained`` after the weights check; returns (model, loading info).

    ``model_class``: ``AutoModel`` or a SimCSE head class; ``kwargs`` go to ``from_pretrained`` (with a
    ``state_dict`` the weights come from it, as transformers wants, and the folder gives only the config).
    The loading report is also kept on ``model.simcse_loading_info``.
    """
    check_model_source(model_name_or_path, cache_dir=kwargs.get("cache_dir"), revision=kwargs.get("revision"))
    source = None if kwargs.get("state_dict") is not None else str(model_name_or_path)
    # Wrong-shape parameters are reported (not raised) so that check_loading_info names them in one line.
    kwargs.setdefault("ignore_mismatched_sizes", True)
    with translate_load_errors(str(model_name_or_path), cache_dir=kwargs.get("cache_dir")):
        model, info = model_class.from_pretrained(source, output_loading_info=True, **kwargs)
    check_loading_info(info, model_name_or_path)  # encoder parameters missing or of the wrong shape
    model.simcse_loading_info = info
    return model, info


def load_encoder(
    model_name_or_path: str | os.PathLike, device: str | torch.device | None = None, **kwargs: Any
) -> tuple[Any, Any]:
    """(plain HF encoder, tokenizer) for embedding sentences: ``AutoModel`` in eval mode on ``device``
    (default: CUDA when available). ``kwargs`` go to ``from_pretrained`` (e.g. ``attn_implementation``)."""
    from transformers import AutoModel, AutoTokenizer

    check_model_source(model_name_or_path)  # one line for a bad path, folder or offline hub id
    with translate_load_errors(str(model_name_or_path), part="tokenizer"):
        tokenizer = AutoTokenizer.from_pretrained(str(model_name_or_path))
    model, _ = load_pretrained(AutoModel, model_name_or_path, **kwargs)
    model.to(device or default_device())
    model.eval()
    return model, tokenizer


def default_device() -> str:
    return "cuda:0" if torch.cuda.is_available() else "cpu"


def pooler_untrained(model: Any) -> bool:
    """True when the checkpoint had no ``pooler.*`` weights (transformers initialised them randomly):
    the ``cls`` pooler of such a model reads a random layer."""
    info = getattr(model, "simcse_loading_info", None) or {}
    return any("pooler." in k for k in info.get("missing_keys", ()))


def untrained_pooler_problem(model: Any, pooler: str) -> str | None:
    """The one message for the ``cls`` pooler over a checkpoint without trained pooler weights, or None."""
    if pooler != "cls" or not pooler_untrained(model):
        return None
    return (
        "pooler 'cls' reads the HF pooler layer, but this checkpoint has no trained pooler weights (randomly "
        "initialised, so the embeddings are near-random); convert the checkpoint (simcse_to_huggingface.py) "
        "or use the cls_before_pooler / avg pooler"
    )


__all__ = [
    "SINGLE_WEIGHT_FILES",
    "WEIGHT_FILES",
    "check_model_weights",
    "default_device",
    "load_encoder",
    "load_pretrained",
    "pooler_untrained",
    "untrained_pooler_problem",
]
