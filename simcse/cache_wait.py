"""Coordinating the processes that need one cached training set: who builds it, and how the others wait.

One process holds ``<key>.lock`` (a file lock, so it also works across launchers on a host) and builds; it
rewrites ``<key>.progress`` after every chunk. The others wait for the lock, watching that file: a builder that
shows no progress for ``stall_timeout`` seconds ends their wait with one :class:`TrainingCacheError` naming the
process, instead of a silent hang or a DDP timeout. No collective (barrier) is involved, so a long first build
cannot time out a run.
"""

from __future__ import annotations

import json
import os
import socket
import time
from pathlib import Path

import filelock

READY_FILE = "READY"


class TrainingCacheError(RuntimeError):
    """The cached training set could not be built or waited for; the message says where and what to do."""


def write_json(path: Path, obj: dict) -> None:
    with open(path, "w", encoding="utf-8") as fh:
        json.dump(obj, fh, indent=1, sort_keys=True)
        fh.flush()
        os.fsync(fh.fileno())


def launch_token() -> str | None:
    """Identifies the processes of one ``torchrun`` launcher on this host (its agent is their parent)."""
    if "LOCAL_RANK" not in os.environ:
        return None
    restart = os.environ.get("TORCHELASTIC_RESTART_COUNT", "0")
    return f"{socket.gethostname()}:{os.getppid()}:{restart}"


def check_launch_failure(final: Path, token: str | None) -> None:
    """Raise the error of a process of this same launch that failed to build ``final`` (rather than rebuild)."""
    failed = final.parent / f"{final.name}.failed"
    if token is None or not failed.is_file():
        return
    try:
        info = json.loads(failed.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return
    if info.get("launch") == token:
        raise TrainingCacheError(f"another process of this launch failed to build {final}: {info['error']}")


def read_ready(folder: Path) -> dict | None:
    try:
        return json.loads((folder / READY_FILE).read_text(encoding="utf-8"))
    except (FileNotFoundError, NotADirectoryError, json.JSONDecodeError):
        return None


def _progress_age(progress_file: Path, since: float) -> float:
    """Seconds since the builder last showed progress (or since ``since``, whichever is later)."""
    try:
        last = max(since, progress_file.stat().st_mtime)
    except FileNotFoundError:
        last = since
    return time.time() - last


def _stall_message(final: Path, progress_file: Path, lock_path: Path, waited: float) -> str:
    try:
        holder = json.loads(progress_file.read_text(encoding="utf-8"))
        who = f"process {holder['pid']} on {holder['host']} ({holder['rows']} examples written)"
    except (OSError, ValueError, KeyError):
        who = "another process"
    return (
        f"{final}: waited {waited:.0f} s for {who} to build the tokenised training set, without progress; "
        f"if it is not running, delete {lock_path} or set another --data_cache_dir"
    )


def acquire_lock(lock: filelock.BaseFileLock, final: Path, progress_file: Path, stall_timeout: float) -> None:
    since = time.time()
    while True:
        try:
            lock.acquire(timeout=0.5)
            return
        except filelock.Timeout:
            if _progress_age(progress_file, since) > stall_timeout:
                message = _stall_message(final, progress_file, Path(lock.lock_file), stall_timeout)
                raise TrainingCacheError(message) from None


def wait_for_launch_build(final: Path, progress_file: Path, lock_path: Path, token: str, stall_timeout: float):
    """``--overwrite_cache`` under torchrun: the local main rebuilds; the others wait for *that* build."""
    since = time.time()
    while True:
        marker = read_ready(final)
        if marker is not None and marker.get("launch") == token:
            return
        check_launch_failure(final, token)
        if _progress_age(progress_file, since) > stall_timeout:
            raise TrainingCacheError(_stall_message(final, progress_file, lock_path, stall_timeout))
        time.sleep(0.5)
