"""How the command lines report a user's mistake: one ``error: <message>`` line on stderr, exit status 2.

A traceback would bury the one thing the user must fix (the path, the file and line, the flag); set
``SIMCSE_DEBUG=1`` to get it anyway (``--debug`` is taken: it is a transformers TrainingArguments flag).
"""

from __future__ import annotations

import os
import sys
from collections.abc import Iterator
from contextlib import contextmanager

USER_ERROR_EXIT = 2


def debug_enabled() -> bool:
    """``SIMCSE_DEBUG=1`` (or true/yes): let errors propagate with their traceback."""
    return os.environ.get("SIMCSE_DEBUG", "").strip().lower() in {"1", "true", "yes", "on"}


@contextmanager
def one_line_errors(errors: tuple[type[BaseException], ...], code: int = USER_ERROR_EXIT) -> Iterator[None]:
    """Turn ``errors`` raised in the block into ``error: <message>`` and ``SystemExit(code)``."""
    try:
        yield
    except errors as err:
        if debug_enabled():
            raise
        print(f"error: {err}", file=sys.stderr)
        raise SystemExit(code) from None
