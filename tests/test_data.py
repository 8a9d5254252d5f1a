"""Tests for simcse.data: file reading, tokenisation, the collator and MLM masking
(docs/FAITHFULNESS.md, "Training data", "MLM auxiliary objective").

Expectations are built independently of the code under test: token lists come from calling the tokenizer on
one sentence at a time, line numbers and counts are written by hand next to the file contents, and masking
rates are checked against binomial standard deviations.
"""

from __future__ import annotations

import logging
import math
from pathlib import Path

import pytest
import torch

from simcse.data import (
    DataFormatError,
    SimCSECollator,
    TrainingTexts,
    build_train_dataset,
    load_training_dataset,
    mask_tokens,
    read_training_file,
)
from tests.conftest import make_tokenizer

MODEL_TYPES = ("bert", "roberta")


@pytest.fixture(scope="module", params=MODEL_TYPES)
def tokenizer(request):
    return make_tokenizer(request.param)


def write(tmp_path: Path, name: str, content: str | bytes) -> Path:
    path = tmp_path / name
    path.parent.mkdir(parents=True, exist_ok=True)
    if isinstance(content, str):
        content = content.encode("utf-8")
    path.write_bytes(content)
    return path


def assert_error_at(path: Path, line: int, fragment: str) -> None:
    """Reading ``path`` must raise a DataFormatError whose message starts with exactly ``<path>:<line>: ``."""
    with pytest.raises(DataFormatError) as info:
        read_training_file(path)
    message = str(info.value)
    assert message.startswith(f"{path}:{line}: "), message
    assert info.value.line == line
    assert fragment in message, message


# --------------------------------------------------------------------------------------------------------------
# reading .txt


def test_txt_duplicates_each_line_and_counts_blank_lines(tmp_path, caplog):
    path = write(tmp_path, "wiki.txt", "first sentence .\n\n   \nsecond one\n\t\nthird\n")
    with caplog.at_level(logging.WARNING, logger="simcse.data"):
        texts = read_training_file(path)
    assert texts.columns == {
        "sent0": ["first sentence .", "second one", "third"],
        "sent1": ["first sentence .", "second one", "third"],
    }
    assert texts.num_sent == 2
    assert texts.num_examples == 3
    assert texts.blank_lines_skipped == 3
    assert texts.source == str(path)
    warnings = [r for r in caplog.records if r.levelno == logging.WARNING]
    assert len(warnings) == 1 and "3 blank" in warnings[0].getMessage()


def test_txt_without_blank_lines_does_not_warn(tmp_path, caplog):
    path = write(tmp_path, "a.txt", "x\ny")  # no trailing newline: still two lines, none blank
    with caplog.at_level(logging.WARNING, logger="simcse.data"):
        texts = read_training_file(path)
    assert texts.columns["sent0"] == ["x", "y"]
    assert texts.blank_lines_skipped == 0
    assert not caplog.records


def test_txt_crlf_line_endings(tmp_path):
    path = write(tmp_path, "crlf.txt", "one two\r\n\r\nthree\r\n")
    texts = read_training_file(path)
    assert texts.columns["sent0"] == ["one two", "three"]
    assert texts.blank_lines_skipped == 1


@pytest.mark.parametrize("separator", ["\u2028", "\u2029", "\x85", "\x0b", "\x0c", "\x1e"])
def test_txt_splits_on_newline_only(tmp_path, separator):
    # str.splitlines would split every one of these separators; a training line must stay whole.
    path = write(tmp_path, "sep.txt", f"left{separator}right\nnext line\n")
    texts = read_training_file(path)
    assert texts.columns["sent0"] == [f"left{separator}right", "next line"]


def test_txt_keeps_leading_and_inner_spaces(tmp_path):
    path = write(tmp_path, "sp.txt", "  indented  text\n")
    assert read_training_file(path).columns["sent0"] == ["  indented  text"]


def test_delimiter_override_rejected_for_txt(tmp_path):
    with pytest.raises(ValueError, match="delimiter"):
        read_training_file(write(tmp_path, "a.txt", "x\n"), delimiter=",")


# --------------------------------------------------------------------------------------------------------------
# reading .csv / .tsv


@pytest.mark.parametrize(
    ("header", "row", "expected"),
    [
        ("text", "a sentence", {"sent0": ["a sentence"], "sent1": ["a sentence"]}),
        ("anchor,positive", "a,b", {"sent0": ["a"], "sent1": ["b"]}),
        ("x,y,z", "a,b,c", {"sent0": ["a"], "sent1": ["b"], "hard_neg": ["c"]}),
        # recognised names are used in any order
        ("hard_neg,sent0,sent1", "c,a,b", {"sent0": ["a"], "sent1": ["b"], "hard_neg": ["c"]}),
        ("sent1,sent0", "b,a", {"sent0": ["a"], "sent1": ["b"]}),
        # names that are not exactly the recognised set fall back to position
        ("sent1,other", "a,b", {"sent0": ["a"], "sent1": ["b"]}),
        ("sent0,sent1,sent1", "a,b,c", {"sent0": ["a"], "sent1": ["b"], "hard_neg": ["c"]}),
    ],
)
def test_csv_column_detection(tmp_path, header, row, expected):
    texts = read_training_file(write(tmp_path, "d.csv", f"{header}\n{row}\n"))
    assert texts.columns == expected
    assert texts.num_sent == (3 if "hard_neg" in expected else 2)
    assert texts.num_examples == 1  # the header is never an example, even for one column


def test_tsv_by_extension_and_tsv_substring_in_path_is_ignored(tmp_path):
    tsv = read_training_file(write(tmp_path, "pairs.TSV", "a\tb\nx, y\tz\n"))
    assert tsv.columns == {"sent0": ["x, y"], "sent1": ["z"]}
    # The original switched to tab for any path containing "tsv"; here only the extension counts.
    csv_in_tsv_dir = read_training_file(write(tmp_path, "tsv_exports/nli.csv", "a,b\nx\ty,z\n"))
    assert csv_in_tsv_dir.columns == {"sent0": ["x\ty"], "sent1": ["z"]}


def test_delimiter_override(tmp_path):
    texts = read_training_file(write(tmp_path, "semi.csv", "a;b;c\n1,5;2;3\n"), delimiter=";")
    assert texts.columns == {"sent0": ["1,5"], "sent1": ["2"], "hard_neg": ["3"]}


def test_csv_empty_cells_become_a_space_and_quoting(tmp_path):
    content = 'sent0,sent1,hard_neg\n"a, quoted",,\n"multi\nline",b,""\n'
    texts = read_training_file(write(tmp_path, "q.csv", content))
    assert texts.columns == {"sent0": ["a, quoted", "multi\nline"], "sent1": [" ", "b"], "hard_neg": [" ", " "]}


def test_csv_blank_lines_skipped_and_counted_bom_and_crlf(tmp_path):
    content = "\ufeffsent1,sent0\r\n\r\nb,a\r\n\r\nd,c\r\n"
    texts = read_training_file(write(tmp_path, "bom.csv", content))
    assert texts.columns == {"sent0": ["a", "c"], "sent1": ["b", "d"]}  # BOM did not hide the header names
    assert texts.blank_lines_skipped == 2


# --------------------------------------------------------------------------------------------------------------
# bad input: every error names file and line


def test_empty_files(tmp_path):
    for name in ("empty.txt", "empty.csv"):
        path = write(tmp_path, name, "")
        assert_error_at(path, 0, "no examples")
    blank = write(tmp_path, "blank.txt", "\n  \n\r\n")
    assert_error_at(blank, 0, "no examples")


def test_header_only_csv(tmp_path):
    path = write(tmp_path, "h.csv", "sent0,sent1,hard_neg\n")
    assert_error_at(path, 0, "no examples")


def test_ragged_row_reports_its_physical_line(tmp_path):
    # line 1 header, 2 ok, 3-4 one quoted row spanning two lines, 5 blank, 6 has two fields instead of three
    content = 'a,b,c\nx,y,z\n"p\nq",r,s\n\nshort,row\nu,v,w\n'
    path = write(tmp_path, "r.csv", content)
    assert_error_at(path, 6, "2 fields, header has 3")
    too_many = write(tmp_path, "r2.csv", "a,b\nx,y\nx,y,z\n")
    assert_error_at(too_many, 3, "3 fields, header has 2")


def test_four_columns(tmp_path):
    path = write(tmp_path, "four.csv", "a,b,c,d\n1,2,3,4\n")
    assert_error_at(path, 1, "4 columns")


def test_unterminated_quote_is_an_error(tmp_path):
    path = write(tmp_path, "uq.csv", 'a,b\nx,y\nz,"never closed\nmore\n')
    assert_error_at(path, 3, "CSV syntax error")


@pytest.mark.parametrize("name", ["bad.txt", "bad.csv"])
def test_non_utf8_byte_reports_its_line(tmp_path, name):
    content = b"sent0,sent1\nfine,ok\ncaf\xe9,x\nlast,y\n" if name.endswith(".csv") else b"one\ntwo\ncaf\xe9\nfour\n"
    path = write(tmp_path, name, content)
    assert_error_at(path, 3, "0xe9")


@pytest.mark.parametrize("name", ["train.json", "train.parquet", "train"])
def test_unsupported_extension(tmp_path, name):
    path = write(tmp_path, name, "{}\n")
    assert_error_at(path, 0, "unsupported extension")


# --------------------------------------------------------------------------------------------------------------
# tokenisation


def _ids(tokenizer, sentence: str, **kwargs) -> list[int]:
    return tokenizer(sentence, **kwargs)["input_ids"]


def test_build_train_dataset_tokenises_each_sentence_alone(tokenizer):
    cols = {"sent0": ["a cat sat", "hello"], "sent1": ["the dog", " "], "hard_neg": ["no", "a b c d e"]}
    ds = build_train_dataset(TrainingTexts(cols, 3, 0, "mem"), tokenizer)
    expected_keys = {"input_ids", "attention_mask"} | (
        {"token_type_ids"} if "token_type_ids" in tokenizer("x") else set()
    )
    assert set(ds.column_names) == expected_keys
    assert len(ds) == 2
    for i in range(2):
        row = ds[i]
        assert row["input_ids"] == [_ids(tokenizer, cols[name][i]) for name in ("sent0", "sent1", "hard_neg")]
        assert row["attention_mask"] == [[1] * len(ids) for ids in row["input_ids"]]
        if "token_type_ids" in row:  # a text-pair encoding would give segment 1 to the second sentence
            assert row["token_type_ids"] == [[0] * len(ids) for ids in row["input_ids"]]


def test_build_train_dataset_unsupervised_copies_are_identical(tokenizer):
    sentences = [f"sentence number {i}" for i in range(5)]
    ds = build_train_dataset(TrainingTexts({"sent0": sentences, "sent1": list(sentences)}, 2, 0, "mem"), tokenizer)
    for i, sentence in enumerate(sentences):
        assert ds[i]["input_ids"] == [_ids(tokenizer, sentence)] * 2


@pytest.mark.parametrize("max_seq_length", [32, 9])
def test_truncation_counts_special_tokens(tokenizer, max_seq_length):
    long = "many words in a long sentence " * 20
    full = _ids(tokenizer, long)
    assert len(full) > max_seq_length
    ds = build_train_dataset(
        TrainingTexts({"sent0": [long], "sent1": ["short"]}, 2, 0, "m"), tokenizer, max_seq_length
    )
    ids = ds[0]["input_ids"][0]
    assert len(ids) == max_seq_length
    assert ids == full[: max_seq_length - 1] + [tokenizer.sep_token_id]
    assert ds[0]["input_ids"][1] == _ids(tokenizer, "short")


def test_pad_to_max_length(tokenizer):
    cols = {"sent0": ["a", "a much longer sentence here"], "sent1": ["b c", "d"]}
    ds = build_train_dataset(TrainingTexts(cols, 2, 0, "m"), tokenizer, max_seq_length=40, pad_to_max_length=True)
    for i in range(2):
        for s, name in enumerate(("sent0", "sent1")):
            plain = _ids(tokenizer, cols[name][i])
            assert len(plain) < 40
            assert ds[i]["input_ids"][s] == plain + [tokenizer.pad_token_id] * (40 - len(plain))
            assert ds[i]["attention_mask"][s] == [1] * len(plain) + [0] * (40 - len(plain))


def test_load_training_dataset_returns_summary(tmp_path, tokenizer):
    path = write(tmp_path, "t.csv", "sent0,sent1\n\na,b\nc,d\n")
    ds, summary = load_training_dataset(path, tokenizer, max_seq_length=8)
    assert len(ds) == 2
    assert (summary.num_examples, summary.num_sent, summary.blank_lines_skipped) == (2, 2, 1)
    assert summary.source == str(path)
    assert ds[1]["input_ids"] == [_ids(tokenizer, "c"), _ids(tokenizer, "d")]


# --------------------------------------------------------------------------------------------------------------
# collator


def _features(tokenizer, examples: list[list[str]]) -> list[dict[str, list[list[int]]]]:
    out = []
    for sentences in examples:
        encs = [tokenizer(s) for s in sentences]
        out.append({k: [e[k] for e in encs] for k in encs[0]})
    return out


EXAMPLES = [
    ["a", "a b c d e f g", "x"],
    ["longest sentence of the whole batch here", "b", "y z"],
    ["c d", "e", "the third negative"],
]


def test_collator_flattening_order_and_common_padding(tokenizer):
    features = _features(tokenizer, EXAMPLES)
    batch = SimCSECollator(tokenizer)(features)
    lengths = [[len(_ids(tokenizer, s)) for s in ex] for ex in EXAMPLES]
    longest = max(max(row) for row in lengths)
    expected_keys = {"input_ids", "attention_mask"} | (
        {"token_type_ids"} if "token_type_ids" in features[0] else set()
    )
    assert set(batch) == expected_keys
    for key in expected_keys:
        assert batch[key].shape == (3, 3, longest)
    for b, sentences in enumerate(EXAMPLES):
        for s, sentence in enumerate(sentences):
            ids = _ids(tokenizer, sentence)
            n = len(ids)
            assert batch["input_ids"][b, s, :n].tolist() == ids
            assert batch["input_ids"][b, s, n:].tolist() == [tokenizer.pad_token_id] * (longest - n)
            assert batch["attention_mask"][b, s].tolist() == [1] * n + [0] * (longest - n)
    # the longest sentence sets L for the sentences of every other example and position too
    assert batch["attention_mask"].sum(-1).tolist() == lengths


def test_collator_pad_to_multiple_of_and_max_length(tokenizer):
    features = _features(tokenizer, EXAMPLES)
    longest = max(len(_ids(tokenizer, s)) for ex in EXAMPLES for s in ex)
    batch = SimCSECollator(tokenizer, pad_to_multiple_of=8)(features)
    assert batch["input_ids"].shape == (3, 3, math.ceil(longest / 8) * 8)
    assert batch["input_ids"].shape[-1] % 8 == 0 and batch["input_ids"].shape[-1] > longest - 1
    fixed = SimCSECollator(tokenizer, max_length=longest + 5)(features)
    assert fixed["input_ids"].shape == (3, 3, longest + 5)
    with pytest.raises(ValueError, match="max_length"):
        SimCSECollator(tokenizer, max_length=longest - 1)(features)


def test_collator_with_mlm_and_pre_padded_data(tokenizer):
    cols = {"sent0": ["a b c d e f", "g h"], "sent1": ["i j k", "l m n o p"]}
    ds = build_train_dataset(TrainingTexts(cols, 2, 0, "m"), tokenizer, max_seq_length=12, pad_to_max_length=True)
    features = [ds[i] for i in range(2)]
    torch.manual_seed(0)
    batch = SimCSECollator(tokenizer, do_mlm=True, mlm_probability=0.5)(features)
    for key in ("input_ids", "attention_mask", "mlm_input_ids", "mlm_labels"):
        assert batch[key].shape == (2, 2, 12)  # the original dropped MLM for pre-padded data
    ids, labels, mlm = batch["input_ids"], batch["mlm_labels"], batch["mlm_input_ids"]
    chosen = labels != -100
    assert chosen.any()
    assert torch.equal(labels[chosen], ids[chosen])
    assert torch.equal(mlm[~chosen], ids[~chosen])
    assert not chosen[batch["attention_mask"] == 0].any()  # padding is never a target
    assert features[0]["input_ids"] == ds[0]["input_ids"]  # inputs untouched


def test_collator_per_example_keys_and_empty_batch(tokenizer):
    features = _features(tokenizer, EXAMPLES[:2])
    for i, f in enumerate(features):
        f["label"] = i + 3
    batch = SimCSECollator(tokenizer)(features)
    assert batch["labels"].tolist() == [3, 4]
    with pytest.raises(ValueError, match="empty"):
        SimCSECollator(tokenizer)([])


# --------------------------------------------------------------------------------------------------------------
# mask_tokens


def _random_batch(tokenizer, rows: int, cols: int, seed: int) -> torch.Tensor:
    """Ordinary ids with ~20% of positions replaced by special ids (CLS/SEP/PAD/UNK/MASK, all of them)."""
    gen = torch.Generator().manual_seed(seed)
    special = torch.tensor(tokenizer.all_special_ids)
    ordinary = torch.tensor([i for i in range(len(tokenizer)) if i not in set(special.tolist())])
    ids = ordinary[torch.randint(len(ordinary), (rows, cols), generator=gen)]
    where = torch.rand(rows, cols, generator=gen) < 0.2
    ids[where] = special[torch.randint(len(special), (int(where.sum()),), generator=gen)]
    return ids


def test_mask_tokens_statistics(tokenizer):
    p = 0.15
    ids = _random_batch(tokenizer, 1000, 64, seed=1)
    original = ids.clone()
    special = torch.isin(ids, torch.tensor(tokenizer.all_special_ids))
    eligible = int((~special).sum())
    masked_ids, labels = mask_tokens(ids, tokenizer, p, generator=torch.Generator().manual_seed(2))

    assert torch.equal(ids, original)  # input not modified
    chosen = labels != -100
    # never a special token (PAD/UNK/CLS/SEP/MASK): neither a target nor altered
    assert not chosen[special].any()
    assert torch.equal(masked_ids[special], ids[special])
    # targets are the original ids; unchosen positions keep their id
    assert torch.equal(labels[chosen], ids[chosen])
    assert torch.equal(masked_ids[~chosen], ids[~chosen])

    # chosen fraction of eligible positions ~ p; binomial std sqrt(p(1-p)/N) ~ 0.0016 for N ~ 51k: allow 5 std
    n_chosen = int(chosen.sum())
    assert abs(n_chosen / eligible - p) < 5 * math.sqrt(p * (1 - p) / eligible)

    # of the chosen: 80% [MASK], 10% random id, 10% unchanged. A random draw equals the original or the mask id
    # with probability 1/V each, shifting the shares by at most 0.1 * 2 / V (< 0.001), well inside 5 std.
    vocab = len(tokenizer)
    became_mask = masked_ids[chosen] == tokenizer.mask_token_id
    unchanged = masked_ids[chosen] == ids[chosen]
    other = ~became_mask & ~unchanged
    for observed, share in ((became_mask, 0.8), (unchanged, 0.1), (other, 0.1)):
        tol = 5 * math.sqrt(share * (1 - share) / n_chosen) + 0.2 / vocab
        assert abs(int(observed.sum()) / n_chosen - share) < tol

    # random replacements are drawn uniformly from the whole vocabulary [0, len(tokenizer))
    replaced = masked_ids[chosen][other]
    assert int(replaced.min()) >= 0 and int(replaced.max()) < vocab
    # ~800 draws over V ~ 250 ids: an expected V(1 - e^(-800/V)) ~ 0.96 V distinct values; a narrower range fails
    assert replaced.unique().numel() > 0.85 * vocab * (1 - math.exp(-replaced.numel() / vocab))


def test_mask_tokens_edge_probabilities_and_determinism(tokenizer):
    ids = _random_batch(tokenizer, 50, 20, seed=3)
    special = torch.isin(ids, torch.tensor(tokenizer.all_special_ids))
    _, labels = mask_tokens(ids, tokenizer, 0.0)
    assert (labels == -100).all()
    _, labels = mask_tokens(ids, tokenizer, 1.0)
    assert torch.equal(labels != -100, ~special)
    first = mask_tokens(ids, tokenizer, 0.3, generator=torch.Generator().manual_seed(7))
    second = mask_tokens(ids, tokenizer, 0.3, generator=torch.Generator().manual_seed(7))
    assert torch.equal(first[0], second[0]) and torch.equal(first[1], second[1])


# --------------------------------------------------------------------------------------------------------------
# real data smoke test


def test_real_nli_and_wiki(shared_data):
    tokenizer = make_tokenizer("bert")
    nli_path = shared_data / "nli" / "nli_for_simcse_senteval_snli_devtest.csv"
    nli = read_training_file(nli_path)
    assert (nli.num_examples, nli.num_sent, nli.blank_lines_skipped) == (6339, 3, 0)
    assert nli.columns["sent0"][0] == "Two women are embracing while holding to go packages ."
    assert nli.columns["hard_neg"][0] == "The men are fighting outside a deli ."

    wiki_path = shared_data / "wiki" / "wiki1m_sample.txt"
    assert wiki_path.read_bytes().count(b"\n") == 11914
    ds, summary = load_training_dataset(wiki_path, tokenizer, max_seq_length=32)
    assert (summary.num_examples, summary.num_sent, summary.blank_lines_skipped) == (11914, 2, 0)
    assert len(ds) == 11914
    batch = SimCSECollator(tokenizer, do_mlm=True)([ds[i] for i in range(16)])
    assert batch["input_ids"].shape[:2] == (16, 2) and batch["input_ids"].shape[2] <= 32
    assert torch.equal(batch["input_ids"][:, 0], batch["input_ids"][:, 1])  # unsup: both views are one sentence
