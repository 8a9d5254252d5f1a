"""One source for each thing (issue 15): the SimCSE settings object, the speed options fixed at
construction, the one loader, the one encode path and the thread-safe [CLS]-only last layer."""

from __future__ import annotations

import json
import shutil
import threading
from pathlib import Path

import pytest
import torch
from transformers import AutoModel, HfArgumentParser

from simcse.arguments import ModelArguments
from simcse.models import load_cl_model
from simcse.settings import CONFIG_KEYS, RuntimeOptions, SimCSESettings
from tests.conftest import make_tokenizer

SENTENCES = ["a", "the dog runs in the park with a red ball", "children eat", "a man is playing the guitar ."]


# ------------------------------------------------------------------------------------------ settings


def test_settings_keys_and_defaults_are_the_papers():
    assert SimCSESettings().to_dict() == {
        "pooler_type": "cls", "temp": 0.05, "mlp_only_train": False, "hard_negative_weight": 0.0,
        "do_mlm": False, "mlm_weight": 0.1, "gather_negatives": True, "similarity": "cosine",
    }
    assert set(CONFIG_KEYS) == set(SimCSESettings().to_dict())


def test_command_line_builds_the_settings_with_the_original_flag_names():
    parser = HfArgumentParser(ModelArguments)
    (args,) = parser.parse_args_into_dataclasses(
        ["--temp", "0.1", "--pooler_type", "avg", "--gather_negatives", "false", "--hard_negative_weight", "0.5"]
    )
    assert args.simcse_settings() == SimCSESettings(
        temp=0.1, pooler_type="avg", gather_negatives=False, hard_negative_weight=0.5
    )
    (plain,) = parser.parse_args_into_dataclasses([])
    assert plain.simcse_settings() == SimCSESettings()  # defaults come from the settings object
    assert plain.runtime_options() == RuntimeOptions()
    (ablation,) = parser.parse_args_into_dataclasses(["--similarity", "dot", "--same_dropout_mask"])
    assert ablation.simcse_settings() == SimCSESettings(similarity="dot")  # a setting: recorded in config.json
    assert ablation.runtime_options() == RuntimeOptions(same_dropout_mask=True)  # a forward option: not recorded


@pytest.mark.parametrize(
    "values, message",
    [
        ({"pooler_type": "max"}, r"^--pooler_type 'max' is not one of: cls, cls_before_pooler"),
        ({"temp": 0.0}, r"^--temp must be positive, got 0.0$"),
        ({"temp": "hot"}, r"^--temp must be a number, got 'hot'$"),
        ({"do_mlm": "yes"}, r"^--do_mlm must be true or false, got 'yes'$"),
        ({"similarity": "euclid"}, r"^--similarity 'euclid' is not one of: cosine, dot$"),
    ],
)
def test_each_bad_value_gets_one_message(values, message):
    with pytest.raises(ValueError, match=message):
        SimCSESettings(**values)


def test_config_round_trip_and_back_fill(tiny_bert_dir):
    from transformers import AutoConfig

    config = AutoConfig.from_pretrained(tiny_bert_dir)
    assert SimCSESettings.from_config(config) == SimCSESettings()  # a plain checkpoint records nothing
    chosen = SimCSESettings(temp=0.2, mlp_only_train=True, gather_negatives=False)
    chosen.to_config(config)
    assert SimCSESettings.from_config(config) == chosen
    assert SimCSESettings.from_config(config.to_dict()) == chosen  # dicts too (conversion, export)
    assert SimCSESettings.from_config(config, temp=0.3) == chosen.replace(temp=0.3)
    assert chosen.eval_pooler == "cls_before_pooler"
    with pytest.raises(ValueError, match="unknown SimCSE setting"):
        SimCSESettings.from_config(config, tau=0.1)


def test_loaded_model_records_every_setting_and_no_speed_option(tiny_bert_dir, tmp_path):
    settings = SimCSESettings(temp=0.1, gather_negatives=False, similarity="dot")
    runtime = RuntimeOptions(
        length_buckets=3, cls_only_last_layer=False, attn_implementation="eager", same_dropout_mask=True
    )
    model = load_cl_model(str(tiny_bert_dir), simcse_settings=settings, runtime=runtime)
    assert model.runtime == runtime and model.config._attn_implementation == "eager"
    assert (model.length_buckets, model.cls_only_last_layer, model.same_dropout_mask) == (3, False, True)
    for name in ("length_buckets", "same_dropout_mask"):
        with pytest.raises(AttributeError):
            setattr(model, name, 1)  # fixed at construction: the old attribute poking fails loudly
    model.save_pretrained(tmp_path)
    saved = json.loads((tmp_path / "config.json").read_text())
    assert {k: saved[k] for k in CONFIG_KEYS} == settings.to_dict()
    assert not {"length_buckets", "cls_only_last_layer", "runtime", "same_dropout_mask"} & set(saved)


def test_model_card_and_back_fill_include_gather_negatives(tiny_bert_dir, tmp_path):
    from simcse.export import finalize_output_dir

    folder = tmp_path / "out"
    shutil.copytree(tiny_bert_dir, folder)
    settings = SimCSESettings(pooler_type="avg", gather_negatives=False)
    finalize_output_dir(folder, settings.to_dict(), base_model="bert-base-uncased")
    config = json.loads((folder / "config.json").read_text())
    assert config["gather_negatives"] is False and config["pooler_type"] == "avg"
    card = (folder / "README.md").read_text()
    assert "`gather_negatives=False`" in card and "`temp=0.05`" in card


# ------------------------------------------------------------------------------ loading and encoding


def test_tool_checks_the_weights_like_everything_else(tiny_bert_dir, tmp_path):
    from simcse.load_errors import ModelLoadError
    from simcse.tool import SimCSE

    folder = tmp_path / "noweights"
    shutil.copytree(tiny_bert_dir, folder)
    (folder / "model.safetensors").unlink()
    with pytest.raises(ModelLoadError, match=r"noweights: model folder has no weights"):
        SimCSE(str(folder), device="cpu")


@pytest.mark.parametrize("pooler", ["cls", "avg"])
def test_tool_and_evaluation_give_the_same_vectors(tiny_bert_dir, pooler):
    """The tool embeds through evaluation's encode path: same vectors (unit length), input order kept."""
    from simcse.evaluation import load_encoder, make_embed_fn
    from simcse.tool import SimCSE

    model, tokenizer = load_encoder(tiny_bert_dir, "cpu")
    sentences = SENTENCES[::-1] + SENTENCES  # lengths out of order, duplicates
    want = make_embed_fn(model, tokenizer, pooler, "cpu", batch_size=2)(sentences)
    want = want / want.norm(dim=1, keepdim=True)
    got = SimCSE(str(tiny_bert_dir), device="cpu", pooler=pooler).encode(sentences, batch_size=2)
    assert torch.equal(got, want)
    one_by_one = torch.stack([make_embed_fn(model, tokenizer, pooler, "cpu")([s])[0] for s in sentences])
    one_by_one = one_by_one / one_by_one.norm(dim=1, keepdim=True)
    assert torch.allclose(got, one_by_one, atol=1e-5)  # batching and sorting change nothing but rounding


def test_in_training_evaluation_follows_cls_only_last_layer(tiny_bert_dir):
    """--cls_only_last_layer false reaches the in-training evaluation (it used to keep the shortcut on)."""
    from simcse.trainer import SentenceEmbedder

    for shortcut in (True, False):
        model = load_cl_model(str(tiny_bert_dir), runtime=RuntimeOptions(cls_only_last_layer=shortcut)).eval()
        seen: list[int] = []
        model.bert.encoder.layer[-1].attention.self.query.register_forward_hook(
            lambda _m, args, _o, seen=seen: seen.append(args[0].shape[1])
        )
        SentenceEmbedder(model, make_tokenizer("bert"), torch.device("cpu"), batch_size=8)(SENTENCES)
        assert seen and all((width == 1) == shortcut for width in seen)


# ------------------------------------------------------------------------------- [CLS]-only last layer


def test_shortcut_never_changes_the_layer_list_during_a_call(tiny_bert_dir):
    """The old shortcut ran the encoder on a shortened layer list; a second thread would have seen it."""
    model = AutoModel.from_pretrained(tiny_bert_dir).eval()
    layers = model.encoder.layer
    counts: list[int] = []
    layers[0].register_forward_hook(lambda *_: counts.append(len(model.encoder.layer)))
    from simcse.encode import make_embed_fn

    make_embed_fn(model, make_tokenizer("bert"), "cls", "cpu", batch_size=2)(SENTENCES)
    assert counts and set(counts) == {model.config.num_hidden_layers} and model.encoder.layer is layers


def test_threads_sharing_a_model_get_the_sequential_vectors(tiny_bert_dir):
    from simcse.encode import make_embed_fn

    model = AutoModel.from_pretrained(tiny_bert_dir).eval()
    tokenizer = make_tokenizer("bert")
    want = {p: make_embed_fn(model, tokenizer, p, "cpu", batch_size=1)(SENTENCES * 3) for p in ("cls", "avg")}
    got: dict[str, list[torch.Tensor]] = {"cls": [], "avg": []}

    def work(pooler: str) -> None:
        for _ in range(3):
            got[pooler].append(make_embed_fn(model, tokenizer, pooler, "cpu", batch_size=1)(SENTENCES * 3))

    threads = [threading.Thread(target=work, args=(p,)) for p in ("cls", "avg", "cls", "avg")]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=120)
    for pooler, runs in got.items():
        assert len(runs) == 6 and all(torch.equal(r, want[pooler]) for r in runs), pooler


@pytest.mark.parametrize("attn", ["eager", "sdpa"])
def test_shortcut_uses_the_configured_attention_function(tiny_bert_dir, attn, monkeypatch):
    import simcse.cls_shortcut as shortcut
    from simcse.encode import make_embed_fn

    model = AutoModel.from_pretrained(tiny_bert_dir, attn_implementation=attn).eval()
    tokenizer = make_tokenizer("bert")
    full = make_embed_fn(model, tokenizer, "cls_before_pooler", "cpu", cls_only_last_layer=False)(SENTENCES)
    calls: list[str] = []
    original = shortcut.ALL_ATTENTION_FUNCTIONS.get_interface

    def spy(name, default):
        calls.append(name)
        return original(name, default)

    monkeypatch.setattr(shortcut.ALL_ATTENTION_FUNCTIONS, "get_interface", spy)
    fast = make_embed_fn(model, tokenizer, "cls_before_pooler", "cpu")(SENTENCES)
    assert torch.allclose(fast, full, atol=1e-5)
    assert calls and set(calls) == {attn}


def test_other_attention_kernels_run_the_full_layer(tiny_bert_dir):
    from simcse.cls_shortcut import supports_cls_shortcut

    model = AutoModel.from_pretrained(tiny_bert_dir)
    assert supports_cls_shortcut(model)
    model.config._attn_implementation = "flash_attention_2"  # its mask is not a dense (n, 1, L, L) tensor
    assert not supports_cls_shortcut(model)


# ------------------------------------------------------------------------------------- one of each


def test_stsb_reader_is_senteval_s(tmp_path: Path):
    from senteval.utils import DataError

    from simcse.analysis import read_stsb

    folder = tmp_path / "STS" / "STSBenchmark"
    folder.mkdir(parents=True)
    rows = ["main\tx\t2012\t1\t4.5\tA  man plays .\tA man is playing .", "main\tx\t2012\t2\t0.5\tA dog .\tA cat ."]
    (folder / "sts-dev.csv").write_text("\n".join(rows) + "\n", encoding="utf-8")
    assert read_stsb(tmp_path, "dev") == (["A man plays .", "A dog ."], ["A man is playing .", "A cat ."], [4.5, 0.5])
    (folder / "sts-dev.csv").write_text(rows[0] + "\nmain\tx\t2012\t3\tfive\tA .\tB .\n", encoding="utf-8")
    with pytest.raises(DataError, match="sts-dev.csv:2"):
        read_stsb(tmp_path, "dev")


def test_one_data_folder_lookup_and_one_versions(tmp_path, monkeypatch):
    from simcse import evaluation, run_state
    from simcse.arguments import resolve_senteval_data_dir

    monkeypatch.setenv("SENTEVAL_DATA_DIR", str(tmp_path))
    assert Path(resolve_senteval_data_dir()) == evaluation.resolve_data_dir() == tmp_path
    assert evaluation.versions is run_state.versions
    assert {"torch", "transformers", "datasets", "numpy", "scipy", "scikit-learn"} <= set(evaluation.versions())
