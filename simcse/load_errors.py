"""One line, naming the path or hub id and the fix, for every way loading a model or tokenizer can fail.

transformers reports a typo in a local path as ``Repo id must be in the form ...``, an offline hub id as a
connection error with no word on which cache was searched, and a half-copied weights file as a
``SafetensorError`` traceback. This module turns each of those into a :class:`ModelLoadError` whose message
is one line that a command line prints as ``error: <message>`` with exit status 2 (docs/RELIABILITY.md).

Use it in two steps around every ``from_pretrained``:

* :func:`check_model_source` before loading: a path-like name that does not exist, a folder without
  ``config.json`` or without weights, an unreadable ``config.json``, a hub id that is not cached while the
  hub is switched off (``HF_HUB_OFFLINE=1``);
* ``with translate_load_errors(name):`` around the ``from_pretrained`` calls: damaged weights, a hub that
  cannot be reached, an unknown model type; then :func:`check_loading_info` on the loading report (encoder
  parameters missing, or of the wrong shape for the config).
"""

from __future__ import annotations

import json
import os
import pickle
from collections.abc import Iterable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

# Weight files transformers can load a local folder from (sharded checkpoints have an index).
WEIGHT_FILES: tuple[str, ...] = (
    "model.safetensors",
    "model.safetensors.index.json",
    "pytorch_model.bin",
    "pytorch_model.bin.index.json",
)
# Parameters that a plain encoder checkpoint lacks by design: the SimCSE MLP (the HF pooler, freshly
# initialised for a pre-trained encoder) and the MLM heads. Anything else missing is a broken checkpoint.
HEAD_PARTS: tuple[str, ...] = ("pooler.", "cls.", "lm_head.")


class ModelLoadError(ValueError):
    """A model or tokenizer that cannot be loaded; the message is one line naming the source and the fix."""


def looks_like_path(name_or_path: str | os.PathLike) -> bool:
    """A path, not a hub id: starts with ``/``, ``.`` or ``~``, or has more than one ``/`` (hub ids are
    ``name`` or ``namespace/name``)."""
    text = str(name_or_path)
    return text.startswith(("/", ".", "~")) or text.count("/") > 1 or (os.sep != "/" and os.sep in text)


def hub_cache(cache_dir: str | os.PathLike | None = None) -> tuple[str, str]:
    """(folder, what chose it) of the hub cache that transformers searches."""
    if cache_dir:
        return str(cache_dir), "--cache_dir"
    from huggingface_hub import constants

    for var in ("HF_HUB_CACHE", "HF_HOME"):
        if os.environ.get(var):
            return str(constants.HF_HUB_CACHE), var
    return str(constants.HF_HUB_CACHE), "the default; set HF_HOME or HF_HUB_CACHE to change it"


def _offline() -> bool:
    from huggingface_hub import constants

    return bool(constants.HF_HUB_OFFLINE) or os.environ.get("TRANSFORMERS_OFFLINE", "0").upper() in {"1", "ON", "YES"}


def not_cached_message(hub_id: str, cache_dir: str | os.PathLike | None = None) -> str:
    folder, chosen_by = hub_cache(cache_dir)
    return (
        f"{hub_id}: not in the hub cache {folder} ({chosen_by}) and the hub cannot be reached (offline); "
        "download it once with a network connection, or pass a local model folder instead"
    )


def _is_cached(hub_id: str, cache_dir: str | os.PathLike | None, revision: str | None) -> bool:
    from huggingface_hub import try_to_load_from_cache

    try:
        found = try_to_load_from_cache(hub_id, "config.json", cache_dir=cache_dir, revision=revision)
    except ValueError:  # not a valid repo id: transformers will say so below
        return True
    return isinstance(found, str)


def folder_weights(folder: Path) -> list[Path]:
    return [folder / name for name in WEIGHT_FILES if (folder / name).is_file()]


def check_model_source(
    name_or_path: str | os.PathLike,
    *,
    cache_dir: str | os.PathLike | None = None,
    revision: str | None = None,
    weights: bool = True,
) -> None:
    """Fail before any work, with one line, when ``name_or_path`` cannot be a loadable model.

    ``weights=False`` checks the folder and its config only (a tokenizer or config source, or a caller that
    first checks the model type, as train.py does, and the weights after).
    """
    text = str(name_or_path)
    path = Path(text).expanduser()
    if path.exists() or looks_like_path(text):
        if not path.exists():
            raise ModelLoadError(
                f"{text}: model folder not found (this is a path, not a hub id); check the path, "
                "or give a hub id of the form name or namespace/name"
            )
        if not path.is_dir():
            raise ModelLoadError(f"{text}: is a file, not a model folder; pass the folder that holds config.json")
        config = path / "config.json"
        if not config.is_file():
            raise ModelLoadError(
                f"{text}: not a model folder (no config.json); pass the folder that holds config.json and the "
                "weights (model.safetensors or pytorch_model.bin)"
            )
        try:
            json.loads(config.read_text(encoding="utf-8"))
        except (UnicodeDecodeError, json.JSONDecodeError) as err:
            raise ModelLoadError(
                f"{config}: not valid JSON ({err}); the file is damaged: copy or download the model again"
            ) from None
        except OSError as err:
            raise ModelLoadError(f"{config}: cannot be read ({err.strerror or err})") from None
        if weights and not folder_weights(path):
            raise ModelLoadError(
                f"{text}: model folder has no weights (expected model.safetensors or pytorch_model.bin); "
                "is the download or the copy incomplete?"
            )
        return
    if _offline() and not _is_cached(text, cache_dir, revision):
        raise ModelLoadError(not_cached_message(text, cache_dir))


def _damaged(source: str, err: BaseException, prefer_safetensors: bool) -> ModelLoadError:
    folder = Path(source).expanduser()
    files = folder_weights(folder) if folder.is_dir() else []
    order = sorted(files, key=lambda p: (p.suffix == ".safetensors") != prefer_safetensors)
    where = str(order[0]) if order else source
    detail = str(err).splitlines()[0] if str(err) else type(err).__name__
    return ModelLoadError(
        f"{where}: weights cannot be read ({detail}); the file is damaged or incomplete (an interrupted download "
        "or copy?): copy or download the model again"
    )


def _first_line(err: BaseException) -> str:
    text = str(err).strip()
    return text.splitlines()[0] if text else type(err).__name__


@contextmanager
def translate_load_errors(
    name_or_path: str | os.PathLike, *, cache_dir: str | os.PathLike | None = None, part: str = "model"
) -> Iterator[None]:
    """Turn what ``from_pretrained`` raises for a bad source into one-line :class:`ModelLoadError`.

    ``part`` says what the block loads (``"model"``, ``"config"`` or ``"tokenizer"``), so a failure is
    blamed on the right files.
    """
    source = str(name_or_path)
    local = Path(source).expanduser().is_dir()
    try:
        yield
    except ModelLoadError:
        raise
    except Exception as err:  # noqa: BLE001 - sorted below; anything unknown is re-raised unchanged
        from safetensors import SafetensorError

        text = str(err)
        if isinstance(err, SafetensorError) and "deserializ" in text:
            raise _damaged(source, err, prefer_safetensors=True) from err
        if local and (
            isinstance(err, (pickle.UnpicklingError, EOFError))
            or (isinstance(err, RuntimeError) and ("PytorchStreamReader" in text or "zip archive" in text))
            or (part == "model" and isinstance(err, OSError) and not text.startswith("It looks like the config"))
        ):
            raise _damaged(source, err, prefer_safetensors=False) from err
        if isinstance(err, ValueError) and "does not recognize this architecture" in text:
            model_type = text.split("model type `", 1)[-1].split("`", 1)[0]
            import transformers

            raise ModelLoadError(
                f"{source}: model type {model_type!r} is not known to transformers {transformers.__version__}; "
                "SimCSE supports bert and roberta encoders"
            ) from err
        if isinstance(err, ValueError) and "Unrecognized model in" in text:
            raise ModelLoadError(
                f"{source}: config.json has no model_type; this folder is not a transformers model"
            ) from err
        if isinstance(err, OSError) and not local:
            if "couldn't connect" in text or "offline" in text.lower() or "connection" in text.lower():
                raise ModelLoadError(not_cached_message(source, cache_dir)) from err
            if "not a valid model identifier" in text or "Repo id must" in text or "404" in text:
                raise ModelLoadError(
                    f"{source}: not a local folder and not a model on the hub; check the name (or the path)"
                ) from err
        if isinstance(err, OSError) and local and part == "tokenizer":
            raise ModelLoadError(
                f"{source}: tokenizer cannot be loaded ({_first_line(err)}); the folder needs its tokenizer files "
                "(tokenizer.json, or the vocabulary files)"
            ) from err
        if isinstance(err, OSError):
            raise ModelLoadError(f"{source}: cannot load the {part} ({_first_line(err)})") from err
        raise


def _is_head(key: str) -> bool:
    """The SimCSE MLP / MLM head keys, with or without the encoder prefix (``bert.pooler.dense.weight``)."""
    if key.startswith(HEAD_PARTS):
        return True
    _, _, rest = key.partition(".")
    return rest.startswith("pooler.")


def _shape(size: Any) -> str:
    return "(" + ", ".join(str(int(s)) for s in size) + ")"


def check_loading_info(info: dict[str, Any], name_or_path: str | os.PathLike) -> None:
    """Encoder parameters missing from the weights, or of another shape than the config gives, make a broken
    model that would train or evaluate silently on random values; fail with one line instead.

    Load with ``output_loading_info=True, ignore_mismatched_sizes=True`` so a wrong shape is reported here
    by name (without the flag transformers raises a RuntimeError that names nothing).
    """
    source = str(name_or_path)
    mismatched: Iterable[Any] = info.get("mismatched_keys") or ()
    for entry in sorted(mismatched, key=lambda e: str(e[0])):
        key, found, expected = entry[0], entry[1], entry[2]
        raise ModelLoadError(
            f"{source}: parameter {key} has shape {_shape(found)} in the weights but {_shape(expected)} for "
            "config.json; the weights do not belong to this config (copy the matching config.json, or the model "
            "again)"
        )
    missing = sorted(k for k in info.get("missing_keys") or () if not _is_head(k))
    if missing:
        more = f" and {len(missing) - 1} more" if len(missing) > 1 else ""
        raise ModelLoadError(
            f"{source}: the weights lack encoder parameter {missing[0]}{more}; the checkpoint is incomplete or does "
            "not match its config.json: copy or download the model again"
        )
