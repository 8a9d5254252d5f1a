"""SimCSE on every supported encoder type (issue 13), each on a tiny random config with a tiny offline tokenizer
(tests/tiny_families.py): loss against a hand computation from the encoder's own outputs, two training steps
(unsup, then sup with hard negatives, with the MLM objective), the MLM head from the checkpoint's own weights,
export and reload through AutoModel / SentenceTransformer / simcse.SimCSE / load_cl_model with equal vectors,
the speed features, the layer-mixing poolers, token_type_ids, and the refusal of decoders and unknown types.
"""

from __future__ import annotations

import math

import pytest
import torch
from transformers import AutoModel, AutoModelForMaskedLM, AutoTokenizer, GPT2Config, T5Config

from simcse.cls_shortcut import supports_cls_shortcut
from simcse.export import finalize_output_dir
from simcse.families import CLS_SHORTCUT_OFF, SUPPORTED_MODEL_TYPES, family
from simcse.models import UnsupportedModelError, load_cl_model, model_class_for
from simcse.poolers import SEPARATE_MLP_FILE, embed_with_hf_encoder
from simcse.settings import RuntimeOptions
from tests.numerics import assert_close_scaled
from tests.tiny_families import CORPUS, make_family_dir

TYPES = list(SUPPORTED_MODEL_TYPES)
SENTS = CORPUS[:6]  # B = 2 examples of 3 sentences, or B = 3 pairs


@pytest.fixture(scope="module")
def family_dirs(tmp_path_factory):
    """Built on first use: {(model_type, kind): folder}; kind "plain" (dropout 0.1), "nodrop", "mlm"."""
    cache: dict = {}

    def get(model_type: str, kind: str = "plain"):
        key = (model_type, kind)
        if key not in cache:
            path = tmp_path_factory.mktemp(f"{model_type}-{kind}")
            cache[key] = make_family_dir(path, model_type, mlm=kind == "mlm", dropout=0.0 if kind != "plain" else 0.1)
        return cache[key]

    return get


def _batch(folder, num_sent: int, sentences=SENTS):
    tok = AutoTokenizer.from_pretrained(folder)
    enc = tok(list(sentences), padding=True, return_tensors="pt")
    b = len(sentences) // num_sent
    return {k: v.view(b, num_sent, -1) for k, v in enc.items()}, tok


def _mlp_fn(model):
    """tanh(W x + b) of the head's MLP, from its weights (the encoder's pooler or the separate mlp)."""
    module = model.mlp if getattr(model, "mlp", None) is not None else model.encoder.pooler
    dense = getattr(module, "dense", module)
    return lambda x: torch.tanh(x @ dense.weight.T + dense.bias)


def _single_first_token(model, tok, sentence):
    """The last layer at position 0 for one unpadded sentence, straight from the encoder."""
    enc = tok(sentence, return_tensors="pt")
    if not family(model.config.model_type).token_type_ids:
        enc.pop("token_type_ids", None)
    return model.encoder(**enc).last_hidden_state[0, 0]  # (H,)


def _hand_loss(z1, z2, z3, temp, hard_weight):
    rows = []
    for i in range(z1.size(0)):
        logits = []
        for j in range(z2.size(0)):
            logits.append(float(z1[i] @ z2[j] / (z1[i].norm() * z2[j].norm())) / temp)
        if z3 is not None:
            for j in range(z3.size(0)):
                c = float(z1[i] @ z3[j] / (z1[i].norm() * z3[j].norm())) / temp
                logits.append(c + (hard_weight if i == j else 0.0))
        rows.append(-logits[i] + math.log(sum(math.exp(v) for v in logits)))
    return sum(rows) / len(rows)


@pytest.mark.parametrize("num_sent", [2, 3])
@pytest.mark.parametrize("model_type", TYPES)
def test_loss_equals_hand_computation_from_encoder_outputs(family_dirs, model_type, num_sent):
    folder = family_dirs(model_type, "nodrop")
    settings = {"pooler_type": "cls", "temp": 0.05, "hard_negative_weight": 0.7}
    model = load_cl_model(str(folder), simcse_settings=settings).double().train()  # dropout 0: deterministic
    batch, tok = _batch(folder, num_sent)
    loss = model(**batch).loss  # training forward: buckets and the [CLS] shortcut where on
    with torch.no_grad():
        mlp = _mlp_fn(model)
        z = torch.stack([mlp(_single_first_token(model, tok, s)) for s in SENTS]).view(-1, num_sent, 32)
        expected = _hand_loss(z[:, 0], z[:, 1], z[:, 2] if num_sent == 3 else None, 0.05, 0.7)
    assert_close_scaled(loss.detach(), torch.tensor(expected, dtype=torch.float64), what=model_type)


@pytest.mark.parametrize("model_type", TYPES)
def test_two_training_steps_unsup_then_sup_with_mlm(family_dirs, model_type):
    folder = family_dirs(model_type, "mlm")
    model = load_cl_model(
        str(folder), simcse_settings={"pooler_type": "cls", "do_mlm": True}, mlm_head_from_checkpoint=True
    ).train()
    assert model.simcse_heads["mlm_head"] == "checkpoint"
    opt = torch.optim.AdamW(model.parameters(), lr=1e-2)
    before = {k: v.detach().clone() for k, v in model.named_parameters()}
    losses = []
    for num_sent in (2, 3):  # unsup pairs, then sup triples with hard negatives
        batch, tok = _batch(folder, num_sent)
        labels = batch["input_ids"].clone()
        labels[..., ::2] = -100
        masked = batch["input_ids"].clone()
        masked[labels != -100] = tok.mask_token_id
        out = model(**batch, mlm_input_ids=masked, mlm_labels=labels)
        assert torch.isfinite(out.loss)
        assert out.logits.shape == (batch["input_ids"].size(0), batch["input_ids"].size(0) * (num_sent - 1))
        opt.zero_grad()
        out.loss.backward()
        opt.step()
        losses.append(float(out.loss.detach()))
    moved = {k for k, v in model.named_parameters() if not torch.equal(v, before[k])}
    decoder = next(k for k, p in model.named_parameters() if p is model.mlm_decoder.weight)
    assert decoder in moved  # the MLM head trains
    assert any(k.startswith(model.base_model_prefix + ".") for k in moved)  # the encoder trains
    mlp_keys = [k for k in before if k.startswith(("mlp.", f"{model.base_model_prefix}.pooler"))]
    assert mlp_keys and all(k in moved for k in mlp_keys)  # the MLP trains


@pytest.mark.parametrize("model_type", TYPES)
def test_mlm_head_is_the_checkpoints_own_and_loss_is_masked_cross_entropy(family_dirs, model_type):
    folder = family_dirs(model_type, "mlm")
    model = load_cl_model(
        str(folder), simcse_settings={"pooler_type": "avg", "do_mlm": True, "mlm_weight": 0.1},
        mlm_head_from_checkpoint=True,
    ).double()
    reference = AutoModelForMaskedLM.from_pretrained(folder).double().eval()
    ref_state = reference.state_dict()
    ours = model.state_dict()
    decoder_key = next(k for k, p in model.named_parameters() if p is model.mlm_decoder.weight)
    assert not model.mlm_decoder.weight.data_ptr() == model.encoder.get_input_embeddings().weight.data_ptr()
    for key, value in ref_state.items():  # every head tensor of the checkpoint is ours (same name)
        if key in ours and not key.startswith(model.base_model_prefix + "."):
            assert torch.equal(ours[key], value), key
    assert torch.equal(ours[decoder_key], model.encoder.get_input_embeddings().weight)  # untied copy
    batch, tok = _batch(folder, 2)
    labels = batch["input_ids"].clone()
    labels[..., 1::3] = -100
    labels[..., 0] = -100
    model.eval()
    with torch.no_grad():
        plain = model(**batch).loss
        with_mlm = model(**batch, mlm_input_ids=batch["input_ids"], mlm_labels=labels).loss
        flat = {k: v.view(-1, v.size(-1)) for k, v in batch.items()}
        if not family(model_type).token_type_ids:
            flat.pop("token_type_ids", None)
        logp = torch.log_softmax(reference(**flat).logits, dim=-1)  # (n, L, V)
        lab = labels.view(-1, labels.size(-1))
        picked = [-logp[i, t, lab[i, t]] for i in range(lab.size(0)) for t in range(lab.size(1)) if lab[i, t] != -100]
        hand_mlm = torch.stack(picked).mean()
    # ModernBERT's masked-LM loss casts its logits to float32 (transformers' ForMaskedLM loss): fp32 rounding.
    rtol = 1e-6 if model_type == "modernbert" else None
    assert_close_scaled(with_mlm - plain, 0.1 * hand_mlm, rtol=rtol, what=f"{model_type} mlm")


@pytest.mark.parametrize("pooler_type", ["cls", "avg"])
@pytest.mark.parametrize("model_type", TYPES)
def test_export_and_reload_give_the_training_time_vectors(family_dirs, model_type, pooler_type, tmp_path):
    from sentence_transformers import SentenceTransformer

    from simcse.tool import SimCSE

    folder = family_dirs(model_type)
    model = load_cl_model(str(folder), simcse_settings={"pooler_type": pooler_type}).eval()
    tok = AutoTokenizer.from_pretrained(folder)
    out = tmp_path / "out"
    model.save_pretrained(out)
    tok.save_pretrained(out)
    report = finalize_output_dir(out, model.config)
    assert report.sentence_transformers_files and report.conversion.architectures_after == [
        family(model_type).encoder_class_name
    ]
    enc = tok(SENTS, padding=True, return_tensors="pt")
    with torch.no_grad():
        ref = model(**enc, sent_emb=True).pooler_output  # (n, H) the training-time vectors
        plain = AutoModel.from_pretrained(out).eval()
        if not family(model_type).token_type_ids:
            enc.pop("token_type_ids", None)
        hf = plain(**enc)
        if pooler_type == "avg":
            m = enc["attention_mask"].unsqueeze(-1).float()
            via_auto = (hf.last_hidden_state * m).sum(1) / m.sum(1)
        elif family(model_type).separate_mlp:
            from safetensors.torch import load_file

            mlp = load_file(str(out / SEPARATE_MLP_FILE))
            assert hf.pooler_output is None if hasattr(hf, "pooler_output") else True
            via_auto = torch.tanh(hf.last_hidden_state[:, 0] @ mlp["dense.weight"].T + mlp["dense.bias"])
        else:
            via_auto = hf.pooler_output  # the encoder's pooling layer is the trained MLP
        via_tool = SimCSE(str(out), device="cpu").encode(SENTS, normalize_to_unit=False)
        via_st = SentenceTransformer(str(out), device="cpu").encode(SENTS, convert_to_tensor=True)
        again = load_cl_model(str(out)).eval()
        via_reload = again(**tok(SENTS, padding=True, return_tensors="pt"), sent_emb=True).pooler_output
    for name, got in (("AutoModel", via_auto), ("SimCSE", via_tool), ("SentenceTransformer", via_st),
                      ("load_cl_model", via_reload)):
        torch.testing.assert_close(got.float(), ref.float(), atol=1e-5, rtol=1e-5, msg=f"{model_type} {name}")
    if pooler_type == "cls":
        assert again.simcse_heads["mlp"] == "checkpoint"


@pytest.mark.parametrize("pooler_type", ["cls", "avg"])
@pytest.mark.parametrize("model_type", TYPES)
def test_speed_features_compute_the_same_loss_or_are_off(family_dirs, model_type, pooler_type):
    folder = family_dirs(model_type, "nodrop")
    batch, _ = _batch(folder, 2, sentences=SENTS + ["a", "the long long long road goes on and on"])
    losses = {}
    for name, runtime in (("full", RuntimeOptions(length_buckets=1, cls_only_last_layer=False)),
                          ("fast", RuntimeOptions(length_buckets=4, cls_only_last_layer=True))):
        torch.manual_seed(0)
        model = load_cl_model(str(folder), simcse_settings={"pooler_type": pooler_type}, runtime=runtime).double()
        losses[name] = model.train()(**batch).loss.detach()
        if name == "fast":
            assert model._use_cls_shortcut() == (pooler_type != "avg" and model_type not in CLS_SHORTCUT_OFF)
    assert_close_scaled(losses["fast"], losses["full"], what=model_type)
    assert supports_cls_shortcut(model.encoder) == (model_type not in CLS_SHORTCUT_OFF)


@pytest.mark.parametrize("model_type", TYPES)
def test_layer_mixing_poolers_are_defined_for_every_family(family_dirs, model_type):
    folder = family_dirs(model_type, "nodrop")
    model = AutoModel.from_pretrained(folder).double().eval()
    tok = AutoTokenizer.from_pretrained(folder)
    batch = dict(tok(SENTS, padding=True, return_tensors="pt"))
    with torch.no_grad():
        out = model(**{k: v for k, v in batch.items() if k != "token_type_ids" or family(model_type).token_type_ids},
                    output_hidden_states=True)
        hs, mask = out.hidden_states, batch["attention_mask"].unsqueeze(-1).double()
        assert len(hs) == model.config.num_hidden_layers + 1  # embeddings, then one per layer
        assert torch.equal(hs[-1], out.last_hidden_state)

        def mean(x):
            return (x * mask).sum(1) / mask.sum(1)

        expected = {"avg_top2": mean((hs[-1] + hs[-2]) / 2), "avg_first_last": mean((hs[1] + hs[-1]) / 2),
                    "avg_first_last_legacy": mean((hs[0] + hs[-1]) / 2), "cls_before_pooler": hs[-1][:, 0]}
        for name, ref in expected.items():  # the batch keeps the tokenizer's token_type_ids: filtered inside
            assert_close_scaled(embed_with_hf_encoder(model, batch, name), ref, what=f"{model_type} {name}")


def test_token_type_ids_only_where_the_encoder_takes_them():
    assert {t for t in TYPES if family(t).token_type_ids} == {
        "bert", "roberta", "xlm-roberta", "camembert", "albert", "electra", "deberta-v2"}


@pytest.mark.parametrize(
    "config, words", [(GPT2Config(), "'gpt2' is a decoder"), (T5Config(), "'t5' is not supported")]
)
def test_decoders_and_unknown_types_are_refused_in_one_line(config, words):
    with pytest.raises(UnsupportedModelError) as err:
        model_class_for(config, "some/dir")
    message = str(err.value)
    assert words in message and "\n" not in message and message.startswith("some/dir: ")
    assert ", ".join(SUPPORTED_MODEL_TYPES) in message


@pytest.mark.parametrize("model_type, data", [("modernbert", "txt"), ("deberta-v2", "csv")])
def test_train_cli_two_steps_exports_a_folder_every_consumer_reads_alike(family_dirs, model_type, data, tmp_path):
    """train.py end to end on a non-BERT family: unsup + MLM (txt) / sup with hard negatives (csv), 2 steps."""
    from sentence_transformers import SentenceTransformer

    import train
    from simcse.evaluation import load_encoder, make_embed_fn
    from simcse.tool import SimCSE

    folder = family_dirs(model_type, "mlm")
    if data == "txt":
        train_file = tmp_path / "train.txt"
        train_file.write_text("\n".join(CORPUS) + "\n", encoding="utf-8")
        extra = ["--do_mlm"]
    else:
        train_file = tmp_path / "train.csv"
        rows = [f"{CORPUS[i]},{CORPUS[(i + 1) % 8]},{CORPUS[(i + 4) % 8]}" for i in range(8)]
        train_file.write_text("sent0,sent1,hard_neg\n" + "\n".join(rows) + "\n", encoding="utf-8")
        extra = ["--hard_negative_weight", "0.5"]
    out = tmp_path / "out"
    train.main([
        "--model_name_or_path", str(folder), "--train_file", str(train_file), "--output_dir", str(out),
        "--per_device_train_batch_size", "4", "--max_steps", "2", "--max_seq_length", "16", "--use_cpu",
        "--eval_strategy", "no", "--save_strategy", "no", "--report_to", "none", "--disable_tqdm", "true",
        "--plot_training", "false", "--do_train", "--pooler_type", "cls", "--dataloader_num_workers", "0", *extra,
    ])  # fmt: skip
    config = AutoModel.from_pretrained(out).config
    assert (config.pooler_type, config.do_mlm) == ("cls", data == "txt")
    assert (out / SEPARATE_MLP_FILE).is_file() and config.simcse_mlp == SEPARATE_MLP_FILE
    via_tool = SimCSE(str(out), device="cpu").encode(SENTS, normalize_to_unit=False)
    via_st = SentenceTransformer(str(out), device="cpu").encode(SENTS, convert_to_tensor=True)
    model, tok = load_encoder(str(out), "cpu")
    via_eval = make_embed_fn(model, tok, "cls", "cpu")(SENTS)  # evaluation.py's path
    raw = make_embed_fn(model, tok, "cls_before_pooler", "cpu")(SENTS)
    torch.testing.assert_close(via_st, via_tool, atol=1e-5, rtol=1e-5)
    torch.testing.assert_close(via_eval, via_tool, atol=1e-5, rtol=1e-5)
    assert not torch.allclose(raw, via_tool)  # the trained MLP is applied


def test_in_training_evaluation_uses_the_separate_mlp(family_dirs):
    from simcse.trainer import SentenceEmbedder

    folder = family_dirs("distilbert")
    model = load_cl_model(str(folder), simcse_settings={"pooler_type": "cls"}).eval()
    tok = AutoTokenizer.from_pretrained(folder)
    with torch.no_grad():
        ref = model(**tok(SENTS, padding=True, return_tensors="pt"), sent_emb=True).pooler_output
    got = SentenceEmbedder(model, tok, torch.device("cpu"))(SENTS)
    torch.testing.assert_close(got, ref, atol=1e-5, rtol=1e-5)
    assert "simcse_mlp" not in {k.split(".")[0] for k in model.encoder.state_dict()}  # no encoder key


def test_mlm_is_refused_in_one_line_where_a_type_has_no_masked_lm_head(family_dirs, monkeypatch):
    import dataclasses

    from simcse.auto_head import head_class

    cls = head_class("electra")
    monkeypatch.setattr(cls, "family", dataclasses.replace(family("electra"), mlm_class_name=None))
    folder = family_dirs("electra")
    with pytest.raises(UnsupportedModelError) as err:
        load_cl_model(str(folder), simcse_settings={"do_mlm": True})
    assert str(err.value) == (
        f"{folder}: --do_mlm: model type 'electra' has no masked-LM head in transformers; train without --do_mlm"
    )


def test_a_speed_feature_off_for_a_family_is_logged_once_with_its_reason(family_dirs, caplog):
    import logging

    import simcse.families as families

    families._LOGGED.discard(("mpnet", "the [CLS]-only last layer"))
    folder = family_dirs("mpnet", "nodrop")
    batch, _ = _batch(folder, 2)
    model = load_cl_model(str(folder), simcse_settings={"pooler_type": "cls"})
    with caplog.at_level(logging.INFO, logger="simcse.families"):
        model(**batch)
        model(**batch)
    lines = [r.getMessage() for r in caplog.records if "[CLS]-only last layer is off" in r.getMessage()]
    assert lines == [f"the [CLS]-only last layer is off for model type 'mpnet': {CLS_SHORTCUT_OFF['mpnet']} "
                     "(the same numbers, computed in full)"]


@pytest.mark.parametrize("model_type", TYPES)
def test_max_length_comes_from_the_config_and_the_tokenizer(family_dirs, model_type):
    from simcse.encode import model_max_length

    folder = family_dirs(model_type, "nodrop")
    model = AutoModel.from_pretrained(folder)
    tok = AutoTokenizer.from_pretrained(folder)
    assert model_max_length(model, tok) == 64  # the tokenizer's limit, below the 72 positions
    tok.model_max_length = 10**30  # "no limit": the positions decide, minus RoBERTa-style padding offsets
    offset = model.config.pad_token_id + 1 if model_type in ("roberta", "xlm-roberta", "camembert", "mpnet") else 0
    assert model_max_length(model, tok) == 72 - offset
    longest = 72 - offset
    ids = torch.tensor([[tok.cls_token_id] + [tok.unk_token_id] * (longest - 2) + [tok.sep_token_id]])
    assert model(input_ids=ids).last_hidden_state.shape[1] == longest  # the longest input runs


@pytest.mark.parametrize("model_type", SUPPORTED_MODEL_TYPES)
def test_dropout_flag_reaches_each_familys_own_dropout_fields(model_type):
    """``--dropout p`` sets the encoder's hidden and attention dropout under the type's own config names, and
    the encoder built from that config really drops (no invented attribute that nothing reads)."""
    from transformers import AutoConfig

    import train

    config = AutoConfig.for_model(model_type)
    known = set(config.to_dict())
    train.apply_dropout(config, 0.37)
    fields = [k for k in known if "drop" in k and getattr(config, k) == 0.37]
    assert len(fields) >= 2, fields  # hidden (or its parts) and attention
    assert not {k for k in config.to_dict() if k not in known}, "no new config attribute"
    small = AutoConfig.for_model(model_type, **{k: getattr(config, k) for k in fields}, vocab_size=60000,
                                 hidden_size=16, num_hidden_layers=1, num_attention_heads=2, intermediate_size=32)
    if model_type == "albert":
        small.embedding_size = 8
    probs = {m.p for m in AutoModel.from_config(small).modules() if isinstance(m, torch.nn.Dropout)}
    assert 0.37 in probs
