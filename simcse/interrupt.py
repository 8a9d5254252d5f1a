"""Stopping a training run cleanly: Ctrl-C / SIGTERM at a step boundary, and a failed checkpoint write.

A signal arriving in the middle of an optimizer step or of a checkpoint write must not leave a broken
folder. So the handler only records the signal; :class:`StopOnSignal`, a TrainerCallback, reads the record
at the end of each optimizer step and asks transformers to save a checkpoint and stop there (under DDP the
ranks first agree, so all of them save and stop at the same step). ``train.main`` then skips the final
save and evaluation and raises :class:`TrainingInterrupted`, which the command line prints with the
command that resumes the run, exiting 130 (SIGINT) or 143 (SIGTERM).

The first signal restores the previous handler (Python's default where SIGINT was ignored, as in a job a
script started in the background), so a second Ctrl-C raises ``KeyboardInterrupt`` at once;
complete checkpoints stay complete (a folder being written then has no completion marker and is never
resumed from). See docs/RELIABILITY.md.
"""

from __future__ import annotations

import errno
import shlex
import signal
import threading
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import torch
import torch.distributed as dist
from transformers import TrainerCallback

HANDLED_SIGNALS = (signal.SIGINT, signal.SIGTERM)
# Flags of our own whose value must not be repeated in a resume command.
_DROP_FLAGS = ("--overwrite_output_dir", "--overwrite-output-dir")
_BOOL_WORDS = {"true", "false", "yes", "no", "1", "0", "t", "f", "y", "n"}


class TrainingInterrupted(Exception):
    """Training stopped on a signal after saving a complete checkpoint; ``exit_code`` is 128 + the signal."""

    def __init__(self, signum: int, step: int, checkpoint: str | None, command: str) -> None:
        self.signum, self.step, self.checkpoint, self.command = signum, step, checkpoint, command
        self.exit_code = 128 + signum
        name = signal.Signals(signum).name
        saved = f"complete checkpoint {checkpoint}" if checkpoint else "no complete checkpoint"
        super().__init__(f"stopped by {name} after step {step}: {saved}; final save and evaluation skipped")


class SaveFailedError(OSError):
    """Writing a checkpoint or the final model failed (disk full, quota, I/O error)."""


def resume_command(argv: list[str], launcher: Sequence[str] = ("python", "train.py")) -> str:
    """The command line that continues the run: ``argv`` without ``--overwrite_output_dir``, which would
    delete the checkpoints (the example scripts pass it)."""
    kept: list[str] = []
    skip_value = False
    for arg in argv:
        if skip_value:
            skip_value = False
            if arg.lower() in _BOOL_WORDS:
                continue
        name = arg.split("=", 1)[0]
        if name in _DROP_FLAGS:
            skip_value = "=" not in arg
            continue
        kept.append(arg)
    return shlex.join([*launcher, *kept])


def _acting(sig: int, previous: Any) -> Any:
    """The handler a second signal meets: the one before ours, unless that one ignored the signal (a process
    started in the background by a script inherits SIGINT ignored; the first signal reached our handler
    anyway, so the second must act too): then Python's default, KeyboardInterrupt for SIGINT."""
    if previous in (signal.SIG_IGN, None):
        return signal.default_int_handler if sig == signal.SIGINT else signal.SIG_DFL
    return previous


class StopOnSignal(TrainerCallback):
    """Install with :meth:`install` (main thread only), restore with :meth:`restore`; see the module doc."""

    def __init__(self) -> None:
        self.signum: int | None = None
        self._previous: dict[int, Any] = {}

    def _handler(self, signum: int, frame: Any) -> None:
        self.signum = signum
        for sig, previous in self._previous.items():  # a second signal acts at once
            signal.signal(sig, _acting(sig, previous))

    def install(self) -> bool:
        if threading.current_thread() is not threading.main_thread():
            return False  # signal handlers can only be set from the main thread
        for sig in HANDLED_SIGNALS:
            self._previous[sig] = signal.getsignal(sig)
            signal.signal(sig, self._handler)
        return True

    def restore(self) -> None:
        for sig, previous in self._previous.items():
            signal.signal(sig, previous)
        self._previous.clear()

    def _agreed_signal(self, device: torch.device) -> int:
        """Under DDP, the largest signal number any rank got (0 = none), so every rank stops together."""
        mine = self.signum or 0
        if not (dist.is_available() and dist.is_initialized()):
            return mine
        flag = torch.tensor([mine], dtype=torch.long, device=device)
        dist.all_reduce(flag, op=dist.ReduceOp.MAX)
        return int(flag.item())

    def on_step_end(self, args, state, control, **kwargs):
        agreed = self._agreed_signal(args.device)
        if agreed:
            self.signum = agreed
            control.should_save = True
            control.should_training_stop = True
        return control


_WRITE_ERRNOS = {errno.ENOSPC, errno.EFBIG, errno.EDQUOT, errno.EIO, errno.EROFS}


def is_write_error(err: BaseException) -> bool:
    """Whether ``err`` is a failed file write (disk full, file too large, quota, I/O): safetensors and
    torch.save report those as their own exception types, not as OSError."""
    text = str(err)
    if isinstance(err, OSError) and err.errno in _WRITE_ERRNOS:
        return True
    if type(err).__name__ == "SafetensorError" and "serializ" in text:
        return True
    return isinstance(err, RuntimeError) and any(
        marker in text for marker in ("inline_container", "PytorchStreamWriter", "file write failed")
    )


def write_error_detail(err: BaseException) -> str:
    if isinstance(err, OSError) and err.strerror:
        return err.strerror
    text = str(err).strip().splitlines()
    return text[0] if text else type(err).__name__


def last_checkpoint_note(output_dir: str | Path) -> str:
    from simcse.run_state import last_complete_checkpoint

    last = last_complete_checkpoint(output_dir)
    return f"the last complete checkpoint {last} is intact" if last else "no complete checkpoint was written yet"
