"""Starting (or continuing) training from every checkpoint format keeps every trained weight.

Formats: (1) a folder saved by the original SimCSE code and not converted (``BertForCL``/``RobertaForCL``,
keys ``bert.*``/``roberta.*``, the MLP at ``mlp.dense.*``, the MLM head at ``lm_head.*`` under the
transformers-4.2 names, ``pytorch_model.bin`` or ``model.safetensors``); (2) our own ``checkpoint-N`` folders
and finished ``output_dir``; (3) plain pre-trained encoder / masked-LM checkpoints, whose pooler is never the
SimCSE MLP and whose BERT MLM head is used only with ``--mlm_head_from_checkpoint``.

Each continuation test runs ``train.main`` for one step, records the weights ``load_cl_model`` handed to the
trainer (before the step) and compares them with the saved tensors exactly; the weights after the step must
then lie within one Adam step (``learning_rate``) of the saved ones, which a re-initialised head cannot.
"""

from __future__ import annotations

import json
import logging
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file, save_file
from transformers import BertForPreTraining, BertModel, RobertaForMaskedLM, RobertaModel

import train
from simcse.models import load_cl_model
from tests.conftest import make_config, make_tokenizer

LR = 1e-3
HEAD_PREFIX = {"bert": "cls.predictions.", "roberta": "lm_head."}


# ---------------------------------------------------------------------------------------------- fixtures


def _randn(*shape: int, generator: torch.Generator) -> torch.Tensor:
    return torch.randn(*shape, generator=generator) * 0.5  # far from any fresh init (std 0.02)


def make_original_folder(path: Path, model_type: str, weight_file: str, seed: int = 3) -> dict[str, torch.Tensor]:
    """Write a folder as the original SimCSE code saved it after an MLM run; return {our key: saved tensor}.

    Key names are written by hand, as transformers 4.2.1 stored them: the encoder without its pooling layer
    (the persistent ``position_ids`` buffer included), ``mlp.dense.*``, and the MLM head, whose ``decoder.bias``
    is the same tensor as ``bias``. BERT's head (``BertLMPredictionHead``) is ``lm_head.transform.*``; ours
    stores it as ``cls.predictions.*`` (the pre-trained BERT names).
    """
    torch.manual_seed(seed)
    tokenizer = make_tokenizer(model_type)
    config = make_config(model_type, len(tokenizer))
    encoder = (BertModel if model_type == "bert" else RobertaModel)(config, add_pooling_layer=False)
    g = torch.Generator().manual_seed(seed)
    h, v = config.hidden_size, config.vocab_size
    saved: dict[str, torch.Tensor] = {}
    ours: dict[str, str] = {}
    for key, tensor in encoder.state_dict().items():
        saved[f"{model_type}.{key}"] = tensor.clone()
        ours[f"{model_type}.{key}"] = f"{model_type}.{key}"
    position_ids = f"{model_type}.embeddings.position_ids"
    saved[position_ids] = torch.arange(config.max_position_embeddings).unsqueeze(0)
    ours[position_ids] = position_ids
    saved["mlp.dense.weight"], saved["mlp.dense.bias"] = _randn(h, h, generator=g), _randn(h, generator=g)
    ours["mlp.dense.weight"], ours["mlp.dense.bias"] = (f"{model_type}.pooler.dense.{n}" for n in ("weight", "bias"))
    if model_type == "bert":
        head = {
            "transform.dense.weight": ("transform.dense.weight", (h, h)),
            "transform.dense.bias": ("transform.dense.bias", (h,)),
            "transform.LayerNorm.weight": ("transform.LayerNorm.weight", (h,)),
            "transform.LayerNorm.bias": ("transform.LayerNorm.bias", (h,)),
            "decoder.weight": ("decoder.weight", (v, h)),
            "bias": ("bias", (v,)),
        }
    else:
        head = {
            "dense.weight": ("dense.weight", (h, h)),
            "dense.bias": ("dense.bias", (h,)),
            "layer_norm.weight": ("layer_norm.weight", (h,)),
            "layer_norm.bias": ("layer_norm.bias", (h,)),
            "decoder.weight": ("decoder.weight", (v, h)),
            "bias": ("bias", (v,)),
        }
    for name, (our_name, shape) in head.items():
        saved[f"lm_head.{name}"] = _randn(*shape, generator=g)
        ours[f"lm_head.{name}"] = HEAD_PREFIX[model_type] + our_name
    saved["lm_head.decoder.bias"] = saved["lm_head.bias"]  # 4.2.1: decoder.bias is bias
    ours["lm_head.decoder.bias"] = HEAD_PREFIX[model_type] + "bias"

    path.mkdir(parents=True)
    if weight_file == "model.safetensors":
        save_file({k: t.clone().contiguous() for k, t in saved.items()}, str(path / weight_file), {"format": "pt"})
    else:
        torch.save(saved, path / weight_file)
    cfg = config.to_dict()
    cfg["architectures"] = ["BertForCL" if model_type == "bert" else "RobertaForCL"]
    (path / "config.json").write_text(json.dumps(cfg, indent=2), encoding="utf-8")
    tokenizer.save_pretrained(path)
    return {ours[k]: t for k, t in saved.items()}


def make_masked_lm_folder(path: Path, model_type: str, seed: int = 5) -> Path:
    """A pre-trained masked-LM checkpoint (BERT: ``BertForPreTraining``, MLM + NSP heads; RoBERTa:
    ``RobertaForMaskedLM``) with a non-zero output bias, saved by today's transformers."""
    torch.manual_seed(seed)
    tokenizer = make_tokenizer(model_type)
    config = make_config(model_type, len(tokenizer))
    model = (BertForPreTraining if model_type == "bert" else RobertaForMaskedLM)(config)
    head = model.cls.predictions if model_type == "bert" else model.lm_head
    with torch.no_grad():
        head.bias.normal_(0.0, 0.5)
        next(p for n, p in head.named_parameters() if "dense.weight" in n).normal_(0.0, 0.5)
    model.save_pretrained(path)
    tokenizer.save_pretrained(path)
    return path


def params_and_buffers(model: torch.nn.Module) -> dict[str, torch.Tensor]:
    return {**dict(model.named_parameters()), **dict(model.named_buffers())}


def assert_loaded_exactly(model: torch.nn.Module, expected: dict[str, torch.Tensor]) -> None:
    got = params_and_buffers(model)
    for key, tensor in expected.items():
        assert key in got, key
        assert torch.equal(got[key].detach(), tensor), key


@pytest.fixture(scope="module")
def train_txt(tmp_path_factory) -> Path:
    words = "man woman dog cat plays eats runs guitar food park fast slow red blue the a".split()
    lines = [" ".join(words[(i * k) % len(words)] for k in range(1, 4 + i % 5)) + f" {i}" for i in range(16)]
    path = tmp_path_factory.mktemp("formats_data") / "train.txt"
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")
    return path


def train_args(model_dir: Path, train_file: Path, out: Path, *extra: str) -> list[str]:
    return [
        "--model_name_or_path", str(model_dir), "--train_file", str(train_file), "--output_dir", str(out),
        "--per_device_train_batch_size", "8", "--max_steps", "1", "--learning_rate", str(LR),
        "--max_seq_length", "16", "--eval_strategy", "no", "--save_strategy", "steps", "--save_steps", "1",
        "--use_cpu", "--seed", "3", "--report_to", "none", "--disable_tqdm", "true", "--plot_training", "false",
        "--dataloader_num_workers", "0", "--do_train", "--pooler_type", "cls", *extra,
    ]  # fmt: skip


def continue_one_step(monkeypatch, start: Path, train_file: Path, out: Path, *extra: str):
    """``train.main`` for one step from ``start``; returns (weights before the step, the model after it, record)."""
    before: dict[str, torch.Tensor] = {}
    real_load = train.load_cl_model

    def recording_load(*args, **kwargs):
        model = real_load(*args, **kwargs)
        before.update({k: t.detach().clone() for k, t in params_and_buffers(model).items()})
        return model

    monkeypatch.setattr(train, "load_cl_model", recording_load)
    train.main(train_args(start, train_file, out, *extra))
    monkeypatch.setattr(train, "load_cl_model", real_load)
    after = load_cl_model(str(out / "checkpoint-1"))
    record = json.loads((out / "simcse_run.json").read_text(encoding="utf-8"))
    return before, after, record


def assert_one_step_from(after: torch.nn.Module, saved: dict[str, torch.Tensor]) -> None:
    """Every trained tensor moved by at most one first Adam step (|lr * g / (|g| + eps)| <= lr) from the saved
    value, and the MLP did move: the step continued from the saved weights instead of fresh ones."""
    got = params_and_buffers(after)
    for key, tensor in saved.items():
        if tensor.is_floating_point():
            diff = (got[key].detach() - tensor).abs().max().item()
            assert diff <= LR * 1.001 + 1e-6, (key, diff)
    mlp = next(k for k in saved if k.endswith("pooler.dense.weight"))
    assert not torch.equal(got[mlp].detach(), saved[mlp])


# ------------------------------------------------------------------------------ (1) original SimCSE format


@pytest.mark.parametrize("weight_file", ["pytorch_model.bin", "model.safetensors"])
@pytest.mark.parametrize("model_type", ["bert", "roberta"])
def test_original_format_loads_every_saved_tensor(tmp_path, caplog, model_type, weight_file):
    folder = tmp_path / "orig"
    saved = make_original_folder(folder, model_type, weight_file)
    with caplog.at_level(logging.INFO, logger="simcse.models"):
        model = load_cl_model(str(folder), simcse_settings={"pooler_type": "cls", "do_mlm": True})
    assert_loaded_exactly(model, saved)
    # nothing of the model was left to a fresh init: every parameter comes from the file
    assert set(dict(model.named_parameters())) <= set(saved)
    stored = "lm_head.* as cls.predictions.*" if model_type == "bert" else "lm_head.*"
    lines = [r.getMessage() for r in caplog.records if r.getMessage().startswith("SimCSE heads")]
    assert lines == [
        f"SimCSE heads of {folder} (original SimCSE checkpoint (not converted)): "
        f"MLP loaded from the checkpoint (mlp.dense.*); MLM head loaded from the checkpoint ({stored})"
    ]
    assert model.simcse_heads == {"checkpoint_format": "original", "mlp": "checkpoint", "mlm_head": "checkpoint"}


def test_original_format_without_mlm_keeps_the_mlp(tmp_path):
    saved = make_original_folder(tmp_path / "orig", "bert", "pytorch_model.bin")
    model = load_cl_model(str(tmp_path / "orig"), simcse_settings={"pooler_type": "cls"})
    assert model.mlm_head is None
    assert_loaded_exactly(model, {k: t for k, t in saved.items() if not k.startswith("cls.")})


@pytest.mark.parametrize("model_type", ["bert", "roberta"])
def test_original_format_continuation(tmp_path, monkeypatch, train_txt, model_type):
    folder = tmp_path / "orig"
    saved = make_original_folder(folder, model_type, "pytorch_model.bin")
    before, after, record = continue_one_step(monkeypatch, folder, train_txt, tmp_path / "out", "--do_mlm")
    assert set(dict(after.named_parameters())) <= set(saved)
    for key, tensor in saved.items():
        assert torch.equal(before[key], tensor), key
    assert_one_step_from(after, saved)
    assert record["simcse_heads"] == {"checkpoint_format": "original", "mlp": "checkpoint", "mlm_head": "checkpoint"}


# ---------------------------------------------------------------------------------- (2) our own checkpoints


@pytest.fixture(scope="module")
def our_mlm_runs(tiny_model_dirs, train_txt, tmp_path_factory) -> dict[str, Path]:
    """One-step MLM runs from the tiny encoders: ``checkpoint-1`` and the finished (converted) output_dir."""
    runs = {}
    for model_type in ("bert", "roberta"):
        out = tmp_path_factory.mktemp(f"ours_{model_type}") / "out"
        train.main(train_args(tiny_model_dirs[model_type], train_txt, out, "--do_mlm"))
        runs[model_type] = out
    return runs


def saved_as_our_names(folder: Path, model_type: str) -> dict[str, torch.Tensor]:
    """The folder's tensors under our model's names (the finished folder stores the encoder unprefixed)."""
    state = load_file(folder / "model.safetensors")
    prefix = f"{model_type}."
    return {k if k.startswith((prefix, HEAD_PREFIX[model_type])) else prefix + k: t for k, t in state.items()}


@pytest.mark.parametrize("which", ["checkpoint-1", "final"])
@pytest.mark.parametrize("model_type", ["bert", "roberta"])
def test_our_checkpoints_load_every_saved_tensor(our_mlm_runs, caplog, model_type, which):
    out = our_mlm_runs[model_type]
    folder = out / "checkpoint-1" if which == "checkpoint-1" else out
    saved = saved_as_our_names(folder, model_type)
    assert f"{model_type}.pooler.dense.weight" in saved and any(k.startswith(HEAD_PREFIX[model_type]) for k in saved)
    with caplog.at_level(logging.INFO, logger="simcse.models"):
        model = load_cl_model(str(folder), simcse_settings={"do_mlm": True})
    assert_loaded_exactly(model, saved)
    assert set(dict(model.named_parameters())) <= set(saved)
    line = next(r.getMessage() for r in caplog.records if r.getMessage().startswith("SimCSE heads"))
    assert f"(SimCSE checkpoint): MLP loaded from the checkpoint ({model_type}.pooler.dense.*)" in line
    assert line.endswith(f"MLM head loaded from the checkpoint ({HEAD_PREFIX[model_type]}*)")


@pytest.mark.parametrize("which", ["checkpoint-1", "final"])
def test_our_checkpoint_continuation(our_mlm_runs, tmp_path, monkeypatch, train_txt, which):
    out = our_mlm_runs["bert"]
    folder = out / "checkpoint-1" if which == "checkpoint-1" else out
    saved = saved_as_our_names(folder, "bert")
    before, after, record = continue_one_step(monkeypatch, folder, train_txt, tmp_path / "out", "--do_mlm")
    for key, tensor in saved.items():
        assert torch.equal(before[key], tensor), key
    assert_one_step_from(after, saved)
    assert record["simcse_heads"] == {"checkpoint_format": "simcse", "mlp": "checkpoint", "mlm_head": "checkpoint"}


def test_first_mlm_run_records_how_its_head_started(our_mlm_runs):
    """The tiny encoders have no MLM head: fresh in the run record, config.json and the model card."""
    for model_type, out in our_mlm_runs.items():
        record = json.loads((out / "simcse_run.json").read_text(encoding="utf-8"))
        assert record["simcse_heads"] == {"checkpoint_format": "pretrained", "mlp": "fresh", "mlm_head": "fresh"}
        assert record["model_args"]["mlm_head_from_checkpoint"] is False
        assert json.loads((out / "config.json").read_text())["mlm_head_init"] == "fresh", model_type
        assert "`mlm_head_init=fresh`" in (out / "README.md").read_text(encoding="utf-8")


# ------------------------------------------------------------------------- (3) pre-trained (masked-LM) checkpoints


def test_bert_masked_lm_head_fresh_by_default(tmp_path, caplog):
    folder = make_masked_lm_folder(tmp_path / "bert_mlm", "bert")
    saved = load_file(folder / "model.safetensors")
    with caplog.at_level(logging.INFO, logger="simcse.models"):
        model = load_cl_model(str(folder), simcse_settings={"pooler_type": "cls", "do_mlm": True})
    got = params_and_buffers(model)
    # the encoder is the checkpoint's
    encoder = {k: t for k, t in saved.items() if k.startswith("bert.") and not k.startswith("bert.pooler.")}
    assert encoder and all(torch.equal(got[k], t) for k, t in encoder.items())
    # the MLP is not the NSP pooler, the head is a fresh one (the saved head had bias ~ N(0, 0.5))
    assert not torch.equal(got["bert.pooler.dense.weight"], saved["bert.pooler.dense.weight"])
    assert torch.count_nonzero(got["bert.pooler.dense.bias"]) == 0
    head = {k: got[k] for k in got if k.startswith("cls.predictions.")}
    assert torch.count_nonzero(head["cls.predictions.bias"]) == 0
    assert torch.count_nonzero(head["cls.predictions.transform.dense.bias"]) == 0
    assert torch.equal(head["cls.predictions.transform.LayerNorm.weight"], torch.ones(32))
    assert head["cls.predictions.transform.dense.weight"].std().item() == pytest.approx(0.02, rel=0.2)
    assert torch.equal(head["cls.predictions.decoder.weight"], got["bert.embeddings.word_embeddings.weight"])
    line = next(r.getMessage() for r in caplog.records if r.getMessage().startswith("SimCSE heads"))
    assert line == (
        f"SimCSE heads of {folder} (pre-trained checkpoint): MLP freshly initialised (a pre-trained pooler is not "
        "the SimCSE MLP); MLM head freshly initialised (the checkpoint's pre-trained cls.predictions.* not used; "
        "--mlm_head_from_checkpoint starts from it), decoder a copy of the input embeddings"
    )
    assert model.config.mlm_head_init == "fresh"


def test_bert_masked_lm_head_from_checkpoint_with_the_flag(tmp_path, caplog):
    folder = make_masked_lm_folder(tmp_path / "bert_mlm", "bert")
    saved = load_file(folder / "model.safetensors")
    with caplog.at_level(logging.INFO, logger="simcse.models"):
        model = load_cl_model(
            str(folder), simcse_settings={"pooler_type": "cls", "do_mlm": True}, mlm_head_from_checkpoint=True
        )
    got = params_and_buffers(model)
    head = {k: t for k, t in saved.items() if k.startswith("cls.predictions.")}
    assert "cls.predictions.bias" in head and "cls.predictions.transform.dense.weight" in head
    assert all(torch.equal(got[k], t) for k, t in head.items())
    # today's transformers saves the tied decoder only as the input embeddings
    assert torch.equal(got["cls.predictions.decoder.weight"], saved["bert.embeddings.word_embeddings.weight"])
    line = next(r.getMessage() for r in caplog.records if r.getMessage().startswith("SimCSE heads"))
    assert line.endswith(
        "MLM head loaded from the checkpoint (cls.predictions.*, --mlm_head_from_checkpoint), "
        "decoder a copy of the input embeddings"
    )
    assert model.config.mlm_head_init == "checkpoint"


def test_roberta_masked_lm_head_loaded_as_the_original(tmp_path, caplog):
    folder = make_masked_lm_folder(tmp_path / "roberta_mlm", "roberta")
    saved = load_file(folder / "model.safetensors")
    with caplog.at_level(logging.INFO, logger="simcse.models"):
        model = load_cl_model(str(folder), simcse_settings={"pooler_type": "cls", "do_mlm": True})
    got = params_and_buffers(model)
    head = {k: t for k, t in saved.items() if k.startswith("lm_head.")}
    assert "lm_head.bias" in head and all(torch.equal(got[k], t) for k, t in head.items())
    assert model.simcse_heads == {"checkpoint_format": "pretrained", "mlp": "fresh", "mlm_head": "checkpoint"}


def test_pretrained_continuation_with_and_without_the_flag(tmp_path, monkeypatch, train_txt):
    folder = make_masked_lm_folder(tmp_path / "bert_mlm", "bert")
    saved = load_file(folder / "model.safetensors")
    head = {k: t for k, t in saved.items() if k.startswith("cls.predictions.")}
    encoder = {k: t for k, t in saved.items() if k.startswith("bert.") and not k.startswith("bert.pooler.")}
    for flag, expected in ((False, "fresh"), (True, "checkpoint")):
        out = tmp_path / f"out_{flag}"
        extra = ["--do_mlm", *(["--mlm_head_from_checkpoint"] if flag else [])]
        before, after, record = continue_one_step(monkeypatch, folder, train_txt, out, *extra)
        assert all(torch.equal(before[k], t) for k, t in encoder.items())
        assert all(torch.equal(before[k], t) for k, t in head.items()) is flag
        assert record["model_args"]["mlm_head_from_checkpoint"] is flag
        assert record["simcse_heads"]["mlm_head"] == expected
        assert json.loads((out / "config.json").read_text())["mlm_head_init"] == expected
        assert f"`mlm_head_init={expected}`" in (out / "README.md").read_text(encoding="utf-8")
        if flag:
            mlp = {"bert.pooler.dense.weight": before["bert.pooler.dense.weight"]}
            assert_one_step_from(after, {**encoder, **head, **mlp})


def test_train_help_documents_the_flag(capsys):
    """``train.py --help`` renders (argparse formats help texts with %) and lists the flag with its default."""
    with pytest.raises(SystemExit) as exit_info:
        train.parse_args(["--help"])
    assert exit_info.value.code == 0
    out = " ".join(capsys.readouterr().out.split())
    assert "--mlm_head_from_checkpoint" in out and "cls.predictions.*" in out
