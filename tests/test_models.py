"""SimCSE heads on tiny random BERT/RoBERTa: poolers, MLP, dropout views, loading and dispatch."""

from __future__ import annotations

import pytest
import torch
from transformers import AutoConfig, AutoModel, DistilBertConfig

from simcse.length_buckets import CPU_LENGTH_BUCKETS, DEFAULT_LENGTH_BUCKETS, effective_length_buckets
from simcse.losses import contrastive_loss
from simcse.models import BertForCL, RobertaForCL, UnsupportedModelError, load_cl_model, model_class_for
from simcse.poolers import POOLER_TYPES, embed_with_hf_encoder, pool
from simcse.settings import RuntimeOptions
from tests.conftest import make_tokenizer
from tests.numerics import assert_close_scaled, assert_grads_close

SENTENCES = ["a man is playing the guitar .", "the dog runs in the park", "children eat food", "a cat"]


def _batch(model_type: str, sentences=SENTENCES):
    return make_tokenizer(model_type)(sentences, padding=True, return_tensors="pt")


def _hand_masked_mean(x: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    rows = []
    for i in range(x.size(0)):
        keep = [x[i, t] for t in range(x.size(1)) if mask[i, t] == 1]
        rows.append(torch.stack(keep).sum(0) / len(keep))
    return torch.stack(rows)


@pytest.mark.parametrize("model_type", ["bert", "roberta"])
def test_every_pooler_matches_hand_formula(tiny_model_dirs, model_type):
    model = AutoModel.from_pretrained(tiny_model_dirs[model_type]).eval().double()  # float64: exact formulas
    batch = _batch(model_type)
    with torch.no_grad():
        out = model(**batch, output_hidden_states=True)
    hs, mask = out.hidden_states, batch["attention_mask"]
    expected = {
        "cls_before_pooler": out.last_hidden_state[:, 0],
        "avg": _hand_masked_mean(out.last_hidden_state, mask),
        "avg_top2": _hand_masked_mean((hs[-1] + hs[-2]) / 2, mask),
        "avg_first_last": _hand_masked_mean((hs[1] + hs[-1]) / 2, mask),
        "avg_first_last_legacy": _hand_masked_mean((hs[0] + hs[-1]) / 2, mask),
    }
    # `cls` on a plain encoder is its pooler: tanh(W h_cls + b).
    dense = model.pooler.dense
    expected["cls"] = torch.tanh(out.last_hidden_state[:, 0] @ dense.weight.T + dense.bias)
    assert set(expected) == set(POOLER_TYPES)
    with torch.no_grad():
        for name, ref in expected.items():
            got = embed_with_hf_encoder(model, batch, name)
            assert_close_scaled(got, ref, what=name)
            if name != "cls":
                assert_close_scaled(pool(name, mask, out.last_hidden_state, hs), ref, what=f"pool {name}")


def test_pool_rejects_unknown_name_and_missing_hidden_states():
    with pytest.raises(ValueError, match="unknown pooler 'mean'"):
        pool("mean", torch.ones(1, 2), torch.zeros(1, 2, 3))
    with pytest.raises(ValueError, match="needs the encoder's hidden_states"):
        pool("avg_top2", torch.ones(1, 2), torch.zeros(1, 2, 3))


def _cl(tiny_model_dirs, model_type="bert", runtime=None, **settings):
    torch.manual_seed(0)
    return load_cl_model(
        str(tiny_model_dirs[model_type]), simcse_settings={"pooler_type": "cls", **settings}, runtime=runtime
    )


@pytest.mark.parametrize("model_type", ["bert", "roberta"])
def test_dispatch_on_model_type(tiny_model_dirs, model_type):
    model = _cl(tiny_model_dirs, model_type)
    assert isinstance(model, {"bert": BertForCL, "roberta": RobertaForCL}[model_type])


def test_unsupported_model_type_is_refused():
    with pytest.raises(UnsupportedModelError, match="model type 'distilbert' is not supported"):
        model_class_for(DistilBertConfig(), "some/dir")


def test_mlp_is_freshly_initialised_not_the_pretrained_pooler(tiny_bert_dir):
    plain = AutoModel.from_pretrained(tiny_bert_dir)
    model = load_cl_model(str(tiny_bert_dir), simcse_settings={"pooler_type": "cls"})
    assert not torch.equal(model.bert.pooler.dense.weight, plain.pooler.dense.weight)
    assert torch.count_nonzero(model.bert.pooler.dense.bias) == 0
    assert model.bert.pooler.dense.weight.std().item() == pytest.approx(0.02, rel=0.3)
    # Encoder weights do come from the checkpoint.
    assert torch.equal(model.bert.embeddings.word_embeddings.weight, plain.embeddings.word_embeddings.weight)


@pytest.mark.parametrize("mlp_only_train", [False, True])
def test_mlp_only_train_affects_only_the_embedding_path(tiny_model_dirs, mlp_only_train):
    model = _cl(tiny_model_dirs, mlp_only_train=mlp_only_train).eval().double()  # float64: exact formulas
    batch = _batch("bert")
    with torch.no_grad():
        emb = model(**batch, sent_emb=True).pooler_output
        h_cls = model.bert(**batch).last_hidden_state[:, 0]
        dense = model.bert.pooler.dense
        with_mlp = torch.tanh(h_cls @ dense.weight.T + dense.bias)
        assert_close_scaled(emb, h_cls if mlp_only_train else with_mlp, what="sent_emb")
        # Training always applies the MLP: logits are built from MLP outputs either way.
        pairs = {k: torch.stack([v[:2], v[2:]], 1) for k, v in batch.items()}  # (2, 2, L)
        logits = model(**pairs).logits
        ref_loss, ref = contrastive_loss(with_mlp[:2], with_mlp[2:], temp=0.05)
        assert_close_scaled(logits, ref, what="training logits")


@pytest.mark.parametrize("model_type", ["bert", "roberta"])
def test_two_dropout_views_differ_in_train_mode_and_agree_in_eval(tiny_model_dirs, model_type):
    model = _cl(tiny_model_dirs, model_type, pooler_type="cls_before_pooler")
    batch = _batch(model_type)
    dup = {k: torch.stack([v, v], 1) for k, v in batch.items()}  # (B, 2, L): each sentence twice
    model.eval()
    with torch.no_grad():
        logits = model(**dup).logits
    assert_close_scaled(torch.diagonal(logits), torch.full((4,), 1 / 0.05), what="cos = 1 logits")
    model.train()
    pooled, _ = model._encode(*(v.reshape(8, -1) for v in (dup["input_ids"], dup["attention_mask"])), None)
    z = pooled.view(4, 2, -1)
    assert not torch.allclose(z[:, 0], z[:, 1], atol=1e-4)


def test_triples_forward_uses_hard_negative_weight(tiny_model_dirs):
    model = _cl(tiny_model_dirs, hard_negative_weight=1.5).eval().double()  # float64: exact formulas
    batch = _batch("bert", SENTENCES + ["red car", "old house"])
    triples = {k: v.view(2, 3, -1) for k, v in batch.items()}
    with torch.no_grad():
        out = model(**triples)
        emb = model(**batch, sent_emb=True).pooler_output.view(2, 3, -1)
    loss, logits = contrastive_loss(emb[:, 0], emb[:, 1], emb[:, 2], hard_negative_weight=1.5)
    assert out.logits.shape == (2, 4)
    assert_close_scaled(out.logits, logits, what="logits")
    assert_close_scaled(out.loss, loss, what="loss")


@pytest.mark.parametrize("model_type", ["bert", "roberta"])
def test_mlm_loss_is_added_with_its_weight(tiny_model_dirs, model_type):
    model = _cl(tiny_model_dirs, model_type, do_mlm=True, mlm_weight=0.5).eval().double()  # float64: exact sum
    batch = _batch(model_type)
    pairs = {k: torch.stack([v[:2], v[2:]], 1) for k, v in batch.items()}
    labels = pairs["input_ids"].clone()
    labels[pairs["attention_mask"] == 0] = -100
    with torch.no_grad():
        base = model(**pairs).loss
        both = model(**pairs, mlm_input_ids=pairs["input_ids"], mlm_labels=labels).loss
        h = model.encoder(
            input_ids=pairs["input_ids"].view(4, -1), attention_mask=pairs["attention_mask"].view(4, -1)
        ).last_hidden_state
        scores = model.mlm_head(h)
        mlm = torch.nn.functional.cross_entropy(scores.view(-1, scores.size(-1)), labels.view(-1))
    assert both.dtype == torch.float64
    assert_close_scaled(both, base + 0.5 * mlm, what="contrastive + 0.5 MLM")
    # Untied: the decoder starts as a copy of the embeddings but is its own parameter.
    assert model.mlm_head.decoder.weight.data_ptr() != model.get_input_embeddings().weight.data_ptr()


@pytest.mark.parametrize("model_type", ["bert", "roberta"])
def test_mlm_scores_only_masked_positions_same_loss_and_gradients(tiny_model_dirs, model_type):
    """The vocabulary projection runs on the labelled rows only; loss and gradients equal the full
    projection with the mean over labels != -100 (docs/FAITHFULNESS.md, "MLM auxiliary objective"),
    computed here by hand from log-softmax."""
    model = _cl(tiny_model_dirs, model_type, do_mlm=True, mlm_weight=1.0).eval().double()  # no dropout; float64
    batch = _batch(model_type)
    pairs = {k: torch.stack([v[:2], v[2:]], 1) for k, v in batch.items()}  # (2, 2, L)
    labels = torch.full_like(pairs["input_ids"], -100)
    labels[..., 1::3] = pairs["input_ids"][..., 1::3]  # a sparse set of labelled positions
    labels[pairs["attention_mask"] == 0] = -100
    n_labelled = int((labels != -100).sum())
    assert 0 < n_labelled < labels.numel() // 2
    seen: list[torch.Size] = []
    hook = model.mlm_head.register_forward_hook(lambda _m, args, _o: seen.append(args[0].shape))
    out = model(**pairs, mlm_input_ids=pairs["input_ids"], mlm_labels=labels)
    hook.remove()
    out.loss.backward()
    got_grads = {n: p.grad.clone() for n, p in model.named_parameters() if p.grad is not None}
    assert seen == [torch.Size([n_labelled, model.config.hidden_size])]

    model.zero_grad()
    contrastive = model(**pairs).loss
    h = model.encoder(
        input_ids=pairs["input_ids"].view(4, -1), attention_mask=pairs["attention_mask"].view(4, -1)
    ).last_hidden_state  # (4, L, H)
    logp = model.mlm_head(h).log_softmax(-1)  # (4, L, V), every position
    flat_labels = labels.view(4, -1)
    picked = [
        -logp[i, t, flat_labels[i, t]] for i in range(4) for t in range(flat_labels.size(1)) if flat_labels[i, t] >= 0
    ]
    ref = contrastive + torch.stack(picked).mean()
    ref.backward()
    assert_close_scaled(out.loss, ref, what="loss")
    assert_grads_close(got_grads, {n: p.grad for n, p in model.named_parameters() if p.grad is not None})


def test_checkpoint_records_settings_and_loads_with_automodel(tiny_bert_dir, tmp_path):
    model = load_cl_model(str(tiny_bert_dir), simcse_settings={"pooler_type": "cls", "temp": 0.1}).eval()
    model.save_pretrained(tmp_path)
    config = AutoConfig.from_pretrained(tmp_path)
    assert (config.pooler_type, config.temp, config.mlp_only_train) == ("cls", 0.1, False)
    batch = _batch("bert")
    plain = AutoModel.from_pretrained(tmp_path).eval()
    with torch.no_grad():
        assert_close_scaled(plain(**batch).pooler_output, model(**batch, sent_emb=True).pooler_output, what="pooler")
    # Reloading a SimCSE checkpoint keeps the trained MLP instead of re-initialising it.
    again = load_cl_model(str(tmp_path))
    assert torch.equal(again.bert.pooler.dense.weight, model.bert.pooler.dense.weight)


@pytest.mark.parametrize("pooler_type", ["cls", "avg", "avg_first_last"])
def test_length_buckets_compute_the_same_loss_and_gradients(tiny_model_dirs, pooler_type):
    """Bucketed encoding only drops padded positions: loss and gradients equal one padded pass (float64:
    the equality is exact maths; float32 reordering moves gradients by ~1e-3 of their scale)."""
    sentences = ["a", "the dog runs in the park with a red ball", "children eat", "a man is playing the guitar ."]
    batch = _batch("bert", sentences * 2)
    pairs = {k: torch.stack([v[:4], v[4:]], 1) for k, v in batch.items()}  # (4, 2, L), different lengths
    results = []
    for buckets in (1, 3):
        runtime = RuntimeOptions(length_buckets=buckets)
        model = _cl(tiny_model_dirs, runtime=runtime, pooler_type=pooler_type).eval().double()  # no dropout
        out = model(**pairs)
        out.loss.backward()
        grads = {n: p.grad.clone() for n, p in model.named_parameters() if p.grad is not None}
        results.append((out.loss.detach(), out.logits.detach(), grads))
    (l1, g1, w1), (l3, g3, w3) = results
    assert_close_scaled(l3, l1, what="loss")
    assert_close_scaled(g3, g1, what="logits")
    assert_grads_close(w3, w1)


def test_automatic_length_buckets_bucket_on_cpu_only(tiny_model_dirs):
    """The default (0) buckets CPU training batches, keeps one padded pass elsewhere, and an explicit
    setting always wins; the encoder widths show what was run."""
    assert effective_length_buckets(0, torch.device("cpu")) == CPU_LENGTH_BUCKETS > 1
    assert effective_length_buckets(0, torch.device("cuda")) == 1
    assert effective_length_buckets(1, torch.device("cpu")) == 1
    assert effective_length_buckets(3, torch.device("cuda")) == 3
    sentences = ["a", "the dog runs in the park with a red ball", "children eat", "a man is playing the guitar ."]
    batch = _batch("bert", sentences * 2)
    pairs = {k: torch.stack([v[:4], v[4:]], 1) for k, v in batch.items()}  # (4, 2, L)
    full_width = pairs["input_ids"].size(-1)
    for setting, expected_passes in ((DEFAULT_LENGTH_BUCKETS, CPU_LENGTH_BUCKETS), (1, 1)):
        model = _cl(tiny_model_dirs, runtime=RuntimeOptions(length_buckets=setting)).train()
        assert model.length_buckets == setting
        widths: list[int] = []
        model.bert.embeddings.register_forward_hook(lambda _m, _a, out, seen=widths: seen.append(out.size(1)))
        model(**pairs).loss.backward()
        assert len(widths) == expected_passes
        assert max(widths) == full_width and (setting == 1 or min(widths) < full_width)
