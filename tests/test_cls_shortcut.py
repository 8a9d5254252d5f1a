"""The [CLS] training shortcut (simcse.cls_shortcut): the last layer at position 0 only, same loss."""

from __future__ import annotations

import pytest
import torch

from simcse.cls_shortcut import first_position_of_last_layer, supports_cls_shortcut
from simcse.models import load_cl_model
from simcse.settings import RuntimeOptions
from tests.conftest import make_config, make_tokenizer
from tests.numerics import assert_close_scaled, assert_grads_close

SENTENCES = ["a", "the dog runs in the park with a red ball", "children eat", "a man is playing the guitar ."]


def _pairs(model_type: str) -> dict[str, torch.Tensor]:
    batch = make_tokenizer(model_type)(SENTENCES * 2, padding=True, return_tensors="pt")
    return {k: torch.stack([v[:4], v[4:]], 1) for k, v in batch.items()}  # (4, 2, L), different lengths


def _model(tiny_model_dirs, model_type: str, shortcut: bool, buckets: int = 0, **settings):
    torch.manual_seed(0)  # the same fresh MLP for both models of a comparison
    runtime = RuntimeOptions(length_buckets=buckets, cls_only_last_layer=shortcut)
    return load_cl_model(
        str(tiny_model_dirs[model_type]), simcse_settings={"pooler_type": "cls", **settings}, runtime=runtime
    )


def _query_inputs(model) -> list[torch.Size]:
    """Record the input shape of the last layer's query projection at every call."""
    seen: list[torch.Size] = []
    model.encoder.encoder.layer[-1].attention.self.query.register_forward_hook(
        lambda _m, args, _o: seen.append(args[0].shape)
    )
    return seen


@pytest.mark.parametrize("model_type", ["bert", "roberta"])
@pytest.mark.parametrize("pooler_type", ["cls", "cls_before_pooler"])
@pytest.mark.parametrize("buckets", [1, 3])
def test_shortcut_gives_the_full_layers_loss_and_gradients(tiny_model_dirs, model_type, pooler_type, buckets):
    """Exactness is the point: both sides in float64, so only a real difference can exceed the tolerance."""
    pairs = _pairs(model_type)
    results = []
    for shortcut in (False, True):
        model = _model(tiny_model_dirs, model_type, shortcut, buckets, pooler_type=pooler_type).eval().double()
        seen = _query_inputs(model)
        out = model(**pairs)
        out.loss.backward()
        grads = {n: p.grad.clone() for n, p in model.named_parameters() if p.grad is not None}
        results.append((out.loss.detach(), out.logits.detach(), grads, seen))
    (l_full, g_full, grads_full, seen_full), (l_cut, g_cut, grads_cut, seen_cut) = results
    assert l_cut.dtype == g_cut.dtype == torch.float64
    assert_close_scaled(l_cut, l_full, what="loss")
    assert_close_scaled(g_cut, g_full, what="logits")
    assert_grads_close(grads_cut, grads_full)  # and every parameter still gets its gradient
    assert all(shape[1] > 1 for shape in seen_full)
    assert all(shape[1] == 1 for shape in seen_cut) and sum(s[0] for s in seen_cut) == 8  # 8 rows, query at [CLS]


def test_shortcut_only_for_cls_training_losses(tiny_model_dirs):
    """avg poolers, sentence embeddings and the MLM pass need every position: they run the full layer."""
    pairs = _pairs("bert")
    avg = _model(tiny_model_dirs, "bert", True, pooler_type="avg").eval()
    seen = _query_inputs(avg)
    avg(**pairs)
    assert seen and all(shape[1] > 1 for shape in seen)

    cls = _model(tiny_model_dirs, "bert", True, 1, do_mlm=True).eval()  # one contrastive pass, then the MLM pass
    seen = _query_inputs(cls)
    flat = {k: v.view(8, -1) for k, v in pairs.items()}
    emb = cls(**flat, sent_emb=True)
    assert emb.last_hidden_state.shape[:2] == flat["input_ids"].shape  # full hidden states for users
    labels = pairs["input_ids"].clone()
    cls(**pairs, mlm_input_ids=pairs["input_ids"], mlm_labels=labels)
    assert [shape[1] for shape in seen] == [flat["input_ids"].size(1), 1, flat["input_ids"].size(1)]


def test_layer_list_is_restored_even_after_an_error(tiny_model_dirs):
    model = _model(tiny_model_dirs, "bert", True).train()
    keys = list(model.state_dict())
    layers = list(model.encoder.encoder.layer)
    bad = _pairs("bert")
    bad["input_ids"] = bad["input_ids"].clone()
    bad["input_ids"][0, 0, 1] = model.config.vocab_size + 5  # out of the embedding table
    with pytest.raises(IndexError):
        model(**bad)
    assert list(model.encoder.encoder.layer) == layers and list(model.state_dict()) == keys
    model(**_pairs("bert")).loss.backward()  # and it still trains
    assert list(model.encoder.encoder.layer) == layers


def test_unsupported_layouts_run_in_full(tiny_model_dirs):
    model = _model(tiny_model_dirs, "bert", True)
    assert supports_cls_shortcut(model.encoder)
    model.encoder.config.position_embedding_type = "relative_key"  # attention that needs all query positions
    assert not supports_cls_shortcut(model.encoder)
    seen = _query_inputs(model)
    model.eval()(**_pairs("bert"))
    assert seen and seen[0][1] > 1


def test_attention_dropout_is_applied_at_the_layers_rate():
    """Training mode draws attention-probability dropout with the layer's own p (hidden dropout off here)."""
    from transformers import BertModel

    torch.manual_seed(0)
    config = make_config("bert", 50, hidden_dropout_prob=0.0, attention_probs_dropout_prob=0.5)
    layer = BertModel(config).encoder.layer[0].double()  # float64: the equality is exact maths
    hidden = torch.randn(3, 6, 32, dtype=torch.float64)  # (n, L, H)
    mask = torch.ones(3, 6, dtype=torch.long)
    reference = layer.eval()(hidden, None)[:, :1]  # the full layer's position 0, no dropout
    assert_close_scaled(first_position_of_last_layer(layer, hidden, mask), reference, what="position 0")
    layer.train()
    draws = [first_position_of_last_layer(layer, hidden, mask) for _ in range(2)]
    assert not torch.allclose(draws[0], draws[1]) and not torch.allclose(draws[0], reference)
    layer.attention.self.dropout.p = 0.0
    assert_close_scaled(first_position_of_last_layer(layer, hidden, mask), reference, what="position 0, p=0")


@pytest.mark.parametrize("model_type", ["bert", "roberta"])
@pytest.mark.parametrize(
    "settings",
    [
        {"pooler_type": "cls"},
        {"pooler_type": "cls", "mlp_only_train": True},
        {"pooler_type": "cls_before_pooler"},
        {"pooler_type": "avg"},
    ],
)
def test_in_training_embedder_equals_sent_emb(tiny_model_dirs, model_type, settings):
    """The evaluation embedder (test-time pooler, [CLS]-only last layer) gives sent_emb's vectors."""
    from simcse.trainer import SentenceEmbedder

    model = _model(tiny_model_dirs, model_type, True, **settings).eval()
    tokenizer = make_tokenizer(model_type)
    seen = _query_inputs(model)
    got = SentenceEmbedder(model, tokenizer, torch.device("cpu"), batch_size=3)(SENTENCES)
    batch = tokenizer(SENTENCES, padding=True, return_tensors="pt")
    with torch.no_grad():
        want = model(**batch, sent_emb=True).pooler_output
    assert_close_scaled(got, want, what="embeddings")  # float32 forward, two code paths
    cls_pooler = settings["pooler_type"] != "avg"
    assert all((shape[1] == 1) == cls_pooler for shape in seen[:-1])  # the last call is sent_emb (full)


def test_evaluation_embed_fn_same_vectors_with_and_without_shortcut(tiny_model_dirs):
    from transformers import AutoModel

    from simcse.evaluation import make_embed_fn

    model = AutoModel.from_pretrained(tiny_model_dirs["bert"]).eval()
    tokenizer = make_tokenizer("bert")
    for pooler in ("cls", "cls_before_pooler"):
        fast = make_embed_fn(model, tokenizer, pooler, "cpu", batch_size=3)(SENTENCES)
        full = make_embed_fn(model, tokenizer, pooler, "cpu", batch_size=3, cls_only_last_layer=False)(SENTENCES)
        assert_close_scaled(fast, full, what=f"{pooler} embeddings")  # float32 forward, two code paths
        assert len(model.encoder.layer) == model.config.num_hidden_layers
