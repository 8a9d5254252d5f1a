"""One exported folder, three consumers, one embedding: ``SentenceTransformer(path)``, ``SimCSE(path)``
and ``simcse.poolers.embed_with_hf_encoder`` on ``AutoModel`` must agree
(docs/FAITHFULNESS.md, "Checkpoint conversion")."""

from __future__ import annotations

import json
import logging

import pytest
import torch
from sentence_transformers import SentenceTransformer
from transformers import AutoModel, AutoTokenizer

from simcse import SimCSE
from simcse.export import (
    UnsupportedPoolerError,
    export_folder,
    write_sentence_transformers_files,
)
from simcse.poolers import embed_with_hf_encoder
from tests.numerics import assert_close_scaled

SENTENCES = [
    "A man is playing a guitar.",
    "the cat sat",
    "Hello world, this sentence is a fair bit longer than the others in the list.",
    "x",
]
EXPORTABLE = ("cls", "cls_before_pooler", "avg")
REFUSED = ("avg_top2", "avg_first_last", "avg_first_last_legacy")


def _hf_reference(path, pooler: str, max_length: int = 128) -> torch.Tensor:
    tok = AutoTokenizer.from_pretrained(path)
    model = AutoModel.from_pretrained(path).eval()
    batch = tok(SENTENCES, padding=True, truncation=True, max_length=max_length, return_tensors="pt")
    with torch.no_grad():
        return embed_with_hf_encoder(model, dict(batch), pooler)  # (n, H)


def _three_ways(path, pooler: str) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    st = SentenceTransformer(str(path), device="cpu")
    st_emb = st.encode(SENTENCES, convert_to_tensor=True, batch_size=2)  # batches differ from the others
    tool_emb = SimCSE(str(path), device="cpu").encode(SENTENCES, normalize_to_unit=False, batch_size=3)
    return st_emb.cpu(), tool_emb, _hf_reference(path, pooler)


@pytest.mark.parametrize("model_type", ["bert", "roberta"])
@pytest.mark.parametrize("pooler", EXPORTABLE)
def test_exported_folder_agrees_everywhere(tiny_model_dirs, tmp_path, model_type, pooler):
    folder = tmp_path / "export"
    report = export_folder(tiny_model_dirs[model_type], folder, pooler=pooler)
    assert report.sentence_transformers_error is None
    st_emb, tool_emb, ref = _three_ways(folder, pooler)
    assert ref.shape == (len(SENTENCES), 32)
    assert_close_scaled(st_emb, ref, what="SentenceTransformer")  # float32 forward, other batches
    assert_close_scaled(tool_emb, ref, what="SimCSE tool")
    # the export must not be a no-op: each pooler gives its own vectors
    other = "avg" if pooler != "avg" else "cls_before_pooler"
    assert (ref - _hf_reference(folder, other)).abs().max() > 1e-3
    assert (folder / "2_Dense").is_dir() == (pooler == "cls")


def test_minilm_export_agrees(minilm_path, tmp_path):
    folder = tmp_path / "minilm"
    report = export_folder(minilm_path, folder, pooler="avg")
    assert report.model_card is None  # the shipped hand-written README is left alone
    st_emb, tool_emb, ref = _three_ways(folder, "avg")
    assert_close_scaled(st_emb, ref, what="SentenceTransformer")  # float32 forward, other batches
    assert_close_scaled(tool_emb, ref, what="SimCSE tool")
    # and it is the real model: paraphrases are closer than unrelated sentences
    emb = torch.nn.functional.normalize(
        SentenceTransformer(str(folder), device="cpu").encode(
            ["A man plays the guitar.", "Someone is playing a guitar.", "The stock market fell today."],
            convert_to_tensor=True,
        ),
        dim=1,
    )
    assert emb[0] @ emb[1] > emb[0] @ emb[2] + 0.3


@pytest.mark.parametrize("pooler", REFUSED)
def test_layer_mixing_poolers_are_refused_but_hf_still_works(tiny_bert_dir, tmp_path, pooler, caplog):
    folder = tmp_path / "export"
    export_folder(tiny_bert_dir, folder, pooler="cls")  # an earlier export left ST files behind
    assert (folder / "modules.json").is_file()
    with caplog.at_level(logging.WARNING):
        report = export_folder(folder, pooler=pooler)
    assert "no sentence-transformers equivalent" in report.sentence_transformers_error
    assert not (folder / "modules.json").exists() and not (folder / "1_Pooling").exists()
    assert json.loads((folder / "config.json").read_text())["pooler_type"] == pooler
    with pytest.raises(UnsupportedPoolerError, match=pooler):
        write_sentence_transformers_files(folder, pooler)
    # the HF part and the SimCSE tool still work, with the pooler taken from config.json
    tool = SimCSE(str(folder), device="cpu")
    assert tool.pooler == pooler
    ref = _hf_reference(folder, pooler)
    assert_close_scaled(tool.encode(SENTENCES, normalize_to_unit=False), ref, what="SimCSE tool")


def test_cls_needs_trained_pooler(tiny_bert_dir, tmp_path):
    folder = tmp_path / "nopooler"
    export_folder(tiny_bert_dir, folder, pooler="avg")
    from safetensors.torch import load_file, save_file

    state = load_file(str(folder / "model.safetensors"))
    save_file(
        {k: v for k, v in state.items() if not k.startswith("pooler.")},
        str(folder / "model.safetensors"),
        metadata={"format": "pt"},
    )
    with pytest.raises(ValueError, match="needs the trained MLP"):
        write_sentence_transformers_files(folder, "cls")


def test_max_seq_length_is_honoured(tiny_bert_dir, tmp_path):
    folder = tmp_path / "short"
    export_folder(tiny_bert_dir, folder, pooler="avg", max_seq_length=5)
    st = SentenceTransformer(str(folder), device="cpu")
    assert st.max_seq_length == 5
    ref = _hf_reference(folder, "avg", max_length=5)
    assert_close_scaled(st.encode(SENTENCES, convert_to_tensor=True).cpu(), ref, what="SentenceTransformer")
