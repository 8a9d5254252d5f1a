"""Tests for simcse.data_cache: the streamed, cached, memory-mapped training set.

The reference for every dataset built here is the in-memory path (``read_training_file`` +
``build_train_dataset``, itself tested against one-sentence-at-a-time tokenizer calls in test_data.py); the
reference for every reading result is a whole-file read (one block), compared with reads in tiny blocks.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import textwrap
import threading
import time
from pathlib import Path

import filelock
import pytest

import simcse.data_cache as data_cache
from simcse.cache_wait import launch_token
from simcse.data import (
    DataFormatError,
    TrainingFileReader,
    apply_augmentation,
    build_train_dataset,
    read_training_file,
)
from simcse.data_cache import (
    READY_FILE,
    TrainingCacheError,
    cache_key,
    cache_key_inputs,
    load_cached_training_dataset,
)
from simcse.run_state import _comparable
from tests.conftest import REPO_ROOT, make_tokenizer

TRICKY = {
    "wiki.txt": "\ufefffirst sentence .\n\n   \nsecond one\r\n\t\nleft\u2028right\ncaf\u00e9 \u00fcber \u4e2d\u6587\n"
    "last",
    "pairs.csv": '\ufeffsent1,sent0\r\n\r\nb,a\r\n"multi\nline, quoted",c\r\n,d\r\n',
    "triples.tsv": "x\ty\tz\na b\tc\t\n\nd\t\"e\tf\"\tg h\n",
    "one.csv": "text\nonly one column\nsecond\n",
}


def write(tmp_path: Path, name: str, content: str | bytes) -> Path:
    path = tmp_path / name
    path.write_bytes(content.encode("utf-8") if isinstance(content, str) else content)
    return path


def rows(dataset) -> list[dict]:
    return [dataset[i] for i in range(len(dataset))]


def reference(path: Path, tokenizer, max_seq_length: int = 32, pad: bool = False) -> list[dict]:
    return rows(build_train_dataset(read_training_file(path), tokenizer, max_seq_length, pad))


@pytest.fixture(scope="module", params=["bert", "roberta"])
def tokenizer(request):
    return make_tokenizer(request.param)


@pytest.fixture
def builds(monkeypatch) -> list[Path]:
    """The final cache folder of every build_cache call, in order (the calls still run)."""
    seen: list[Path] = []
    original = data_cache.build_cache

    def counting(path, tokenizer, target, *args, **kwargs):
        seen.append(target.parent / target.name.split("-")[1])  # built in .tmp-<key>-<pid>, renamed to <key>
        return original(path, tokenizer, target, *args, **kwargs)

    monkeypatch.setattr(data_cache, "build_cache", counting)
    return seen


# --------------------------------------------------------------------------------------------------------------
# streaming reader: block boundaries change nothing


@pytest.mark.parametrize("name", sorted(TRICKY))
def test_reader_in_tiny_blocks_equals_whole_file(tmp_path, name):
    path = write(tmp_path, name, TRICKY[name])
    whole = TrainingFileReader(path, block_bytes=1 << 30)
    expected = list(whole)
    for block in (3, 4, 5, 7, 11):
        reader = TrainingFileReader(path, block_bytes=block)
        assert list(reader) == expected, block
        assert reader.blank_lines_skipped == whole.blank_lines_skipped
        assert reader.sha256() == whole.sha256() == data_cache.file_sha256(path)


def test_reader_line_numbers_by_hand(tmp_path):
    path = write(tmp_path, "q.csv", 'a,b\n"x\ny",1\n\nz,2\n')
    assert list(TrainingFileReader(path, block_bytes=3)) == [(2, ("x\ny", "1")), (5, ("z", "2"))]


@pytest.mark.parametrize("suffix", [".txt", ".csv"])
def test_bad_utf8_byte_across_a_block_boundary(tmp_path, suffix):
    # "caf" + the first byte of a 2-byte sequence, then "(" instead of its continuation byte: bad byte 0xc3 on line
    # 3 at offset len(head) + 3. Every block size puts the boundary somewhere else, also between 0xc3 and "(".
    head = b"sent0,sent1\nfine,ok\n" if suffix == ".csv" else b"one\ntwo\n"
    content = head + b"caf\xc3(,x\nlast,y\n"
    path = write(tmp_path, "bad" + suffix, content)
    expected = f"{path}:3: invalid UTF-8 byte 0xc3 (byte offset {len(head) + 3})"
    for block in range(3, len(content) + 2):
        with pytest.raises(DataFormatError) as info:
            list(TrainingFileReader(path, block_bytes=block))
        assert str(info.value) == expected, block
    # a valid multi-byte character cut by a block boundary is no error
    good = write(tmp_path, "good.txt", "ab\u00e9\u4e2d\n\u00fcx\n")
    for block in range(3, 12):
        assert [r for _, (r,) in TrainingFileReader(good, block_bytes=block)] == ["ab\u00e9\u4e2d", "\u00fcx"]


def test_bom_is_dropped_once_and_counted_in_offsets(tmp_path):
    path = write(tmp_path, "b.txt", b"\xef\xbb\xbfok\n\xff\n")
    with pytest.raises(DataFormatError, match=r":2: invalid UTF-8 byte 0xff \(byte offset 6\)"):
        list(TrainingFileReader(path, block_bytes=3))


# --------------------------------------------------------------------------------------------------------------
# the cached dataset equals the in-memory one


@pytest.mark.parametrize("name", sorted(TRICKY))
@pytest.mark.parametrize("pad", [False, True])
def test_cached_dataset_equals_in_memory_path(tmp_path, tokenizer, name, pad, monkeypatch):
    monkeypatch.setattr(data_cache, "CHUNK_EXAMPLES", 2)  # several chunks even for these small files
    path = write(tmp_path, name, TRICKY[name])
    dataset, summary = load_cached_training_dataset(path, tokenizer, 12, pad, cache_root=tmp_path / "cache")
    expected = reference(path, tokenizer, 12, pad)
    assert rows(dataset) == expected
    texts = read_training_file(path)
    assert (summary.num_examples, summary.num_sent, summary.blank_lines_skipped) == (
        texts.num_examples, texts.num_sent, texts.blank_lines_skipped,
    )  # fmt: skip
    assert dataset.column_names == build_train_dataset(texts, tokenizer).column_names
    assert dataset.cache_files and dataset.cache_files[0]["filename"].startswith(str(tmp_path / "cache"))


def test_parallel_workers_give_the_same_dataset(tmp_path, monkeypatch):
    monkeypatch.setattr(data_cache, "CHUNK_EXAMPLES", 3)
    tokenizer = make_tokenizer("bert")
    path = write(tmp_path, "w.txt", "".join(f"sentence {i} of the file , with {i % 7} words\n" for i in range(40)))
    serial, _ = load_cached_training_dataset(path, tokenizer, cache_root=tmp_path / "a")
    parallel, _ = load_cached_training_dataset(path, tokenizer, num_proc=2, cache_root=tmp_path / "b")
    assert rows(parallel) == rows(serial) == reference(path, tokenizer)


def test_bad_file_error_and_no_cache_left(tmp_path):
    path = write(tmp_path, "r.csv", "a,b\nx,y\nshort\n")
    with pytest.raises(DataFormatError, match=r"r.csv:3: 1 fields, header has 2"):
        load_cached_training_dataset(path, make_tokenizer("bert"), cache_root=tmp_path / "cache")
    assert [p.name for p in (tmp_path / "cache").iterdir() if not p.name.endswith(".lock")] == []  # no launcher


# --------------------------------------------------------------------------------------------------------------
# reuse, staleness, overwrite


def test_second_call_reuses_the_cache(tmp_path, builds, caplog):
    tokenizer = make_tokenizer("bert")
    path = write(tmp_path, "w.txt", "one two\nthree\n\nfour five six\n")
    first, _ = load_cached_training_dataset(path, tokenizer, cache_root=tmp_path / "cache")
    with caplog.at_level("INFO", logger="simcse.data_cache"):
        second, summary = load_cached_training_dataset(path, tokenizer, cache_root=tmp_path / "cache")
    assert len(builds) == 1
    assert rows(second) == rows(first) == reference(path, tokenizer)
    assert summary.blank_lines_skipped == 1
    logged = caplog.text
    assert builds[0].name == cache_key(cache_key_inputs(path, tokenizer, 32, False))
    assert f"training set: cached {builds[0]} ({path})" in logged
    assert "skipped 1 blank line(s)" in logged  # also reported when served from the cache


def test_edited_file_is_never_served_stale(tmp_path, builds):
    """Same name, size and mtime, one changed byte: the content hash gives a new key and a rebuild."""
    tokenizer = make_tokenizer("bert")
    path = write(tmp_path, "w.txt", "the cat sat\nthe dog ran\n")
    stat = path.stat()
    before, _ = load_cached_training_dataset(path, tokenizer, cache_root=tmp_path / "cache")
    path.write_bytes(b"the cat sat\nthe dog won\n")
    os.utime(path, ns=(stat.st_atime_ns, stat.st_mtime_ns))
    assert path.stat().st_size == stat.st_size and path.stat().st_mtime_ns == stat.st_mtime_ns
    after, _ = load_cached_training_dataset(path, tokenizer, cache_root=tmp_path / "cache")
    assert len(builds) == 2 and builds[0] != builds[1]
    assert rows(after) == reference(path, tokenizer) != rows(before)


def test_key_covers_every_input_that_changes_the_result(tmp_path, monkeypatch):
    bert, roberta = make_tokenizer("bert"), make_tokenizer("roberta")
    txt = write(tmp_path, "a.txt", "x,y\nz,w\n")
    csv = write(tmp_path, "a.csv", "x,y\nz,w\n")  # the same bytes, parsed as a csv
    base = cache_key(cache_key_inputs(txt, bert, 32, False))
    assert cache_key(cache_key_inputs(txt, make_tokenizer("bert"), 32, False)) == base  # stable
    bert("warm up", max_length=5, truncation=True, padding="max_length")  # leaves settings on the Rust tokenizer
    assert cache_key(cache_key_inputs(txt, bert, 32, False)) == base
    changed = [
        cache_key(cache_key_inputs(csv, bert, 32, False)),
        cache_key(cache_key_inputs(txt, roberta, 32, False)),
        cache_key(cache_key_inputs(txt, bert, 16, False)),
        cache_key(cache_key_inputs(txt, bert, 32, True)),
    ]
    lower = make_tokenizer("bert")
    lower.padding_side = "left"
    changed.append(cache_key(cache_key_inputs(txt, lower, 32, True)))
    monkeypatch.setattr(data_cache, "SCHEMA_VERSION", data_cache.SCHEMA_VERSION + 1)
    changed.append(cache_key(cache_key_inputs(txt, bert, 32, False)))
    assert len({base, *changed}) == len(changed) + 1
    assert changed[-2] != cache_key(cache_key_inputs(txt, bert, 32, True))  # padding side vs plain padding


def test_augmented_and_plain_runs_never_share_a_cache(tmp_path, builds, monkeypatch):
    """--augmentation (and its seed) are in the key: each of the four calls builds its own cache, a repeat is
    served from its own, and every result equals the in-memory path with the same augmentation."""
    monkeypatch.setattr(data_cache, "CHUNK_EXAMPLES", 2)  # the RNG must run on across chunks
    tokenizer = make_tokenizer("bert")
    path = write(tmp_path, "w.txt", "the cat sat on the mat\na b c d e f g\n\none two three four\nx y\nlast one\n")
    root = tmp_path / "cache"

    def in_memory(spec: str | None, seed: int) -> list[dict]:
        texts = read_training_file(path)
        if spec:
            apply_augmentation(texts, spec, seed)
        return rows(build_train_dataset(texts, tokenizer))

    plain, _ = load_cached_training_dataset(path, tokenizer, cache_root=root)
    crop, _ = load_cached_training_dataset(path, tokenizer, cache_root=root, augmentation="crop:0.3",
                                           augmentation_seed=1)
    crop2, _ = load_cached_training_dataset(path, tokenizer, cache_root=root, augmentation="crop:0.3",
                                            augmentation_seed=2)
    dele, _ = load_cached_training_dataset(path, tokenizer, cache_root=root, augmentation="delete_one_word",
                                           augmentation_seed=1)
    assert len(builds) == len(set(builds)) == 4
    assert rows(plain) == in_memory(None, 0) == reference(path, tokenizer)
    assert rows(crop) == in_memory("crop:0.3", 1) != rows(plain)
    assert rows(crop2) == in_memory("crop:0.3", 2) != rows(crop)
    assert rows(dele) == in_memory("delete_one_word", 1)
    # by hand: the first view is the sentence, the second one word shorter (one wordpiece per word here)
    for row in rows(dele):
        first, second = row["input_ids"]
        assert len(second) == len(first) - 1 or len(first) == 3  # "x y" -> "y"; a one-word sentence is kept
    again_plain, _ = load_cached_training_dataset(path, tokenizer, cache_root=root)
    again_crop, _ = load_cached_training_dataset(path, tokenizer, cache_root=root, augmentation="crop:0.3",
                                                 augmentation_seed=1)
    assert len(builds) == 4
    assert rows(again_plain) == rows(plain) and rows(again_crop) == rows(crop)
    # the plain key is unchanged by the option (existing caches stay valid)
    assert builds[0].name == cache_key(cache_key_inputs(path, tokenizer, 32, False))
    assert "augmentation" not in cache_key_inputs(path, tokenizer, 32, False)


def test_augmentation_of_pairs_fails_with_the_file_and_leaves_no_cache(tmp_path):
    path = write(tmp_path, "p.csv", "sent0,sent1\na dog,a puppy\n")
    root = tmp_path / "cache"
    with pytest.raises(DataFormatError, match=r"p\.csv:0: --augmentation .* unsupervised data; this file has 2"):
        load_cached_training_dataset(path, make_tokenizer("bert"), cache_root=root, augmentation="crop:0.1")
    assert not any(p.name.startswith(".tmp") or (p / READY_FILE).exists() for p in root.iterdir())


def test_overwrite_cache_rebuilds_a_damaged_cache(tmp_path, builds):
    tokenizer = make_tokenizer("bert")
    path = write(tmp_path, "w.txt", "a b c\nd e\n")
    other = write(tmp_path, "o.txt", "x\ny z\n")
    load_cached_training_dataset(path, tokenizer, cache_root=tmp_path / "cache")
    load_cached_training_dataset(other, tokenizer, cache_root=tmp_path / "cache")
    target, foreign = builds
    (target / "data.arrow").write_bytes((foreign / "data.arrow").read_bytes())  # same length, wrong content
    served, _ = load_cached_training_dataset(path, tokenizer, cache_root=tmp_path / "cache")
    assert rows(served) == reference(other, tokenizer)  # a complete cache is trusted as it is ...
    rebuilt, _ = load_cached_training_dataset(path, tokenizer, cache_root=tmp_path / "cache", overwrite=True)
    assert builds == [target, foreign, target]
    assert rows(rebuilt) == reference(path, tokenizer)  # ... and --overwrite_cache replaces it
    assert rows(served) == reference(other, tokenizer)  # the old mapping stays readable after the replacement


KILLED_BUILD = textwrap.dedent(
    """
    import sys, time
    import simcse.data_cache as dc
    from tests.conftest import make_tokenizer

    real = dc.tokenize_chunk
    calls = []

    def slow(*args, **kwargs):
        calls.append(1)
        if len(calls) == 2:
            time.sleep(120)  # killed here, after one chunk is written
        return real(*args, **kwargs)

    dc.tokenize_chunk = slow
    dc.CHUNK_EXAMPLES = 5
    dc.load_cached_training_dataset(sys.argv[1], make_tokenizer("bert"), cache_root=sys.argv[2])
    """
)


def test_killed_build_leaves_nothing_that_is_used(tmp_path, builds):
    path = write(tmp_path, "w.txt", "".join(f"line number {i}\n" for i in range(20)))
    cache = tmp_path / "cache"
    env = dict(os.environ, PYTHONPATH=os.pathsep.join([str(REPO_ROOT), os.environ.get("PYTHONPATH", "")]))
    proc = subprocess.Popen([sys.executable, "-c", KILLED_BUILD, str(path), str(cache)], cwd=REPO_ROOT, env=env)
    try:
        deadline = time.monotonic() + 480  # generous: a loaded machine imports transformers slowly
        while not any(p.name.endswith(".progress") for p in cache.glob("*")):
            assert proc.poll() is None, "the build process ended early"
            assert time.monotonic() < deadline, "the build process never started writing"
            time.sleep(0.2)
        os.kill(proc.pid, signal.SIGKILL)
    finally:
        proc.kill()
        proc.wait(30)
    leftovers = sorted(p.name for p in cache.iterdir())
    assert any(name.startswith(".tmp-") for name in leftovers) and not any(len(n) == 32 for n in leftovers)
    dataset, summary = load_cached_training_dataset(path, make_tokenizer("bert"), cache_root=cache)
    assert len(builds) == 1 and summary.num_examples == 20
    assert rows(dataset) == reference(path, make_tokenizer("bert"))
    assert not any(p.name.startswith(".tmp-") for p in cache.iterdir())  # the next builder removed it


# --------------------------------------------------------------------------------------------------------------
# several processes


CONCURRENT = textwrap.dedent(
    """
    import json, logging, sys
    logging.basicConfig(level=logging.INFO, stream=sys.stdout, format="%(message)s")
    import simcse.data_cache as dc
    from tests.conftest import make_tokenizer
    dc.CHUNK_EXAMPLES = 50
    ds, _ = dc.load_cached_training_dataset(sys.argv[1], make_tokenizer("bert"), cache_root=sys.argv[2])
    print("FILE", ds.cache_files[0]["filename"])
    print("ROWS", json.dumps(ds[:]["input_ids"]))
    """
)


def test_concurrent_processes_build_once_and_map_one_file(tmp_path):
    path = write(tmp_path, "w.txt", "".join(f"sentence {i} for the concurrent test\n" for i in range(600)))
    cache = tmp_path / "cache"
    env = dict(os.environ, PYTHONPATH=os.pathsep.join([str(REPO_ROOT), os.environ.get("PYTHONPATH", "")]))
    procs = [
        subprocess.Popen(
            [sys.executable, "-c", CONCURRENT, str(path), str(cache)], cwd=REPO_ROOT, env=env,
            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
        )  # fmt: skip
        for _ in range(2)
    ]
    outs = []
    for proc in procs:
        try:
            outs.append(proc.communicate(timeout=480)[0])
        finally:
            proc.kill()
    assert all(proc.returncode == 0 for proc in procs), outs
    assert sum(out.count("training set: building") for out in outs) == 1
    files = {line for out in outs for line in out.splitlines() if line.startswith("FILE")}
    data = {line for out in outs for line in out.splitlines() if line.startswith("ROWS")}
    assert len(files) == 1 and len(data) == 1
    expected = [row["input_ids"] for row in reference(path, make_tokenizer("bert"))]
    assert json.loads(data.pop()[5:]) == expected


def test_wait_without_progress_ends_with_a_clear_error(tmp_path):
    tokenizer = make_tokenizer("bert")
    path = write(tmp_path, "w.txt", "a b\n")
    cache = tmp_path / "cache"
    cache.mkdir()
    key = cache_key(cache_key_inputs(path, tokenizer, 32, False))
    holder = filelock.FileLock(str(cache / f"{key}.lock"))
    ready = threading.Event()
    release = threading.Event()

    def hold():  # another "builder" that holds the lock and never progresses (thread locks are per object)
        with holder:
            ready.set()
            release.wait(60)

    thread = threading.Thread(target=hold)
    thread.start()
    try:
        ready.wait(10)
        started = time.monotonic()
        with pytest.raises(TrainingCacheError) as info:
            load_cached_training_dataset(path, tokenizer, cache_root=cache, stall_timeout=1.5)
        waited = time.monotonic() - started
    finally:
        release.set()
        thread.join()
    assert 1.5 <= waited < 10
    message = str(info.value)
    assert message.startswith(f"{cache / key}: waited 2 s for another process to build the tokenised training set")
    assert f"delete {cache / key}.lock" in message and "--data_cache_dir" in message


def test_overwrite_under_torchrun_rebuilds_once_for_all_local_ranks(tmp_path, builds, monkeypatch):
    tokenizer = make_tokenizer("bert")
    path = write(tmp_path, "w.txt", "one\ntwo three\n")
    cache = tmp_path / "cache"
    load_cached_training_dataset(path, tokenizer, cache_root=cache)  # an older cache (no launcher)
    monkeypatch.setenv("LOCAL_RANK", "0")  # both "ranks" below are children of this process's parent
    result = {}

    def other_rank():
        result["ds"] = load_cached_training_dataset(
            path, tokenizer, cache_root=cache, overwrite=True, is_local_main=False, stall_timeout=60
        )[0]

    thread = threading.Thread(target=other_rank)
    thread.start()
    time.sleep(1.0)
    assert thread.is_alive()  # it waits for this launch's rebuild, not the old cache
    main_ds, _ = load_cached_training_dataset(path, tokenizer, cache_root=cache, overwrite=True, is_local_main=True)
    thread.join(60)
    assert len(builds) == 2
    marker = json.loads((builds[1] / READY_FILE).read_text())
    assert marker["launch"] == launch_token()
    assert rows(result["ds"]) == rows(main_ds) == reference(path, tokenizer)


# --------------------------------------------------------------------------------------------------------------
# auto-resume


def test_cache_flags_do_not_change_the_run_for_auto_resume():
    record = {
        "model_args": {"temp": 0.05},
        "data_args": {"train_file": "a.txt", "max_seq_length": 32, "overwrite_cache": False,
                      "data_cache_dir": None, "preprocessing_num_workers": None},
        "training_args": {"seed": 1},
    }  # fmt: skip
    other = json.loads(json.dumps(record))
    other["data_args"].update(overwrite_cache=True, data_cache_dir="/elsewhere", preprocessing_num_workers=4)
    assert _comparable(other) == _comparable(record)
    other["data_args"]["max_seq_length"] = 64
    assert _comparable(other) != _comparable(record)


def test_under_torchrun_a_failed_build_is_reported_not_repeated_by_the_other_ranks(tmp_path, builds, monkeypatch):
    monkeypatch.setenv("LOCAL_RANK", "0")
    path = write(tmp_path, "r.csv", "a,b\nx,y\nshort\n")
    cache = tmp_path / "cache"
    with pytest.raises(DataFormatError, match="r.csv:3: 1 fields"):
        load_cached_training_dataset(path, make_tokenizer("bert"), cache_root=cache)
    with pytest.raises(TrainingCacheError, match=r"another process of this launch failed to build .*r.csv:3: 1 f"):
        load_cached_training_dataset(path, make_tokenizer("bert"), cache_root=cache, is_local_main=False)
    assert len(builds) == 1
