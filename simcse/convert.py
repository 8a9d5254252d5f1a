"""Convert SimCSE checkpoints, in place, to plain HF ``BertModel``/``RobertaModel`` folders.
(docs/FAITHFULNESS.md, "Checkpoint conversion")

After conversion the SimCSE MLP is the HF ``pooler.dense``, so ``pooler_output`` *is* the trained ``cls``
embedding and ``last_hidden_state[:, 0]`` the ``cls_before_pooler`` one; the SimCSE fields
(``pooler_type``, ``mlp_only_train``, ...) stay in ``config.json``. Formats understood:

=====================  ==========================================================================
original SimCSE        ``pytorch_model.bin``; keys ``bert.*``/``roberta.*``; MLP at ``mlp.dense.*``
trainer (ours)         ``model.safetensors`` of ``BertForCL``/``RobertaForCL``; keys ``bert.*``/
                       ``roberta.*``; MLP at ``bert.pooler.dense.*`` (only for ``pooler_type=cls``)
final / HF             plain encoder keys, MLP at ``pooler.dense.*`` (conversion is a no-op)
=====================  ==========================================================================

MLM head keys (``cls.predictions.*`` for BERT, ``lm_head.*`` for RoBERTa) are *kept* by default,
as the original script did: conversion is in place without a backup, so dropping them would be
irreversible, and ``AutoModel`` ignores them (it lists them as unused keys). Pass
``drop_mlm_head=True`` for a smaller folder without that load-time notice.
"""

from __future__ import annotations

import json
import logging
import os
import tempfile
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch

from simcse.loading import SINGLE_WEIGHT_FILES
from simcse.poolers import check_pooler_type, eval_pooler_from_config
from simcse.settings import CONFIG_KEYS

logger = logging.getLogger(__name__)

SUPPORTED_MODEL_TYPES: dict[str, str] = {"bert": "BertModel", "roberta": "RobertaModel"}
MLM_HEAD_PREFIXES: tuple[str, ...] = ("cls.predictions.", "lm_head.")
# Every SimCSE setting's config.json key (simcse.settings), then what load_cl_model records about the run:
# with do_mlm, what the MLM head started from, "checkpoint" or "fresh" (simcse.checkpoints).
SIMCSE_CONFIG_FIELDS: tuple[str, ...] = (*CONFIG_KEYS, "mlm_head_init")


class ExportError(ValueError):
    """A folder cannot be converted or exported; the message says why and what to do."""


class UnsupportedPoolerError(ExportError):
    """The pooler has no sentence-transformers equivalent (the HF part of the folder still works)."""


@dataclass
class ConversionReport:
    """What :func:`convert_checkpoint` did, so the CLI and the trainer can print/log it."""

    path: Path
    model_type: str
    weight_files: list[str] = field(default_factory=list)
    renamed_keys: int = 0
    dropped_keys: list[str] = field(default_factory=list)
    kept_mlm_keys: int = 0
    architectures_before: list[str] | None = None
    architectures_after: list[str] = field(default_factory=list)
    has_trained_pooler: bool = False
    eval_pooler: str | None = None
    already_converted: bool = False
    notes: list[str] = field(default_factory=list)

    def summary(self) -> str:
        """Human-readable multi-line description (printed by ``simcse_to_huggingface.py``)."""
        if self.already_converted:
            head = f"{self.path}: already in HF format ({', '.join(self.weight_files)}), nothing changed"
        else:
            head = (
                f"{self.path}: converted {', '.join(self.weight_files)} ({self.renamed_keys} keys renamed), "
                f"architectures {self.architectures_before} -> {self.architectures_after}"
            )
        lines = [head, f"  model_type={self.model_type} trained MLP in pooler.dense: {self.has_trained_pooler}"]
        if self.eval_pooler:
            lines.append(f"  pooler to use at test time: {self.eval_pooler}")
        if self.kept_mlm_keys:
            lines.append(f"  kept {self.kept_mlm_keys} MLM head tensors (ignored by AutoModel)")
        if self.dropped_keys:
            lines.append(f"  dropped {len(self.dropped_keys)} MLM head tensors")
        lines += [f"  note: {n}" for n in self.notes]
        return "\n".join(lines)


# ----------------------------------------------------------------------------------------------- io


def atomic_write(target: Path, write: Callable[[Path], None]) -> None:
    """Write through a temp file in the same folder and ``os.replace`` it, so a crash mid-write never
    leaves a half-written weights file in place of the only copy of a checkpoint."""
    fd, tmp = tempfile.mkstemp(dir=target.parent, prefix=f".{target.name}.", suffix=".tmp")
    os.close(fd)
    try:
        write(Path(tmp))
        os.replace(tmp, target)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def write_json(target: Path, data: Any) -> None:
    atomic_write(target, lambda p: p.write_text(json.dumps(data, indent=2) + "\n", encoding="utf-8"))


def read_json(path: Path) -> dict[str, Any]:
    return json.loads(path.read_text(encoding="utf-8"))


def load_state_dict(file: Path) -> tuple[dict[str, torch.Tensor], dict[str, str] | None]:
    """Return (state dict, safetensors metadata or None)."""
    if file.suffix == ".safetensors":
        from safetensors import safe_open

        with safe_open(str(file), framework="pt") as f:
            return {k: f.get_tensor(k) for k in f.keys()}, f.metadata()
    return torch.load(file, map_location="cpu", weights_only=True), None


def save_state_dict(file: Path, state: dict[str, torch.Tensor], metadata: dict[str, str] | None) -> None:
    if file.suffix == ".safetensors":
        from safetensors.torch import save_file

        # transformers refuses safetensors files without format metadata
        meta = dict(metadata or {})
        meta.setdefault("format", "pt")
        state = {k: v.contiguous() for k, v in state.items()}
        atomic_write(file, lambda p: save_file(state, str(p), metadata=meta))
    else:
        atomic_write(file, lambda p: torch.save(state, p))


def find_weight_files(folder: Path) -> list[Path]:
    """The single-file weight files present in ``folder`` (sharded checkpoints are refused)."""
    files = [folder / name for name in SINGLE_WEIGHT_FILES if (folder / name).is_file()]
    if not files:
        sharded = [p.name for p in folder.glob("*.index.json")]
        if sharded:
            raise ExportError(f"{folder}: sharded checkpoint ({sharded[0]}) is not supported; re-save unsharded")
        raise ExportError(f"{folder}: no model weights found (expected one of: {', '.join(SINGLE_WEIGHT_FILES)})")
    return files


# ------------------------------------------------------------------------------------------ convert


def _rename_key(key: str, model_type: str) -> str:
    """SimCSE/trainer key -> plain encoder key. Prefix-anchored (the original's substring replace would
    turn ``roberta.x`` into ``rox`` if the ``bert.`` rule ran first)."""
    prefix = f"{model_type}."
    if key.startswith(prefix):
        return key[len(prefix) :]
    if key.startswith("mlp."):
        return "pooler." + key[len("mlp.") :]
    return key


def _convert_state_dict(
    state: Mapping[str, torch.Tensor], model_type: str, drop_mlm_head: bool, report: ConversionReport
) -> dict[str, torch.Tensor]:
    out: dict[str, torch.Tensor] = {}
    for key, tensor in state.items():
        if key.startswith(MLM_HEAD_PREFIXES):
            if drop_mlm_head:
                report.dropped_keys.append(key)
                continue
            report.kept_mlm_keys += 1
        new = _rename_key(key, model_type)
        if new != key:
            report.renamed_keys += 1
        if new in out:
            # Only possible if a checkpoint stores both an encoder pooler and a SimCSE MLP: the MLP is the
            # trained head, so it wins.
            if key.startswith("mlp."):
                report.notes.append(f"{key} replaces an existing {new} (the SimCSE MLP wins)")
            else:
                report.notes.append(f"{key} ignored: {new} already set by the SimCSE MLP")
                continue
        out[new] = tensor
    return out


def _architecture_for(config: dict[str, Any], path: Path) -> tuple[str, str]:
    model_type = config.get("model_type")
    if model_type not in SUPPORTED_MODEL_TYPES:
        raise ExportError(
            f"{path}: unsupported model_type {model_type!r} in config.json; "
            f"supported: {', '.join(SUPPORTED_MODEL_TYPES)}"
        )
    return model_type, SUPPORTED_MODEL_TYPES[model_type]


def convert_checkpoint(
    path: str | os.PathLike[str],
    *,
    pooler_type: str | None = None,
    drop_mlm_head: bool = False,
) -> ConversionReport:
    """Convert a SimCSE checkpoint folder to the plain HF encoder format, in place.

    Handles the original format (``pytorch_model.bin``, ``mlp.*``), our trainer format (safetensors,
    ``bert.pooler.*`` = MLP) and already-converted folders (reported as such, nothing rewritten), so
    it is safe to run twice. Every file is replaced atomically.

    Args:
        path: checkpoint folder with ``config.json`` and ``model.safetensors`` and/or ``pytorch_model.bin``.
        pooler_type: the pooler this checkpoint should be *used* with. Recorded in ``config.json`` (as
            ``pooler_type`` with ``mlp_only_train=False``) so that ``eval_pooler_from_config`` returns it;
            needed for original-format checkpoints, which record nothing. ``None`` keeps the config as is.
        drop_mlm_head: drop ``cls.predictions.*``/``lm_head.*`` instead of keeping them (see module doc).
    """
    folder = Path(path)
    config_file = folder / "config.json"
    if not config_file.is_file():
        raise ExportError(f"{folder}: no config.json (is this a checkpoint folder?)")
    config = read_json(config_file)
    model_type, target_arch = _architecture_for(config, folder)
    weight_files = find_weight_files(folder)
    if pooler_type is not None:
        check_pooler_type(pooler_type)

    report = ConversionReport(path=folder, model_type=model_type, weight_files=[p.name for p in weight_files])
    report.architectures_before = config.get("architectures")
    if report.architectures_before is None:
        report.notes.append(f"config.json had no 'architectures'; set from model_type={model_type!r}")

    changed_weights = _convert_weight_files(weight_files, model_type, drop_mlm_head, report)
    new_config = _converted_config(config, target_arch, pooler_type, report)
    changed_config = new_config != config
    if changed_config:
        write_json(config_file, new_config)
    report.architectures_after = new_config["architectures"]
    report.already_converted = not (changed_weights or changed_config)

    report.eval_pooler = eval_pooler_from_config(ConfigView(new_config))
    if report.eval_pooler == "cls" and not report.has_trained_pooler:
        report.notes.append(
            "pooler 'cls' but no trained pooler.dense weights: AutoModel will initialise the pooler randomly; "
            "use cls_before_pooler or avg with this checkpoint"
        )
    for note in report.notes:
        logger.warning("%s: %s", folder, note)
    logger.info(report.summary())
    return report


def _convert_weight_files(
    weight_files: list[Path], model_type: str, drop_mlm_head: bool, report: ConversionReport
) -> bool:
    """Rename the keys of every weight file (rewritten only if something changed); True if one was."""
    changed = False
    for file in weight_files:
        state, metadata = load_state_dict(file)
        sub_report = ConversionReport(path=report.path, model_type=model_type)
        new_state = _convert_state_dict(state, model_type, drop_mlm_head, sub_report)
        report.renamed_keys += sub_report.renamed_keys
        report.dropped_keys += sub_report.dropped_keys
        report.kept_mlm_keys = max(report.kept_mlm_keys, sub_report.kept_mlm_keys)
        report.notes += sub_report.notes
        report.has_trained_pooler = report.has_trained_pooler or "pooler.dense.weight" in new_state
        if sub_report.renamed_keys or sub_report.dropped_keys or sub_report.notes:
            save_state_dict(file, new_state, metadata)
            changed = True
    return changed


def _converted_config(
    config: dict[str, Any], target_arch: str, pooler_type: str | None, report: ConversionReport
) -> dict[str, Any]:
    """``config`` with the plain-encoder architecture and, if given, the test-time ``pooler_type``."""
    new_config = dict(config)
    new_config["architectures"] = [target_arch]
    if pooler_type is not None and eval_pooler_from_config(ConfigView(config)) != pooler_type:
        if config.get("pooler_type") is not None:
            report.notes.append(
                f"pooler override: config had pooler_type={config.get('pooler_type')!r} "
                f"mlp_only_train={config.get('mlp_only_train')!r}; now {pooler_type!r}, False"
            )
        new_config["pooler_type"] = pooler_type
        new_config["mlp_only_train"] = False
    return new_config


class ConfigView:
    """Attribute access over a config dict, for functions written against ``PretrainedConfig``."""

    def __init__(self, data: Mapping[str, Any]) -> None:
        self._data = data

    def __getattr__(self, name: str) -> Any:
        try:
            return self._data[name]
        except KeyError:
            raise AttributeError(name) from None
