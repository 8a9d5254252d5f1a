"""Checkpoint conversion (docs/FAITHFULNESS.md, "Checkpoint conversion"): fabricated original-format and trainer-format
checkpoints become plain HF encoders whose ``pooler_output`` is the SimCSE MLP and whose
``last_hidden_state[:, 0]`` is the raw [CLS] of the same encoder weights."""

from __future__ import annotations

import hashlib
import json
import shutil
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file, save_file
from transformers import AutoModel, AutoTokenizer

import simcse_to_huggingface
from simcse.export import ExportError, convert_checkpoint, finalize_output_dir, write_model_card
from tests.numerics import assert_close_scaled

SENTENCES = ["a man is playing a guitar .", "the cat sat", "hello world , this is a longer sentence ."]
SIMCSE_FIELDS = {
    "pooler_type": "cls",
    "temp": 0.05,
    "mlp_only_train": False,
    "hard_negative_weight": 0.0,
    "do_mlm": True,
    "mlm_weight": 0.1,
}


def _encoder_state(model_dir: Path) -> dict[str, torch.Tensor]:
    return load_file(str(model_dir / "model.safetensors"))


def _fabricate(
    src: Path, dst: Path, model_type: str, fmt: str, *, with_architectures: bool = True
) -> dict[str, torch.Tensor]:
    """Copy a tiny HF encoder into ``dst`` re-keyed as an original ("original") or trainer ("trainer")
    SimCSE checkpoint. Returns the fabricated state dict (the "ground truth" weights)."""
    shutil.copytree(src, dst)
    (dst / "model.safetensors").unlink()
    encoder = _encoder_state(src)
    # a distinct MLP, so a test cannot pass by reading the tiny model's own random pooler
    torch.manual_seed(123)
    hidden = encoder["pooler.dense.weight"].shape[0]
    mlp_w, mlp_b = torch.randn(hidden, hidden) * 0.2, torch.randn(hidden) * 0.1
    state: dict[str, torch.Tensor] = {}
    for key, value in encoder.items():
        if key.startswith("pooler."):
            continue
        state[f"{model_type}.{key}"] = value.clone()
    mlm_prefix = "cls.predictions." if model_type == "bert" else "lm_head."
    state[f"{mlm_prefix}bias"] = torch.zeros(encoder["embeddings.word_embeddings.weight"].shape[0])
    config = json.loads((dst / "config.json").read_text())
    arch = "BertForCL" if model_type == "bert" else "RobertaForCL"
    if fmt == "original":
        state["mlp.dense.weight"], state["mlp.dense.bias"] = mlp_w, mlp_b
        torch.save(state, dst / "pytorch_model.bin")
    else:
        state[f"{model_type}.pooler.dense.weight"], state[f"{model_type}.pooler.dense.bias"] = mlp_w, mlp_b
        save_file(state, str(dst / "model.safetensors"), metadata={"format": "pt"})
        config.update(SIMCSE_FIELDS)
    if with_architectures:
        config["architectures"] = [arch]
    else:
        config.pop("architectures", None)
    (dst / "config.json").write_text(json.dumps(config, indent=2))
    return state


def _forward(model_dir: Path) -> tuple[torch.Tensor, torch.Tensor | None, list[str]]:
    tok = AutoTokenizer.from_pretrained(model_dir)
    model, info = AutoModel.from_pretrained(model_dir, output_loading_info=True)
    model.eval()
    with torch.no_grad():
        out = model(**tok(SENTENCES, padding=True, return_tensors="pt"))
    return out.last_hidden_state, out.pooler_output, list(info["missing_keys"])


def _digest(folder: Path) -> dict[str, str]:
    return {p.name: hashlib.sha256(p.read_bytes()).hexdigest() for p in sorted(folder.iterdir()) if p.is_file()}


@pytest.mark.parametrize(
    ("model_type", "fmt"),
    [("bert", "original"), ("bert", "trainer"), ("roberta", "original"), ("roberta", "trainer")],
)
def test_conversion_gives_mlp_and_raw_cls(tiny_model_dirs, tmp_path, model_type, fmt):
    ckpt = tmp_path / "ckpt"
    state = _fabricate(tiny_model_dirs[model_type], ckpt, model_type, fmt)
    reference_hidden, _, _ = _forward(tiny_model_dirs[model_type])  # same encoder weights, unprefixed

    report = convert_checkpoint(ckpt)
    assert not report.already_converted
    assert report.has_trained_pooler
    config = json.loads((ckpt / "config.json").read_text())
    assert config["architectures"] == ["BertModel" if model_type == "bert" else "RobertaModel"]

    hidden, pooler_output, missing = _forward(ckpt)
    assert missing == []  # no randomly initialised pooler (the classic unconverted-checkpoint bug)
    cls = hidden[:, 0]  # (n, H)
    assert_close_scaled(cls, reference_hidden[:, 0], what="[CLS] state")  # float32 forward, other loader
    w_key = "mlp.dense" if fmt == "original" else f"{model_type}.pooler.dense"
    by_hand = torch.tanh(cls @ state[f"{w_key}.weight"].T + state[f"{w_key}.bias"])
    assert_close_scaled(pooler_output, by_hand, what="pooler output")


def test_mlm_head_kept_by_default_and_droppable(tiny_bert_dir, tmp_path):
    kept, dropped = tmp_path / "kept", tmp_path / "dropped"
    _fabricate(tiny_bert_dir, kept, "bert", "trainer")
    _fabricate(tiny_bert_dir, dropped, "bert", "trainer")
    convert_checkpoint(kept)
    report = convert_checkpoint(dropped, drop_mlm_head=True)
    assert "cls.predictions.bias" in load_file(str(kept / "model.safetensors"))
    assert "cls.predictions.bias" not in load_file(str(dropped / "model.safetensors"))
    assert report.dropped_keys == ["cls.predictions.bias"]


def test_idempotent(tiny_bert_dir, tmp_path):
    ckpt = tmp_path / "ckpt"
    _fabricate(tiny_bert_dir, ckpt, "bert", "original")
    convert_checkpoint(ckpt)
    before = _digest(ckpt)
    second = convert_checkpoint(ckpt)
    assert second.already_converted
    assert "already in HF format" in second.summary()
    assert _digest(ckpt) == before  # nothing rewritten
    assert not list(ckpt.glob("*.tmp"))  # no temp files left behind


def test_missing_architectures_derived_from_model_type(tiny_roberta_dir, tmp_path):
    ckpt = tmp_path / "ckpt"
    _fabricate(tiny_roberta_dir, ckpt, "roberta", "original", with_architectures=False)
    report = convert_checkpoint(ckpt)
    assert report.architectures_before is None
    assert json.loads((ckpt / "config.json").read_text())["architectures"] == ["RobertaModel"]


def test_pooler_override_is_recorded(tiny_bert_dir, tmp_path):
    ckpt = tmp_path / "ckpt"
    _fabricate(tiny_bert_dir, ckpt, "bert", "original")
    report = convert_checkpoint(ckpt, pooler_type="cls_before_pooler")
    config = json.loads((ckpt / "config.json").read_text())
    assert (config["pooler_type"], config["mlp_only_train"]) == ("cls_before_pooler", False)
    assert report.eval_pooler == "cls_before_pooler"


def test_bad_folders(tiny_bert_dir, tmp_path, capsys):
    empty = tmp_path / "no_weights"
    empty.mkdir()
    shutil.copy(tiny_bert_dir / "config.json", empty / "config.json")
    with pytest.raises(ExportError, match="no model weights"):
        convert_checkpoint(empty)

    other = tmp_path / "gpt2"
    shutil.copytree(tiny_bert_dir, other)
    config = json.loads((other / "config.json").read_text())
    config["model_type"] = "gpt2"
    (other / "config.json").write_text(json.dumps(config))
    with pytest.raises(ExportError, match="unsupported model_type 'gpt2'"):
        convert_checkpoint(other)

    with pytest.raises(ExportError, match="no config.json"):
        convert_checkpoint(tmp_path / "does_not_exist")

    assert simcse_to_huggingface.main(["--path", str(empty)]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith("error:") and "no model weights" in err[0]


def test_cli_converts_and_writes_sentence_transformers_files(tiny_bert_dir, tmp_path, capsys):
    ckpt = tmp_path / "ckpt"
    _fabricate(tiny_bert_dir, ckpt, "bert", "original")
    assert simcse_to_huggingface.main(["--path", str(ckpt), "--pooler", "cls"]) == 0
    out = capsys.readouterr().out
    assert "converted pytorch_model.bin" in out and "sentence-transformers files (cls)" in out
    assert (ckpt / "2_Dense" / "model.safetensors").is_file()

    plain = tmp_path / "plain"
    _fabricate(tiny_bert_dir, plain, "bert", "original")
    assert simcse_to_huggingface.main(["--path", str(plain), "--no_sentence_transformers"]) == 0
    assert not (plain / "modules.json").exists()


def test_finalize_output_dir(tiny_bert_dir, tmp_path):
    out = tmp_path / "output"
    state = _fabricate(tiny_bert_dir, out, "bert", "trainer")
    config = json.loads((out / "config.json").read_text())
    for key in SIMCSE_FIELDS:  # as if the trainer had not recorded them
        config.pop(key)
    (out / "config.json").write_text(json.dumps(config))

    report = finalize_output_dir(
        out, {**SIMCSE_FIELDS, "mlp_only_train": True}, base_model="bert-base-uncased", metrics={"stsb": 0.5}
    )
    config = json.loads((out / "config.json").read_text())
    assert config["pooler_type"] == "cls" and config["mlp_only_train"] is True and config["temp"] == 0.05
    assert report.pooler == "cls_before_pooler"  # unsup recipe: MLP for training only
    modules = json.loads((out / "modules.json").read_text())
    assert [m["path"] for m in modules] == ["", "1_Pooling"]
    card = (out / "README.md").read_text()
    assert card.startswith("---\nlibrary_name: sentence-transformers\n")
    assert "base_model: bert-base-uncased" in card and "cls_before_pooler" in card
    # the trained MLP is still there as the HF pooler, for anyone who wants the cls embedding
    hf = load_file(str(out / "model.safetensors"))
    assert torch.equal(hf["pooler.dense.weight"], state["bert.pooler.dense.weight"])  # a copy: bit for bit


def test_model_card_template_filled(tmp_path):
    """The card is simcse/templates/model_card.md filled in: front matter, facts, the no-ST note, the usage
    snippets with the folder's name and max length; a hand-written README is never overwritten."""
    folder = tmp_path / "my-model"
    folder.mkdir()
    (folder / "config.json").write_text(json.dumps({"hidden_size": 8, "pooler_type": "avg_top2", "temp": 0.05}))
    card = write_model_card(folder, pooler="avg_top2", sentence_transformers=False, metrics={"stsb": 0.5},
                            max_seq_length=32).read_text(encoding="utf-8")  # fmt: skip
    assert card.startswith(
        "---\nlibrary_name: transformers\npipeline_tag: feature-extraction\ntags:\n- simcse\n"
        "- sentence-similarity\n- feature-extraction\n- transformers\n---\n<!-- generated by simcse.export -->\n"
        "# my-model\n\nA SimCSE sentence encoder"
    )
    assert (
        "- pooler used at test time: `avg_top2`\n- output dimension: 8; max sequence length: 32; similarity: cosine\n"
        "- training settings: `pooler_type=avg_top2`, `temp=0.05`\n- metrics: `stsb`=0.5000\n\n## Usage (SimCSE tool)"
    ) in card
    assert 'model = SimCSE("my-model")' in card and 'AutoModel.from_pretrained("my-model")' in card
    assert "This pooler (`avg_top2`) has no sentence-transformers equivalent" in card
    assert "## Usage (sentence-transformers)" not in card and "$" not in card
    assert "max_length=32" in card
    assert card.endswith("    out = model(**batch)\n# see simcse.poolers.embed_with_hf_encoder for this pooler\n```\n")
    (folder / "README.md").write_text("my own card")
    assert write_model_card(folder) is None and (folder / "README.md").read_text() == "my own card"
