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
    # encoder parameters missing or of the wrong shape (a generic head's MLM head modules are heads too)
    heads = getattr(model, "_mlm_head_prefix", ())
    check_loading_info(info, model_name_or_path, head_prefixes=(heads,) if isinstance(heads, str) else tuple(heads))
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
    attach_separate_mlp(model, model_name_or_path)
    model.to(device or default_device())
    model.eval()
    return model, tokenizer


def _separate_mlp_file(model_name_or_path: str | os.PathLike, config: Any) -> Path | None:
    """The exported MLP file of an encoder without a pooling layer (simcse.export), or None."""
    from simcse.poolers import SEPARATE_MLP_FILE

    name = getattr(config, "simcse_mlp", None) or SEPARATE_MLP_FILE
    folder = Path(model_name_or_path)
    if folder.is_dir():
        return folder / name if (folder / name).is_file() else None
    try:
        from transformers.utils import cached_file

        found = cached_file(str(model_name_or_path), name, _raise_exceptions_for_missing_entries=False)
    except OSError:
        return None
    return Path(found) if found else None


def restore_separate_mlp(mlp: torch.nn.Module, model_name_or_path: str | os.PathLike, config: Any) -> bool:
    """Load an exported folder's ``simcse_mlp.safetensors`` into ``mlp`` (a ``SimCSEMLP``); False if absent."""
    file = _separate_mlp_file(model_name_or_path, config)
    if file is None:
        return False
    from safetensors.torch import load_file

    state = load_file(str(file))  # {"dense.weight": (H, H), "dense.bias": (H,)}
    mlp.load_state_dict({k: v.to(mlp.dense.weight.dtype) for k, v in state.items()})
    return True


def attach_separate_mlp(model: Any, model_name_or_path: str | os.PathLike) -> bool:
    """For a plain ``AutoModel`` without a pooling layer whose folder holds the trained SimCSE MLP: register
    it as ``model.simcse_mlp``, so the ``cls`` pooler (simcse.poolers.embed_with_hf_encoder) gives the
    training-time vectors. Returns whether an MLP was attached."""
    if getattr(model, "pooler", None) is not None or getattr(model.config, "pooler_type", None) is None:
        return False
    from simcse.poolers import SimCSEMLP

    mlp = SimCSEMLP(model.config.hidden_size).to(dtype=next(model.parameters()).dtype)
    if not restore_separate_mlp(mlp, model_name_or_path, model.config):
        return False
    model.add_module("simcse_mlp", mlp)
    return True


def default_device() -> str:
    return "cuda:0" if torch.cuda.is_available() else "cpu"


def pooler_untrained(model: Any) -> bool:
    """True when the checkpoint had no ``pooler.*`` weights (transformers initialised them randomly):
    the ``cls`` pooler of such a model reads a random layer."""
    info = getattr(model, "simcse_loading_info", None) or {}
    return any("pooler." in k for k in info.get("missing_keys", ()))


def untrained_pooler_problem(model: Any, pooler: str) -> str | None:
    """The one message for the ``cls`` pooler over a checkpoint without trained pooler weights, or None."""
    if pooler != "cls":
        return None
    if getattr(model, "pooler", None) is None and getattr(model, "simcse_mlp", None) is None:
        return (
            f"pooler 'cls' needs the trained SimCSE MLP, but this {model.config.model_type} checkpoint has no pooling "
            "layer and no simcse_mlp.safetensors; export the trained run (simcse_to_huggingface.py) or use the "
            "cls_before_pooler / avg pooler"
        )
    if not pooler_untrained(model):
        return None
    return (
        "pooler 'cls' reads the HF pooler layer, but this checkpoint has no trained pooler weights (randomly "
        "initialised, so the embeddings are near-random); convert the checkpoint (simcse_to_huggingface.py) "
        "or use the cls_before_pooler / avg pooler"
    )


__all__ = [
    "SINGLE_WEIGHT_FILES",
    "WEIGHT_FILES",
    "attach_separate_mlp",
    "restore_separate_mlp",
    "check_model_weights",
    "default_device",
    "load_encoder",
    "load_pretrained",
    "pooler_untrained",
    "untrained_pooler_problem",
]
