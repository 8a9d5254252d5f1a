"""Training data: reading the train file, tokenising it, and batching it (SPEC 2.5-2.7).

Everything the trainer needs from a raw ``.txt``/``.csv``/``.tsv`` file up to the ``(B, S, L)`` tensors the
model consumes. Deliberate departures from the original, each fixing a documented quirk (SPEC 9):

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
import io
import logging
from collections.abc import Mapping, Sequence
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


def _decode(path: Path) -> str:
    """Decode the whole file as UTF-8 (a leading BOM is dropped), reporting the line of the first bad byte."""
    raw = path.read_bytes()
    start = len(codecs.BOM_UTF8) if raw.startswith(codecs.BOM_UTF8) else 0
    try:
        return raw[start:].decode("utf-8")
    except UnicodeDecodeError as err:
        offset = start + err.start
        line = raw.count(b"\n", 0, offset) + 1
        raise DataFormatError(path, line, f"invalid UTF-8 byte 0x{raw[offset]:02x} (byte offset {offset})") from err


def _read_txt(path: Path, text: str) -> TrainingTexts:
    lines = text.split("\n")  # "\n" only: str.splitlines would also split on U+2028, U+0085, ...
    if lines and lines[-1] == "":
        lines.pop()  # the terminator of the last line, not an empty line
    sentences: list[str] = []
    blank = 0
    for line in lines:
        line = line.removesuffix("\r")
        if line.strip():
            sentences.append(line)
        else:
            blank += 1
    if not sentences:
        raise DataFormatError(path, 0, "no examples (file is empty or blank)")
    # Unsupervised SimCSE: the same sentence twice; the two dropout masks make the positive pair.
    return TrainingTexts({"sent0": sentences, "sent1": list(sentences)}, 2, blank, str(path))


def _column_order(header: list[str]) -> list[int]:
    """Positions of sent0, sent1(, hard_neg): by name if the header uses exactly those names, else by position."""
    names = [name.strip() for name in header]
    wanted = COLUMN_NAMES[: len(names)]
    if len(names) > 1 and sorted(names) == sorted(wanted):
        return [names.index(name) for name in wanted]
    return list(range(len(names)))


def _read_delimited(path: Path, text: str, delimiter: str) -> TrainingTexts:
    reader = csv.reader(io.StringIO(text, newline=""), delimiter=delimiter, strict=True)
    header: list[str] | None = None
    header_line = 0
    rows: list[list[str]] = []
    blank = 0
    row_start = 1
    try:
        for row in reader:
            if not row:  # a blank physical line (pandas' skip_blank_lines=True did the same)
                blank += 1
            elif header is None:
                header, header_line = row, row_start
                if len(header) > len(COLUMN_NAMES):
                    raise DataFormatError(path, header_line, f"{len(header)} columns, expected 1, 2 or 3")
            elif len(row) != len(header):
                raise DataFormatError(path, row_start, f"{len(row)} fields, header has {len(header)}")
            else:
                rows.append(row)
            row_start = reader.line_num + 1  # a quoted field may span several physical lines
    except csv.Error as err:
        raise DataFormatError(path, row_start, f"CSV syntax error: {err}") from err
    if header is None or not rows:
        raise DataFormatError(path, 0, "no examples (file is empty or has only a header)")
    order = _column_order(header)
    # Empty cells were None in the original (pandas) and became a single space before tokenising.
    cols = [[row[i] if row[i] != "" else " " for row in rows] for i in order]
    if len(cols) == 1:
        cols.append(list(cols[0]))  # 1 column: unsupervised, each sentence is its own positive
    return TrainingTexts(dict(zip(COLUMN_NAMES, cols)), len(cols), blank, str(path))


def read_training_file(path: str | Path, delimiter: str | None = None) -> TrainingTexts:
    """Read a ``.txt`` (one sentence per line) or ``.csv``/``.tsv`` (header + 1, 2 or 3 columns) training file.

    ``delimiter`` overrides the extension's delimiter for ``.csv``/``.tsv`` files (e.g. a ``;``-separated
    ``.csv``); it is an error for ``.txt``.
    """
    path = Path(path)
    suffix = path.suffix.lower()
    if suffix not in (".txt", *_DELIMITERS):
        raise DataFormatError(path, 0, f"unsupported extension {suffix!r} (expected .txt, .csv or .tsv)")
    if suffix == ".txt" and delimiter is not None:
        raise ValueError("delimiter only applies to .csv/.tsv training files")
    text = _decode(path)
    if suffix == ".txt":
        texts = _read_txt(path, text)
    else:
        texts = _read_delimited(path, text, delimiter if delimiter is not None else _DELIMITERS[suffix])
    if texts.blank_lines_skipped:
        logger.warning("%s: skipped %d blank line(s)", path, texts.blank_lines_skipped)
    return texts


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


def apply_augmentation(texts: TrainingTexts, spec: str, seed: int = 42) -> None:
    """The one place where the unsupervised pair is changed: ``sent1 = augment(sent0)`` (paper Table 1)."""
    from simcse.augment import augment_sentences

    if texts.num_sent != 2 or texts.columns["sent0"] != texts.columns["sent1"]:
        raise DataFormatError(texts.source, 0, "--augmentation makes the second view of unsupervised data; "
                              "this file has pairs")
    texts.columns["sent1"] = augment_sentences(texts.columns["sent0"], spec, seed)
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
