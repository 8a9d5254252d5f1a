"""End to end, as transformers' example tests do: ``train.main()`` for a few steps on a tiny model,
then conversion, then loading with AutoModel and sentence-transformers."""

from __future__ import annotations

import json

import pytest
import torch
from safetensors.torch import load_file
from transformers import AutoModel, AutoTokenizer

import simcse_to_huggingface
import train
from simcse.models import load_cl_model
from tests.numerics import assert_close_scaled

SENTENCES = ["a man is playing the guitar .", "the dog runs in the park", "children eat food"]


@pytest.fixture(scope="module")
def wiki_slice(shared_data, tmp_path_factory):
    lines = (shared_data / "wiki" / "wiki1m_sample.txt").read_text(encoding="utf-8").splitlines()[:96]
    path = tmp_path_factory.mktemp("data") / "wiki96.txt"
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")
    return path


def _args(model_dir, train_file, out, senteval_data, *extra):
    return [
        "--model_name_or_path", str(model_dir), "--train_file", str(train_file), "--output_dir", str(out),
        "--per_device_train_batch_size", "16", "--max_steps", "6", "--learning_rate", "3e-5",
        "--max_seq_length", "32", "--evaluation_strategy", "steps", "--eval_steps", "2",
        "--metric_for_best_model", "stsb_spearman", "--load_best_model_at_end", "--do_train",
        "--senteval_data_dir", str(senteval_data), "--logging_steps", "2", "--use_cpu", "--seed", "7",
        "--report_to", "none", "--disable_tqdm", "true", *extra,
    ]  # fmt: skip


@pytest.fixture(scope="module")
def unsup_run(tiny_bert_dir, wiki_slice, senteval_data, tmp_path_factory):
    out = tmp_path_factory.mktemp("unsup_run")
    results = train.main(
        _args(tiny_bert_dir, wiki_slice, out, senteval_data, "--pooler_type", "cls", "--mlp_only_train")
    )
    return out, results


def test_best_checkpoint_is_selected_and_exported(unsup_run):
    out, results = unsup_run
    state = json.loads((out / "trainer_state.json").read_text())
    evals = [e for e in state["log_history"] if "eval_stsb_spearman" in e]
    assert [e["step"] for e in evals] == [2, 4, 6]
    best = max(evals, key=lambda e: e["eval_stsb_spearman"])
    assert state["best_model_checkpoint"].endswith(f"checkpoint-{best['step']}")
    assert state["best_metric"] == pytest.approx(best["eval_stsb_spearman"])
    assert all(-1.0 <= e["eval_stsb_spearman"] <= 1.0 and "eval_align" in e and "eval_uniform" in e for e in evals)
    # The exported model is the best checkpoint's encoder, not the last step's.
    best_weights = load_file(f"{state['best_model_checkpoint']}/model.safetensors")
    final = load_file(out / "model.safetensors")
    key = "embeddings.word_embeddings.weight"
    assert torch.equal(final[key], best_weights[f"bert.{key}"])
    lines = (out / "train_results.txt").read_text().splitlines()
    assert lines == sorted(lines) and any(line.startswith("train_loss = ") for line in lines)
    assert results["train_examples"] == 96
    run = json.loads((out / "simcse_run.json").read_text())
    assert run["seed"] == 7 and run["model_args"]["pooler_type"] == "cls" and "transformers" in run["versions"]
    for png in ("align_uniform.png", "stsb_dev.png"):
        assert (out / png).read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_converted_output_reproduces_training_time_embeddings(unsup_run):
    out, _ = unsup_run
    state = json.loads((out / "trainer_state.json").read_text())
    tokenizer = AutoTokenizer.from_pretrained(out)
    batch = tokenizer(SENTENCES, padding=True, return_tensors="pt")
    trained = load_cl_model(state["best_model_checkpoint"]).eval()
    assert simcse_to_huggingface.main(["--path", str(out)]) in (0, None)  # already converted: harmless
    plain = AutoModel.from_pretrained(out).eval()
    with torch.no_grad():
        raw_cls = trained(**batch, sent_emb=True).pooler_output  # mlp_only_train: raw [CLS]
        h = trained.bert(**batch)
        mlp = h.pooler_output  # the trained MLP
        converted = plain(**batch)
    assert_close_scaled(converted.last_hidden_state[:, 0], raw_cls, what="[CLS] state")  # float32 forward
    assert_close_scaled(converted.pooler_output, mlp, what="MLP output")
    from sentence_transformers import SentenceTransformer

    st = SentenceTransformer(str(out), device="cpu")
    assert_close_scaled(torch.as_tensor(st.encode(SENTENCES)), raw_cls, what="SentenceTransformer")


def test_supervised_triples_with_mlm_train(tiny_roberta_dir, shared_data, senteval_data, tmp_path):
    rows = (shared_data / "nli" / "nli_for_simcse_senteval_snli_devtest.csv").read_text().splitlines()[:49]
    csv = tmp_path / "nli48.csv"
    csv.write_text("\n".join(rows) + "\n", encoding="utf-8")
    out = tmp_path / "sup"
    train.main(
        _args(tiny_roberta_dir, csv, out, senteval_data, "--pooler_type", "cls", "--do_mlm", "--hard_negative_weight",
              "0.5", "--eval_alignment_uniformity", "false")
    )  # fmt: skip
    config = json.loads((out / "config.json").read_text())
    assert config["architectures"] == ["RobertaModel"]
    assert (config["pooler_type"], config["do_mlm"], config["hard_negative_weight"]) == ("cls", True, 0.5)
    modules = json.loads((out / "modules.json").read_text())
    assert any("Dense" in m["type"] for m in modules)  # MLP kept at test time -> a Dense module


def test_bad_training_file_fails_before_training(tiny_bert_dir, senteval_data, tmp_path):
    bad = tmp_path / "bad.csv"
    bad.write_text("a,b,c,d\n1,2,3,4\n", encoding="utf-8")
    from simcse.data import DataFormatError

    with pytest.raises(DataFormatError, match=r"bad\.csv:1: .*4"):
        train.main(_args(tiny_bert_dir, bad, tmp_path / "o", senteval_data))
    assert not (tmp_path / "o" / "checkpoint-2").exists()


def test_trainer_treats_the_loss_as_a_batch_mean(tiny_bert_dir, tmp_path):
    """transformers must divide our loss by the accumulation steps and never rescale it by token counts."""
    from simcse.models import load_cl_model
    from simcse.trainer import CLTrainer

    model = load_cl_model(str(tiny_bert_dir))
    assert model.accepts_loss_kwargs is False
    from transformers import TrainingArguments

    trainer = CLTrainer(model=model, args=TrainingArguments(str(tmp_path), use_cpu=True, report_to="none"))
    assert trainer.loss_is_scaled_for_ga is False and trainer.model_accepts_loss_kwargs is False


def test_torch_compile_path_trains_and_saves_plain_weights(tiny_bert_dir, wiki_slice, senteval_data, tmp_path):
    """``--torch_compile`` (transformers' flag, here with the cheap ``aot_eager`` backend so the test needs no
    C++ compiler) goes through dynamo and AOT autograd in training; evaluation runs on the plain module and
    the saved weights carry no ``_orig_mod.`` prefix. Throughput is logged per logging window."""
    out = tmp_path / "out"
    extra = ("--pooler_type", "cls", "--mlp_only_train", "--torch_compile", "--torch_compile_backend", "aot_eager",
             "--pad_to_max_length")
    results = train.main(_args(tiny_bert_dir, wiki_slice, out, senteval_data, *extra))
    assert results["train_loss"] == pytest.approx(results["train_loss"]) and torch.isfinite(
        torch.tensor(results["train_loss"])
    )
    saved = load_file(out / "model.safetensors")
    assert saved and not any("_orig_mod" in k for k in saved)
    model = AutoModel.from_pretrained(out)
    assert torch.equal(model.embeddings.word_embeddings.weight, saved["embeddings.word_embeddings.weight"])
    history = json.loads((out / "trainer_state.json").read_text())["log_history"]
    rates = [e["train_sentences_per_s"] for e in history if "train_sentences_per_s" in e]
    assert len(rates) == 3 and all(r > 0 for r in rates)
