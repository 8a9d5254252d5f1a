"""The tokenised training set as a memory-mapped Arrow file, built once per content and reused.

``load_cached_training_dataset`` streams the training file through :class:`simcse.data.TrainingFileReader`
(the same strict reading as :func:`simcse.data.read_training_file`), tokenises it chunk by chunk exactly as
:func:`simcse.data.build_train_dataset` does, and writes Arrow record batches, so memory does not grow with
the corpus. The result is opened with ``datasets.Dataset.from_file``: memory-mapped, its pages shared by every
process of the host through the page cache.

Cache layout, under ``--data_cache_dir`` (default ``$HF_DATASETS_CACHE/simcse``)::

    <key>/data.arrow      the examples, in file order
    <key>/meta.json       counts (examples, S, blank lines) and what the key was computed from
    <key>/READY           written last; a folder without it is never used
    <key>.lock            held by the one process building <key>
    <key>.progress        rewritten by the builder after every chunk (what waiting processes watch)
    <key>.failed          under torchrun: the error of a failed build, for the other ranks of that launch

The key is a sha256 over everything that changes the stored result: the file's bytes, the parse format, the
tokenizer (its saved files and settings, library versions), ``max_seq_length``, the padding,
:data:`SCHEMA_VERSION` and, only when one is asked for, the ``--augmentation`` of the second view and its seed.
A build writes into ``.tmp-<key>-<pid>/`` and is renamed into place only when complete, so a killed build
leaves nothing that is later used (its temporary folder is removed by the next builder).
The file name, size and mtime are not in the key: an edited file always gets a new key, a copied one reuses it.
"""

from __future__ import annotations

import collections
import functools
import hashlib
import json
import logging
import multiprocessing
import os
import random
import shutil
import socket
import sys
import tempfile
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import datasets
import filelock
import numpy as np
import pyarrow as pa
from transformers import PreTrainedTokenizerBase

from simcse.cache_wait import (
    READY_FILE,
    TrainingCacheError,
    acquire_lock,
    check_launch_failure,
    launch_token,
    read_ready,
    wait_for_launch_build,
    write_json,
)
from simcse.data import (
    COLUMN_NAMES,
    DataFormatError,
    TrainingDataSummary,
    TrainingFileReader,
    augmented_view,
    column_chunks,
)

logger = logging.getLogger(__name__)

# Bump whenever the stored columns, their types or their layout change, so older caches are not used.
SCHEMA_VERSION = 1
CHUNK_EXAMPLES = 4096
DATA_FILE, META_FILE = "data.arrow", "meta.json"
# transformers' default int precisions for these keys (what datasets.map stored for them).
_INT8_KEYS = ("attention_mask", "token_type_ids", "special_tokens_mask")


def default_cache_root() -> Path:
    """``$HF_DATASETS_CACHE/simcse``, else datasets' own cache folder (``~/.cache/huggingface/datasets``)."""
    base = os.environ.get("HF_DATASETS_CACHE") or datasets.config.HF_DATASETS_CACHE
    return Path(base).expanduser() / "simcse"


def file_sha256(path: str | Path, block_bytes: int = 1 << 22) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as fh:
        while block := fh.read(block_bytes):
            digest.update(block)
    return digest.hexdigest()


def tokenizer_fingerprint(tokenizer: PreTrainedTokenizerBase) -> str:
    """sha256 of the tokenizer as saved (vocabulary, normaliser, special tokens, init settings) and its class.

    ``tokenizer.json`` also records the truncation/padding the last call left on the Rust tokenizer; each call
    sets those again from its own arguments (which are in the key), so they are dropped here.
    """
    import tokenizers
    import transformers

    digest = hashlib.sha256()
    settings = {
        "class": type(tokenizer).__qualname__,
        "padding_side": tokenizer.padding_side,
        "truncation_side": tokenizer.truncation_side,
        "model_input_names": list(tokenizer.model_input_names),
        "transformers": transformers.__version__,
        "tokenizers": tokenizers.__version__,
    }
    digest.update(json.dumps(settings, sort_keys=True).encode())
    with tempfile.TemporaryDirectory() as tmp:
        tokenizer.save_pretrained(tmp)
        for name in sorted(os.listdir(tmp)):
            data = Path(tmp, name).read_bytes()
            if name == "tokenizer.json":
                state = json.loads(data)
                state.pop("truncation", None)
                state.pop("padding", None)
                data = json.dumps(state).encode()  # key order as saved
            digest.update(name.encode() + b"\0" + hashlib.sha256(data).digest())
    return digest.hexdigest()


def cache_key_inputs(
    path: str | Path,
    tokenizer: PreTrainedTokenizerBase,
    max_seq_length: int,
    pad_to_max_length: bool,
    augmentation: str | None = None,
    augmentation_seed: int = 42,
) -> dict:
    """Everything that changes the tokenised result (one full read of the file for its hash).

    An augmented second view (``--augmentation``, drawn with ``augmentation_seed``) is part of the key, so an
    augmented run never opens a plain cache nor the reverse; without one the key is what it always was.
    """
    reader = TrainingFileReader(path)  # validates the extension; gives the parse format
    inputs = {
        "schema_version": SCHEMA_VERSION,
        "file_sha256": file_sha256(path),
        "format": reader.format,
        "tokenizer": tokenizer_fingerprint(tokenizer),
        "max_seq_length": max_seq_length,
        "padding": "max_length" if pad_to_max_length else False,
    }
    if augmentation:
        inputs.update(augmentation=augmentation, augmentation_seed=augmentation_seed)
    return inputs


def cache_key(inputs: dict) -> str:
    return hashlib.sha256(json.dumps(inputs, sort_keys=True).encode()).hexdigest()[:32]


# --------------------------------------------------------------------------------------------------------------
# tokenising one chunk into an Arrow record batch


def _arrow_type(key: str) -> pa.DataType:
    return pa.int8() if key in _INT8_KEYS else pa.int32() if key == "input_ids" else pa.int64()


def tokenize_chunk(
    columns: list[list[str]], tokenizer: PreTrainedTokenizerBase, max_seq_length: int, padding: str | bool
) -> pa.RecordBatch:
    """``columns`` (1, 2 or 3 lists of n sentences) -> n rows of ``key: list<list<int>>`` (S lists per row).

    The tokenizer call is :func:`simcse.data._tokenize_batch`'s (each sentence alone, never as a pair;
    one column is tokenised once and used for both views), so the ids are the same.
    """
    n = len(columns[0])
    num_sent = max(len(columns), 2)
    flat = [s for col in columns for s in col]  # column-major: all sent0, then all sent1(, then all hard_neg)
    enc = tokenizer(flat, max_length=max_seq_length, truncation=True, padding=padding)
    # Example-major order of the B*S sentence lists: row i holds sentence j of column min(j, columns - 1).
    source_col = np.minimum(np.arange(num_sent), len(columns) - 1)
    order = pa.array((np.arange(n)[:, None] + n * source_col[None, :]).ravel())
    row_offsets = pa.array(np.arange(0, n * num_sent + 1, num_sent, dtype=np.int32))
    arrays, names = [], []
    for key, values in enc.items():
        sentences = pa.array(values, type=pa.list_(_arrow_type(key))).take(order)  # (B*S) lists
        arrays.append(pa.ListArray.from_arrays(row_offsets, sentences))  # (B, S) lists
        names.append(key)
    return pa.RecordBatch.from_arrays(arrays, names=names)


def _features_for(batch: pa.RecordBatch) -> datasets.Features:
    return datasets.Features(
        {
            field.name: datasets.List(datasets.List(datasets.Value(str(field.type.value_type.value_type))))
            for field in batch.schema
        }
    )


def _augmented(
    chunks: Iterator[list[list[str]]], reader: TrainingFileReader, spec: str, seed: int
) -> Iterator[list[list[str]]]:
    """Each chunk's second view made by ``spec``: one RNG over the whole file, in file order (the in-memory
    path's draws, simcse.data.augmented_view), so every sentence gets the same augmentation either way."""
    rng = random.Random(seed)
    for cols in chunks:
        yield [cols[0], augmented_view(cols[0], spec, rng, reader.path, len(cols))]


_WORKER: dict = {}


def _worker_init(tokenizer: PreTrainedTokenizerBase, max_seq_length: int, padding: str | bool) -> None:
    _WORKER.update(tokenizer=tokenizer, max_seq_length=max_seq_length, padding=padding)


def _worker_tokenize(columns: list[list[str]]) -> pa.RecordBatch:
    return tokenize_chunk(columns, _WORKER["tokenizer"], _WORKER["max_seq_length"], _WORKER["padding"])


# --------------------------------------------------------------------------------------------------------------
# building


class _BuildProgress:
    """Rows written so far: rewrites ``progress_file`` after every chunk (what waiting processes watch) and logs
    the rate and the share of the file read every 10 s."""

    def __init__(self, reader: TrainingFileReader, total_bytes: int, progress_file: Path | None) -> None:
        self.reader, self.total_bytes, self.progress_file = reader, max(total_bytes, 1), progress_file
        self.start = self.last_log = time.perf_counter()
        self.rows = 0

    def add(self, rows: int) -> None:
        self.rows += rows
        if self.progress_file is not None:
            state = {"pid": os.getpid(), "host": socket.gethostname(), "rows": self.rows}
            self.progress_file.write_text(json.dumps(state))
        now = time.perf_counter()
        if now - self.last_log >= 10:
            rate = self.rows / (now - self.start)
            share = 100 * self.reader.bytes_read / self.total_bytes
            logger.info("tokenised %d examples (%.0f/s, %.0f%% of the file)", self.rows, rate, share)
            self.last_log = now

    def seconds(self) -> float:
        return time.perf_counter() - self.start


def _tokenizer_pool(num_proc: int | None, tokenizer: PreTrainedTokenizerBase, max_seq_length: int, padding):
    """A worker pool holding the tokenizer, or None when tokenising in this process (``num_proc`` <= 1)."""
    if not (num_proc and num_proc > 1):
        return None
    method = "fork" if sys.platform.startswith("linux") else "spawn"
    return multiprocessing.get_context(method).Pool(num_proc, _worker_init, (tokenizer, max_seq_length, padding))


def _tokenized_batches(
    chunks: Iterator[list[list[str]]],
    tokenizer: PreTrainedTokenizerBase,
    max_seq_length: int,
    padding: str | bool,
    pool,
    num_proc: int | None,
) -> Iterator[pa.RecordBatch]:
    """The chunks tokenised, in file order: here, or by ``pool`` with fewer than ``2 * num_proc`` in flight."""
    if pool is None:
        for cols in chunks:
            yield tokenize_chunk(cols, tokenizer, max_seq_length, padding)
        return
    pending: collections.deque = collections.deque()
    for cols in chunks:
        pending.append(pool.apply_async(_worker_tokenize, (cols,)))
        while len(pending) >= 2 * num_proc:  # bounded: the reader never runs far ahead of the workers
            yield pending.popleft().get()
    while pending:
        yield pending.popleft().get()


def _write_arrow_stream(batches: Iterator[pa.RecordBatch], data_path: Path, progress: _BuildProgress) -> None:
    """One Arrow stream; its schema (the first batch's) carries datasets' Features for ``Dataset.from_file``."""
    writer: pa.RecordBatchStreamWriter | None = None
    schema: pa.Schema | None = None
    sink = pa.OSFile(str(data_path), "wb")
    try:
        for batch in batches:
            if writer is None:
                schema = _features_for(batch).arrow_schema
                writer = pa.ipc.new_stream(sink, schema)
            writer.write_batch(batch if batch.schema.equals(schema) else batch.cast(schema))
            progress.add(batch.num_rows)
    finally:
        if writer is not None:
            writer.close()
        sink.close()


def build_cache(
    path: str | Path,
    tokenizer: PreTrainedTokenizerBase,
    target: Path,
    key_inputs: dict,
    max_seq_length: int,
    pad_to_max_length: bool,
    num_proc: int | None = None,
    chunk_examples: int | None = None,
    progress_file: Path | None = None,
) -> dict:
    """Stream ``path`` into ``target`` (a fresh folder: data, meta, then the READY marker); returns the meta.

    With ``augmentation`` in ``key_inputs`` the second view of each (unsupervised) example is its augmented text.
    """
    padding = "max_length" if pad_to_max_length else False
    reader = TrainingFileReader(path)
    data_path = target / DATA_FILE
    pool = _tokenizer_pool(num_proc, tokenizer, max_seq_length, padding)
    progress = _BuildProgress(reader, os.path.getsize(path), progress_file)
    try:
        chunks = column_chunks(reader, chunk_examples or CHUNK_EXAMPLES)
        if key_inputs.get("augmentation"):
            chunks = _augmented(chunks, reader, key_inputs["augmentation"], key_inputs["augmentation_seed"])
        batches = _tokenized_batches(chunks, tokenizer, max_seq_length, padding, pool, num_proc)
        _write_arrow_stream(batches, data_path, progress)
    finally:
        if pool is not None:
            pool.terminate()
    if reader.sha256() != key_inputs["file_sha256"]:
        raise TrainingCacheError(f"{path}: the file changed while it was being read; run again")
    with open(data_path, "rb") as fh:
        os.fsync(fh.fileno())
    meta = {
        "num_examples": progress.rows,
        "num_sent": reader.num_sent,
        "blank_lines_skipped": reader.blank_lines_skipped,
        "built_from": str(path),
        "build_seconds": round(progress.seconds(), 3),
        "key_inputs": key_inputs,
    }
    write_json(target / META_FILE, meta)
    write_json(target / READY_FILE, {"launch": launch_token(), "time": time.time()})
    return meta


# --------------------------------------------------------------------------------------------------------------
# finding, waiting for and loading a cache


def _open(final: Path, source: str) -> tuple[datasets.Dataset, TrainingDataSummary]:
    meta = json.loads((final / META_FILE).read_text(encoding="utf-8"))
    dataset = datasets.Dataset.from_file(str(final / DATA_FILE))
    if len(dataset) != meta["num_examples"]:
        raise TrainingCacheError(f"{final}: holds {len(dataset)} examples, its meta says {meta['num_examples']}")
    summary = TrainingDataSummary(source, meta["num_examples"], meta["num_sent"], meta["blank_lines_skipped"])
    if summary.blank_lines_skipped:
        logger.warning("%s: skipped %d blank line(s)", source, summary.blank_lines_skipped)
    logger.info("%s", describe_summary(summary))
    return dataset, summary


def load_cached_training_dataset(
    path: str | Path,
    tokenizer: PreTrainedTokenizerBase,
    max_seq_length: int = 32,
    pad_to_max_length: bool = False,
    num_proc: int | None = None,
    cache_root: str | Path | None = None,
    overwrite: bool = False,
    is_local_main: bool = True,
    stall_timeout: float = 300.0,
    augmentation: str | None = None,
    augmentation_seed: int = 42,
) -> tuple[datasets.Dataset, TrainingDataSummary]:
    """The tokenised training set of ``path``, from the cache or built into it; logs where it is.

    Every process may call this at once: one takes ``<key>.lock`` and builds, the others wait for it and open
    the same file. A wait ends with :class:`TrainingCacheError` once the builder has shown no progress for
    ``stall_timeout`` seconds (set it below the DDP timeout). ``overwrite`` rebuilds even a complete cache; under
    ``torchrun`` only the local main process (``is_local_main``) rebuilds and the others open its build.
    ``augmentation`` (e.g. ``"crop:0.1"``, simcse.augment) makes the second view of unsupervised data, drawn
    with ``augmentation_seed``; both are in the cache key.
    """
    root = _cache_root(cache_root)
    key_inputs = cache_key_inputs(path, tokenizer, max_seq_length, pad_to_max_length, augmentation, augmentation_seed)
    key = cache_key(key_inputs)
    final = root / key
    progress_file, lock_path = root / f"{key}.progress", root / f"{key}.lock"
    token = launch_token()
    rebuild = overwrite
    if overwrite and not is_local_main and token is not None:
        wait_for_launch_build(final, progress_file, lock_path, token, stall_timeout)
        rebuild = False
    if not rebuild and read_ready(final) is not None:
        logger.info("training set: cached %s (%s)", final, path)
        return _open(final, str(path))

    lock = filelock.FileLock(str(lock_path))
    acquire_lock(lock, final, progress_file, stall_timeout)
    try:
        marker = read_ready(final)
        if marker is not None and (not rebuild or (token is not None and marker.get("launch") == token)):
            logger.info("training set: cached %s (built by another process)", final)
            return _open(final, str(path))
        check_launch_failure(final, token)  # a bad file: every rank reports it, none parses it again
        logger.info("training set: building %s from %s (max_seq_length %s)", final, path, max_seq_length)
        build = functools.partial(
            build_cache, path, tokenizer, key_inputs=key_inputs, max_seq_length=max_seq_length,
            pad_to_max_length=pad_to_max_length, num_proc=num_proc, progress_file=progress_file,
        )  # fmt: skip
        meta = _build_in_place(final, token, build)  # build(tmp) fills the temporary folder
        logger.info(
            "training set: %d examples written to %s in %.1f s", meta["num_examples"], final, meta["build_seconds"]
        )
    finally:
        lock.release()
    return _open(final, str(path))


def _cache_root(cache_root: str | Path | None) -> Path:
    root = Path(cache_root).expanduser() if cache_root else default_cache_root()
    try:
        root.mkdir(parents=True, exist_ok=True)
    except OSError as err:
        message = f"{root}: cannot create the training-set cache ({err}); set --data_cache_dir"
        raise TrainingCacheError(message) from err
    return root


def _build_in_place(final: Path, token: str | None, build: Callable[[Path], dict]) -> dict:
    """Run ``build`` into a fresh ``.tmp-<key>-<pid>`` folder and rename it to ``final``; the caller holds the lock.

    Any failure removes the temporary folder (nothing half-written is ever used); under torchrun an error is
    also written to ``<key>.failed`` for the other ranks of the launch. The progress file goes in every case.
    """
    root, key = final.parent, final.name
    progress_file = root / f"{key}.progress"
    for stale in root.glob(f".tmp-{key}-*"):  # left by a killed build: only the lock holder writes them
        shutil.rmtree(stale, ignore_errors=True)
    (root / f"{key}.failed").unlink(missing_ok=True)
    tmp = root / f".tmp-{key}-{os.getpid()}"
    tmp.mkdir()
    try:
        meta = build(tmp)
        if final.exists():  # --overwrite_cache: open mappings of the old files stay valid after the unlink
            trash = root / f".tmp-{key}-old-{os.getpid()}"
            os.rename(final, trash)
            shutil.rmtree(trash, ignore_errors=True)
        os.rename(tmp, final)
    except BaseException as err:
        shutil.rmtree(tmp, ignore_errors=True)
        if token is not None and isinstance(err, Exception):
            write_json(root / f"{key}.failed", {"launch": token, "error": str(err)})
        raise
    finally:
        progress_file.unlink(missing_ok=True)
    return meta


def describe_summary(summary: TrainingDataSummary) -> str:
    return (
        f"{summary.source}: {summary.num_examples} examples, {summary.num_sent} sentences each, "
        f"{summary.blank_lines_skipped} blank line(s) skipped"
    )


__all__ = [
    "COLUMN_NAMES",
    "DataFormatError",
    "READY_FILE",
    "SCHEMA_VERSION",
    "TrainingCacheError",
    "build_cache",
    "cache_key",
    "cache_key_inputs",
    "default_cache_root",
    "load_cached_training_dataset",
    "tokenize_chunk",
    "tokenizer_fingerprint",
]
