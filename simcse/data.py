"""Training data: reading the train file, tokenising it, and batching it (docs/FAITHFULNESS.md, "Training data").

Everything the trainer needs from a raw ``.txt``/``.csv``/``.tsv`` file up to the ``(B, S, L)`` tensors the
model consumes. Deliberate departures from the original, each fixing a documented quirk
(docs/FAITHFULNESS.md, "Quirks kept and fixed"):

* Files are read by this module, not by ``datasets`` builders, so behaviour no longer depends on the
  installed ``datasets`` version: ``.txt`` is split on ``"\\n"`` only (a Unicode line separator such as
  U+2028 inside a sentence does not split it), blank lines are skipped and counted instead of silently
  becoming empty "sentences".
* The CSV delimiter is chosen by the file *extension* (``.tsv`` -> tab). The original switched to tab whenever
  the substring ``"tsv"`` appeared anywhere in the path (e.g. ``/data/tsv_exports/nli.csv``), a quirk.
* Malformed input raises :class:`DataFormatError` naming ``file:line`` instead of a pandas traceback;
  quoting is parsed strictly, so an unterminated quote is an error rather than swallowing the rest of the file.
* With ``pad_to_max_length`` the original switched to HF's default collator and silently dropped the MLM
  inputs; :class:`SimCSECollator` handles pre-padded data too, so ``do_mlm`` always works.
"""

from __future__ import annotations

import codecs
import csv
import functools
import hashlib
import io
import logging
import random
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import datasets
import torch
from transformers import PreTrainedTokenizerBase

logger = logging.getLogger(__name__)

COLUMN_NAMES: tuple[str, ...] = ("sent0", "sent1", "hard_neg")
# Keys that hold one token list per sentence; every other feature key is per example.
SENTENCE_KEYS: tuple[str, ...] = ("input_ids", "attention_mask", "token_type_ids")
_DELIMITERS: dict[str, str] = {".csv": ",", ".tsv": "\t"}


class DataFormatError(ValueError):
    """A training file that cannot be used; the message is ``"<file>:<line>: <problem>"`` (line 0 = whole file)."""

    def __init__(self, path: str | Path, line: int, problem: str) -> None:
        self.path, self.line, self.problem = str(path), line, problem
        super().__init__(f"{path}:{line}: {problem}")


@dataclass
class TrainingDataSummary:
    """What was read, for logs and for the run record (no sentence text, so it is cheap to keep around)."""

    source: str
    num_examples: int
    num_sent: int
    blank_lines_skipped: int


@dataclass
class TrainingTexts:
    """The raw training sentences, column-wise: ``sent0``, ``sent1`` and, for triples, ``hard_neg``."""

    columns: dict[str, list[str]]
    num_sent: int  # S: 2 (unsupervised copies or pairs) or 3 (triples with a hard negative)
    blank_lines_skipped: int
    source: str

    @property
    def num_examples(self) -> int:
        return len(self.columns["sent0"])

    def summary(self) -> TrainingDataSummary:
        return TrainingDataSummary(self.source, self.num_examples, self.num_sent, self.blank_lines_skipped)


_BLOCK_BYTES = 1 << 22  # 4 MiB read at a time: memory stays bounded however large the file is


class TrainingFileReader:
    """Stream a training file's examples in file order, never holding the file or its sentences in memory.

    Iterating yields ``(line, columns)``: the physical line an example starts on and its sentences in
    ``sent0, sent1(, hard_neg)`` order; one column (``.txt`` or a one-column csv) means unsupervised data,
    where each sentence is its own positive (``num_sent`` is then 2). The checks are the strict ones of this
    module's docstring; each raises :class:`DataFormatError` when its line is reached, so a file with several
    problems reports the first one in the file. ``blank_lines_skipped``, ``num_examples`` and ``sha256`` (the
    hash of every byte read) are final once the iteration has ended; an empty result raises at the end.
    """

    def __init__(
        self,
        path: str | Path,
        delimiter: str | None = None,
        block_bytes: int = _BLOCK_BYTES,
        column_names: tuple[str, ...] = COLUMN_NAMES,
    ) -> None:
        self.path = Path(path)
        self.column_names = column_names  # a header of exactly these names is read by name (any order)
        check_training_file(self.path)  # missing / a folder / unreadable: one line before any work
        suffix = self.path.suffix.lower()
        if suffix not in (".txt", *_DELIMITERS):
            raise DataFormatError(self.path, 0, f"unsupported extension {suffix!r} (expected .txt, .csv or .tsv)")
        if suffix == ".txt" and delimiter is not None:
            raise ValueError("delimiter only applies to .csv/.tsv training files")
        self.delimiter = None if suffix == ".txt" else (delimiter if delimiter is not None else _DELIMITERS[suffix])
        self.block_bytes = max(block_bytes, len(codecs.BOM_UTF8))
        self.num_columns: int | None = None  # 1, 2 or 3; known once the first example (or csv header) is read
        self.blank_lines_skipped = 0
        self.num_examples = 0
        self.bytes_read = 0
        self._hash = hashlib.sha256()

    @property
    def num_sent(self) -> int:
        """S: 2 for unsupervised data or pairs, 3 for triples with a hard negative."""
        return max(self.num_columns or 1, 2)

    @property
    def format(self) -> str:
        """What decides how the bytes are parsed: ``txt`` or ``csv`` with its delimiter."""
        return "txt" if self.delimiter is None else f"csv{self.delimiter!r}"

    def sha256(self) -> str:
        return self._hash.hexdigest()

    def _text_blocks(self) -> Iterator[str]:
        """Decoded UTF-8 text in blocks that end at a ``\\n`` (the last one may not), a leading BOM dropped.

        Cutting at newlines means a multi-byte character is never split between blocks (no byte of one is
        0x0a), so a bad byte is found, with its line and byte offset, wherever it falls.
        """
        offset, line, carry = 0, 1, b""
        with open(self.path, "rb") as fh:
            while True:
                raw = fh.read(self.block_bytes)
                self._hash.update(raw)
                first, eof = self.bytes_read == 0, not raw
                self.bytes_read += len(raw)
                if first and raw.startswith(codecs.BOM_UTF8):
                    raw, offset = raw[len(codecs.BOM_UTF8) :], len(codecs.BOM_UTF8)
                data = carry + raw
                if not eof:
                    cut = data.rfind(b"\n") + 1
                    if cut == 0:  # no line end yet: one long line, read on
                        carry = data
                        continue
                    block, carry = data[:cut], data[cut:]
                else:
                    block, carry = data, b""
                try:
                    text = block.decode("utf-8")
                except UnicodeDecodeError as err:
                    bad_line = line + block.count(b"\n", 0, err.start)
                    problem = f"invalid UTF-8 byte 0x{block[err.start]:02x} (byte offset {offset + err.start})"
                    raise DataFormatError(self.path, bad_line, problem) from err
                yield text
                if eof:
                    return
                line += block.count(b"\n")
                offset += len(block)

    def __iter__(self) -> Iterator[tuple[int, tuple[str, ...]]]:
        records = self._txt_records() if self.delimiter is None else self._delimited_records()
        for record in records:
            self.num_examples += 1
            yield record

    def _txt_records(self) -> Iterator[tuple[int, tuple[str, ...]]]:
        self.num_columns = 1
        line_no = 0
        for text in self._text_blocks():
            lines = text.split("\n")  # "\n" only: str.splitlines would also split on U+2028, U+0085, ...
            if lines[-1] == "":
                lines.pop()  # the terminator of the block's last line, not an empty line
            for line in lines:
                line_no += 1
                line = line.removesuffix("\r")
                if line.strip():
                    yield line_no, (line,)
                else:
                    self.blank_lines_skipped += 1
        if self.num_examples == 0:
            raise DataFormatError(self.path, 0, "no examples (file is empty or blank)")

    def _physical_lines(self) -> Iterator[str]:
        # Splitting each newline-ended block alone gives the same lines (and csv line numbers) as the whole text.
        for text in self._text_blocks():
            yield from io.StringIO(text, newline="")

    def _delimited_records(self) -> Iterator[tuple[int, tuple[str, ...]]]:
        reader = csv.reader(self._physical_lines(), delimiter=self.delimiter, strict=True)
        header: list[str] | None = None
        order: list[int] = []
        row_start = 1
        try:
            for row in reader:
                if not row:  # a blank physical line (pandas' skip_blank_lines=True did the same)
                    self.blank_lines_skipped += 1
                elif header is None:
                    header = row
                    if len(header) > len(self.column_names):
                        expected = ", ".join(str(i) for i in range(1, len(self.column_names))) + " or "
                        problem = f"{len(header)} columns, expected {expected}{len(self.column_names)}"
                        raise DataFormatError(self.path, row_start, problem)
                    order = _column_order(header, self.column_names)
                    self.num_columns = len(order)
                elif len(row) != len(header):
                    raise DataFormatError(self.path, row_start, f"{len(row)} fields, header has {len(header)}")
                else:
                    # Empty cells were None in the original (pandas) and became a single space before tokenising.
                    yield row_start, tuple(row[i] if row[i] != "" else " " for i in order)
                row_start = reader.line_num + 1  # a quoted field may span several physical lines
        except csv.Error as err:
            raise DataFormatError(self.path, row_start, f"CSV syntax error: {err}") from err
        if self.num_examples == 0:
            raise DataFormatError(self.path, 0, "no examples (file is empty or has only a header)")


def _column_order(header: list[str], column_names: tuple[str, ...] = COLUMN_NAMES) -> list[int]:
    """Positions of sent0, sent1(, hard_neg): by name if the header uses exactly those names, else by position."""
    names = [name.strip() for name in header]
    wanted = column_names[: len(names)]
    if len(names) > 1 and sorted(names) == sorted(wanted):
        return [names.index(name) for name in wanted]
    return list(range(len(names)))


def check_training_file(path: str | Path) -> None:
    """The ``--train_file`` door: the path must be an existing, readable file (checked before any work)."""
    path = Path(path)
    if not path.exists():
        raise DataFormatError(path, 0, "training file not found; check --train_file")
    if path.is_dir():
        raise DataFormatError(path, 0, "is a folder, not a training file; pass a .txt, .csv or .tsv (--train_file)")
    try:
        with open(path, "rb") as fh:
            fh.read(1)
    except OSError as err:
        raise DataFormatError(path, 0, f"cannot be read ({err.strerror or err})") from None


def column_chunks(
    records: Iterator[tuple[int, tuple[str, ...]]] | TrainingFileReader, size: int | None = None
) -> Iterator[list[list[str]]]:
    """The ``(line, sentences)`` records regrouped as columns: lists of ``size`` examples (the last may be shorter).

    ``size=None`` yields everything as one chunk. Column-major because the tokenizer is called once per column;
    both :func:`read_training_file` (one chunk) and :mod:`simcse.data_cache` (bounded chunks) group this way.
    """
    cols: list[list[str]] = []
    for _, record in records:
        if not cols:
            cols = [[] for _ in record]
        for col, sentence in zip(cols, record):
            col.append(sentence)
        if size is not None and len(cols[0]) >= size:
            yield cols
            cols = [[] for _ in cols]
    if cols and cols[0]:
        yield cols


def read_training_file(path: str | Path, delimiter: str | None = None) -> TrainingTexts:
    """Read a ``.txt`` (one sentence per line) or ``.csv``/``.tsv`` (header + 1, 2 or 3 columns) training file.

    ``delimiter`` overrides the extension's delimiter for ``.csv``/``.tsv`` files (e.g. a ``;``-separated
    ``.csv``); it is an error for ``.txt``. All sentences are held in memory; :mod:`simcse.data_cache` streams
    the same examples into an on-disk training set instead.
    """
    reader = TrainingFileReader(path, delimiter)
    cols = next(column_chunks(reader), [])  # the whole file as one chunk; [] for a file with no examples
    if len(cols) == 1:
        cols.append(list(cols[0]))  # unsupervised: each sentence is its own positive
    if reader.blank_lines_skipped:
        logger.warning("%s: skipped %d blank line(s)", reader.path, reader.blank_lines_skipped)
    return TrainingTexts(dict(zip(COLUMN_NAMES, cols)), len(cols), reader.blank_lines_skipped, str(reader.path))


def _tokenize_batch(
    batch: Mapping[str, list[str | None]], tokenizer: PreTrainedTokenizerBase, max_seq_length: int, padding: str | bool
) -> dict[str, list[list[list[int]]]]:
    """Tokenise every sentence on its own (never as a text pair) and regroup as S token lists per example."""
    names = [name for name in COLUMN_NAMES if name in batch]
    cols = [[s if s is not None else " " for s in batch[name]] for name in names]
    n = len(cols[0])
    # Unsupervised data has sent1 == sent0: tokenising once gives the identical result in half the time.
    unique = [cols[0]] if len(cols) == 2 and cols[0] == cols[1] else cols
    flat = [s for col in unique for s in col]  # all sent0, then all sent1(, then all hard_neg)
    enc = tokenizer(flat, max_length=max_seq_length, truncation=True, padding=padding)
    out: dict[str, list[list[list[int]]]] = {}
    for key, values in enc.items():
        per_col = [values[j * n : (j + 1) * n] for j in range(len(unique))]
        if len(unique) < len(cols):
            per_col.append(per_col[0])
        out[key] = [[col[i] for col in per_col] for i in range(n)]
    return out


def build_train_dataset(
    texts: TrainingTexts,
    tokenizer: PreTrainedTokenizerBase,
    max_seq_length: int = 32,
    pad_to_max_length: bool = False,
    num_proc: int | None = None,
) -> datasets.Dataset:
    """Tokenised training set: per example, ``input_ids``/``attention_mask``(/``token_type_ids``) as S token lists.

    ``max_seq_length`` counts the special tokens, so a long sentence yields exactly that many ids, the last one
    ``[SEP]``/``</s>``.
    """
    raw = datasets.Dataset.from_dict(texts.columns)
    fn = functools.partial(
        _tokenize_batch,
        tokenizer=tokenizer,
        max_seq_length=max_seq_length,
        padding="max_length" if pad_to_max_length else False,
    )
    return raw.map(fn, batched=True, num_proc=num_proc, remove_columns=raw.column_names, desc="Tokenizing")


def augmented_view(sentences: list[str], spec: str, rng: random.Random, source: str | Path, columns: int) -> list[str]:
    """The second view of unsupervised data made by ``spec`` (paper Table 1; simcse.augment): one draw of ``rng``
    per sentence in file order, so the in-memory and the streamed (cached) training sets get the same texts.

    ``columns``: how many columns the file has; only one-column (unsupervised) data has a second view to make.
    """
    from simcse.augment import parse_augmentation

    if columns != 1:
        raise DataFormatError(
            source, 0, f"--augmentation makes the second view of unsupervised data; this file has {columns} columns"
        )
    fn = parse_augmentation(spec)
    return [fn(s, rng) for s in sentences]


def apply_augmentation(texts: TrainingTexts, spec: str, seed: int = 42) -> None:
    """In-memory path: ``sent1 = augment(sent0)`` with one RNG seeded with ``seed`` (see :func:`augmented_view`)."""
    columns = 1 if texts.num_sent == 2 and texts.columns["sent0"] == texts.columns["sent1"] else texts.num_sent
    texts.columns["sent1"] = augmented_view(texts.columns["sent0"], spec, random.Random(seed), texts.source, columns)
    logger.info("%s: second view augmented with %s (seed %d)", texts.source, spec, seed)


def load_training_dataset(
    path: str | Path,
    tokenizer: PreTrainedTokenizerBase,
    max_seq_length: int = 32,
    pad_to_max_length: bool = False,
    num_proc: int | None = None,
    augmentation: str | None = None,
    augmentation_seed: int = 42,
) -> tuple[datasets.Dataset, TrainingDataSummary]:
    """Read, validate and tokenise a training file in one call; logs what was loaded.

    ``augmentation`` (e.g. ``"crop:0.1"``, see :mod:`simcse.augment`) rewrites the second view of each
    *unsupervised* example (``sent1 = augment(sent0)``); supervised pairs are left alone (it is an error).
    """
    texts = read_training_file(path)
    if augmentation:
        apply_augmentation(texts, augmentation, augmentation_seed)
    summary = texts.summary()
    logger.info(
        "%s: %d examples, %d sentences each, %d blank line(s) skipped",
        summary.source,
        summary.num_examples,
        summary.num_sent,
        summary.blank_lines_skipped,
    )
    return build_train_dataset(texts, tokenizer, max_seq_length, pad_to_max_length, num_proc), summary


def mask_tokens(
    input_ids: torch.Tensor,
    tokenizer: PreTrainedTokenizerBase,
    mlm_probability: float = 0.15,
    generator: torch.Generator | None = None,
) -> tuple[torch.Tensor, torch.Tensor]:
    """BERT 80/10/10 masking of ``input_ids`` (any shape); returns new ``(masked_ids, labels)``.

    Every id in ``tokenizer.all_special_ids`` (CLS/SEP/PAD/UNK/MASK) is never chosen, so padding and unknown
    tokens are never MLM targets (the fast-tokenizer semantics of the original). ``labels`` is -100 wherever
    no prediction is wanted. ``input_ids`` is left untouched.
    """
    if tokenizer.mask_token_id is None:
        raise ValueError("MLM needs a tokenizer with a mask token")
    device = input_ids.device
    special = torch.isin(input_ids, torch.tensor(tokenizer.all_special_ids, device=device))
    chosen_prob = torch.full(input_ids.shape, mlm_probability, device=device).masked_fill_(special, 0.0)
    chosen = torch.bernoulli(chosen_prob, generator=generator).bool()
    labels = input_ids.masked_fill(~chosen, -100)

    to_mask = torch.bernoulli(torch.full(input_ids.shape, 0.8, device=device), generator=generator).bool() & chosen
    coin = torch.bernoulli(torch.full(input_ids.shape, 0.5, device=device), generator=generator).bool()
    to_random = coin & chosen & ~to_mask  # half of the remaining 20%; the other half keeps its token
    random_ids = torch.randint(len(tokenizer), input_ids.shape, generator=generator, device=device)

    masked_ids = input_ids.masked_fill(to_mask, tokenizer.mask_token_id)
    masked_ids = torch.where(to_random, random_ids.to(input_ids.dtype), masked_ids)
    return masked_ids, labels


@dataclass
class SimCSECollator:
    """Batch B examples of S sentences into ``(B, S, L)`` tensors with one L shared by all B*S sentences.

    ``max_length``, when set, pads every sentence to exactly that length instead of the batch's longest.
    Pre-padded (``pad_to_max_length``) data goes through the same path, so MLM inputs are always produced
    when ``do_mlm`` is on (the original dropped them there).
    """

    tokenizer: PreTrainedTokenizerBase
    do_mlm: bool = False
    mlm_probability: float = 0.15
    pad_to_multiple_of: int | None = None
    max_length: int | None = None

    def __call__(self, features: Sequence[Mapping[str, Any]]) -> dict[str, torch.Tensor]:
        if not features:
            raise ValueError("SimCSECollator got an empty batch")
        bs = len(features)
        num_sent = len(features[0]["input_ids"])
        keys = [k for k in SENTENCE_KEYS if k in features[0]]
        # Example-major: ex0 s0, ex0 s1(, ex0 s2), ex1 s0, ... so a reshape to (B, S, L) undoes it.
        flat = [{k: list(f[k][j]) for k in keys} for f in features for j in range(num_sent)]
        if self.max_length is not None:
            longest = max(len(item["input_ids"]) for item in flat)
            if longest > self.max_length:
                raise ValueError(f"a sentence has {longest} tokens, more than max_length={self.max_length}")
        batch = self.tokenizer.pad(
            flat,
            padding="max_length" if self.max_length is not None else "longest",
            max_length=self.max_length,
            pad_to_multiple_of=self.pad_to_multiple_of,
            return_tensors="pt",
        )
        out = {k: batch[k].view(bs, num_sent, -1) for k in keys}  # (B*S, L) -> (B, S, L)
        if self.do_mlm:
            mlm_input_ids, mlm_labels = mask_tokens(batch["input_ids"], self.tokenizer, self.mlm_probability)
            out["mlm_input_ids"] = mlm_input_ids.view(bs, num_sent, -1)
            out["mlm_labels"] = mlm_labels.view(bs, num_sent, -1)
        for key in features[0]:
            if key not in keys and key not in ("mlm_input_ids", "mlm_labels"):
                name = "labels" if key in ("label", "label_ids") else key
                out[name] = torch.tensor([f[key] for f in features])  # per-example extras: (B, ...)
        return out
