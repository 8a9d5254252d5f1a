"""Small shared helpers: the data error type, strict file readers and the cosine scorer.

Every reader reports problems as one ``DataError`` that names the file and the 1-based line, so a
truncated download or a hand-edited file fails loudly instead of silently shifting scores.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import numpy as np


class DataError(ValueError):
    """Bad or missing evaluation data. ``str(err)`` is ``FILE:LINE: problem`` (LINE omitted if unknown)."""

    def __init__(self, path: str | Path, problem: str, line: int | None = None) -> None:
        self.path = str(path)
        self.line = line
        self.problem = problem
        where = self.path if line is None else f"{self.path}:{line}"
        super().__init__(f"{where}: {problem}")


class dotdict(dict):
    """dict with attribute access, as SentEval user code expects ``params.batch_size``."""

    def __getattr__(self, name: str):
        try:
            return self[name]
        except KeyError as err:
            raise AttributeError(name) from err

    def __setattr__(self, name: str, value) -> None:
        self[name] = value


def require_dir(path: str | Path, what: str) -> Path:
    """Return ``path`` if it is a directory, else raise a ``DataError`` explaining what is missing."""
    p = Path(path)
    if not p.is_dir():
        raise DataError(p, f"{what} directory not found (run SentEval/data/downstream/download_dataset.sh)")
    return p


def read_lines(path: str | Path, encoding: str = "utf-8") -> list[str]:
    """All lines of a text file, split with ``str.splitlines`` (as SentEval does).

    A missing file or undecodable bytes become a ``DataError`` naming the file (and line for decoding).
    """
    p = Path(path)
    if not p.is_file():
        raise DataError(p, "file not found (run SentEval/data/downstream/download_dataset.sh)")
    raw = p.read_bytes()
    try:
        text = raw.decode(encoding)
    except UnicodeDecodeError as err:
        line = raw[: err.start].count(b"\n") + 1
        raise DataError(p, f"cannot decode as {encoding}: {err.reason}", line) from None
    return text.splitlines()


def parse_float(text: str, path: str | Path, line: int, what: str = "score") -> float:
    """``float(text)`` or a ``DataError`` pointing at the offending line."""
    try:
        value = float(text)
    except ValueError:
        raise DataError(path, f"{what} is not a number: {text.strip()!r}", line) from None
    if not np.isfinite(value):
        raise DataError(path, f"{what} is not finite: {text.strip()!r}", line)
    return value


def split_fields(line: str, path: str | Path, lineno: int, min_fields: int, sep: str = "\t") -> list[str]:
    """Split a tab-separated line and check it has at least ``min_fields`` columns."""
    fields = line.split(sep)
    if len(fields) < min_fields:
        raise DataError(path, f"expected at least {min_fields} tab-separated fields, found {len(fields)}", lineno)
    return fields


def cosine(u: np.ndarray, v: np.ndarray) -> np.ndarray:
    """Row-wise cosine similarity with NaNs mapped to 0, as SentEval's STS scorer.

    u, v: (n, H) -> (n,)
    """
    u = np.nan_to_num(np.asarray(u, dtype=np.float32))
    v = np.nan_to_num(np.asarray(v, dtype=np.float32))
    num = (u * v).sum(axis=1)
    den = np.sqrt((u * u).sum(axis=1) * (v * v).sum(axis=1))
    with np.errstate(divide="ignore", invalid="ignore"):
        return np.nan_to_num(num / den)


def tokens(sentence: str) -> list[str]:
    """Whitespace tokenisation used by every SentEval loader."""
    return sentence.split()


def as_key(toks: Sequence[str]) -> tuple[str, ...]:
    """Hashable cache key of a token list."""
    return tuple(toks)
