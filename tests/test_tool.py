"""The SimCSE tool (docs/FAITHFULNESS.md, "Inference tool"): encode order/shapes, similarity shapes, search
semantics, exact vs faiss, add_to_index, and the pooler choice (explicit > config > 'unsup' heuristic)."""

from __future__ import annotations

import json
import logging
import shutil

import numpy as np
import pytest

from simcse import SimCSE
from tests.numerics import assert_close_scaled

CORPUS = [
    "A man is playing a guitar.",
    "A man plays the guitar on stage.",
    "A woman is slicing an onion.",
    "Someone is cutting vegetables in the kitchen.",
    "The stock market fell sharply today.",
    "Shares dropped on Wall Street this afternoon.",
    "A dog runs across the park.",
    "A puppy is chasing a ball on the grass.",
    "It is raining heavily in London.",
    "The weather in the city is wet and stormy.",
    "I love reading books in the evening.",
    "A child is riding a bicycle.",
]
QUERIES = ["Somebody plays an instrument.", "Stocks went down.", "A boy rides a bike."]


@pytest.fixture(scope="module")
def tool(minilm_path) -> SimCSE:
    return SimCSE(str(minilm_path), device="cpu", pooler="avg", num_cells=4, num_cells_in_search=4)


@pytest.fixture(scope="module")
def corpus_emb(tool) -> np.ndarray:
    # one sentence at a time: no batching/sorting involved, an independent reference
    return np.stack([tool.encode(s, return_numpy=True) for s in CORPUS])


def _expected(tool, corpus_emb, query: str, threshold: float, top_k: int) -> list[tuple[str, float]]:
    q = tool.encode(query, return_numpy=True)
    scores = corpus_emb @ q / (np.linalg.norm(corpus_emb, axis=1) * np.linalg.norm(q))
    ranked = sorted(range(len(CORPUS)), key=lambda i: -scores[i])
    return [(CORPUS[i], float(scores[i])) for i in ranked if scores[i] >= threshold][:top_k]


def _assert_same_hits(got, want):
    assert [s for s, _ in got] == [s for s, _ in want]
    assert_close_scaled(np.float32([v for _, v in got]), np.float32([v for _, v in want]), scale=1.0, what="scores")


def test_encode_shapes_and_order(tool, corpus_emb):
    batched = tool.encode(CORPUS, batch_size=5, return_numpy=True)  # length-sorted batches, then restored
    assert_close_scaled(batched, corpus_emb, scale=1.0, what="batched embeddings")  # unit vectors: scale 1
    assert_close_scaled(np.linalg.norm(batched, axis=1), np.ones(len(CORPUS), np.float32), what="norms")
    assert tool.encode("hi").shape == (384,)
    assert tool.encode("hi", keepdim=True).shape == (1, 384)
    assert tool.encode([]).shape == (0, 384)
    raw = tool.encode(CORPUS[:2], normalize_to_unit=False)
    assert not np.allclose(raw.norm(dim=1).numpy(), 1.0)


def test_similarity_shapes(tool, corpus_emb):
    one = tool.similarity(QUERIES[0], CORPUS[0])
    assert isinstance(one, float)
    row = tool.similarity(QUERIES[0], CORPUS)
    assert row.shape == (len(CORPUS),)
    full = tool.similarity(QUERIES, CORPUS)
    assert full.shape == (len(QUERIES), len(CORPUS))
    assert_close_scaled(full[0], row, scale=1.0, what="row of the matrix")  # cosines: scale 1
    assert_close_scaled(np.float32(one), row[0], scale=1.0, what="single similarity")
    # ndarray keys are vectors, not encoded again; scaling them must not change cosine
    assert_close_scaled(tool.similarity(QUERIES, corpus_emb * 3.0), full, scale=1.0, what="vectors as keys")
    assert_close_scaled(np.float32(tool.similarity(QUERIES[0], corpus_emb[0])), np.float32(one), scale=1.0)


@pytest.mark.parametrize("use_faiss", [False, True])
@pytest.mark.parametrize(("threshold", "top_k"), [(0.0, 3), (0.5, 5), (-1.0, 50), (0.99, 5)])
def test_search_matches_brute_force(tool, corpus_emb, use_faiss, threshold, top_k):
    tool.build_index(CORPUS, use_faiss=use_faiss)
    assert tool.is_faiss_index is use_faiss
    for q in QUERIES:
        got = tool.search(q, threshold=threshold, top_k=top_k)
        want = _expected(tool, corpus_emb, q, threshold, top_k)
        _assert_same_hits(got, want)
        assert len(got) <= top_k and all(score >= threshold for _, score in got)
    # a list of queries honours threshold/top_k exactly as single queries do (issue #186)
    many = tool.search(QUERIES, threshold=threshold, top_k=top_k)
    assert len(many) == len(QUERIES)
    for q, hits in zip(QUERIES, many):
        _assert_same_hits(hits, _expected(tool, corpus_emb, q, threshold, top_k))
    if top_k > len(CORPUS) and threshold < -0.5:
        assert all(len(hits) == len(CORPUS) for hits in many)  # faiss -1 padding filtered out


def test_top1_is_meaningful(tool):
    tool.build_index(CORPUS, use_faiss=False)
    assert tool.search(QUERIES[1], threshold=0.0, top_k=1)[0][0] in CORPUS[4:6]


def test_exact_and_faiss_agree_on_top_k(tool):
    tool.build_index(CORPUS, use_faiss=False)
    exact = tool.search(QUERIES, threshold=-1.0, top_k=4)
    tool.build_index(CORPUS, use_faiss=True)
    flat = tool.search(QUERIES, threshold=-1.0, top_k=4)
    tool.build_index(CORPUS, use_faiss=True, faiss_fast=True)  # IVF, nprobe == cells: exhaustive
    ivf = tool.search(QUERIES, threshold=-1.0, top_k=4)
    for a, b, c in zip(exact, flat, ivf):
        _assert_same_hits(b, a)
        _assert_same_hits(c, a)


@pytest.mark.parametrize("use_faiss", [False, True])
def test_add_to_index(minilm_path, tool, corpus_emb, use_faiss):
    fresh = SimCSE(str(minilm_path), device="cpu", pooler="avg")
    with pytest.raises(RuntimeError, match="build_index"):
        fresh.add_to_index(["anything"])
    with pytest.raises(RuntimeError, match="build_index"):
        fresh.search("anything")
    tool.build_index(CORPUS[:6], use_faiss=use_faiss)
    assert tool.search(QUERIES[2], threshold=0.5) == []
    tool.add_to_index(CORPUS[6:])
    assert len(tool.index["sentences"]) == len(CORPUS)
    _assert_same_hits(tool.search(QUERIES[2], threshold=0.0, top_k=3), _expected(tool, corpus_emb, QUERIES[2], 0.0, 3))


def test_build_index_from_file(tool, tmp_path):
    path = tmp_path / "corpus.txt"
    path.write_text("".join(f"{s}  \n" for s in CORPUS), encoding="utf-8")
    tool.build_index(str(path), use_faiss=False)
    assert tool.index["sentences"] == CORPUS  # trailing whitespace stripped


def test_pooler_resolution(tiny_bert_dir, tmp_path, caplog):
    with caplog.at_level(logging.INFO, logger="simcse.tool"):
        assert SimCSE(str(tiny_bert_dir), device="cpu").pooler == "cls"
    assert "name heuristic" in caplog.text
    unsup = tmp_path / "my-unsup-model"
    shutil.copytree(tiny_bert_dir, unsup)
    assert SimCSE(str(unsup), device="cpu").pooler == "cls_before_pooler"
    config = json.loads((unsup / "config.json").read_text())
    config.update(pooler_type="avg", mlp_only_train=False)
    (unsup / "config.json").write_text(json.dumps(config))
    assert SimCSE(str(unsup), device="cpu").pooler == "avg"  # config beats the name
    assert SimCSE(str(unsup), device="cpu", pooler="avg_top2").pooler == "avg_top2"  # argument beats config
    with pytest.raises(ValueError, match="unknown pooler"):
        SimCSE(str(unsup), device="cpu", pooler="max")


def test_warns_on_cls_without_trained_pooler(tiny_bert_dir, tmp_path, caplog):
    from safetensors.torch import load_file, save_file

    folder = tmp_path / "nopooler"
    shutil.copytree(tiny_bert_dir, folder)
    state = load_file(str(folder / "model.safetensors"))
    save_file(
        {k: v for k, v in state.items() if not k.startswith("pooler.")},
        str(folder / "model.safetensors"),
        metadata={"format": "pt"},
    )
    with caplog.at_level(logging.WARNING, logger="simcse.tool"):
        SimCSE(str(folder), device="cpu", pooler="cls")
    assert "randomly initialised" in caplog.text


def test_model_moved_only_when_device_changes(tiny_bert_dir, monkeypatch):
    tool = SimCSE(str(tiny_bert_dir), device="cpu", pooler="avg")
    moves: list[str] = []
    original_to = tool.model.to

    def counting_to(*args, **kwargs):
        moves.append(str(args[0]))
        return original_to(*args, **kwargs)

    monkeypatch.setattr(tool.model, "to", counting_to)
    for _ in range(3):
        tool.encode(["a b c", "hello"])
    tool.similarity("a", "b")
    assert moves == ["cpu"]
