"""Gradient caching (simcse/grad_cache.py): the full-batch loss and gradients from chunked passes.

With dropout 0 the cached step must equal the plain full-batch step; compared in float64, where the
equality is exact maths (float32 reordering moves gradients by ~1e-3 of their scale, tests/numerics.py).
With dropout on, each chunk's second pass must draw the same dropout masks as its first."""

from __future__ import annotations

import pytest
import torch
from transformers import AutoConfig

from simcse.grad_cache import MLM_REFUSAL, cached_contrastive_loss, chunk_slices
from simcse.models import load_cl_model
from simcse.settings import RuntimeOptions
from tests.conftest import make_tokenizer
from tests.numerics import assert_close_scaled, assert_grads_close

SENTS = [
    "a", "the dog runs in the park with a red ball", "children eat", "a man is playing the guitar .",
    "a cat sits on the table", "the old house is red and the river is blue", "a boy reads", "the team plays a game",
    "a girl is cooking in the kitchen", "the river", "people walk in the street today", "a small car",
    "two men", "a woman is riding a horse on the beach", "food",
]  # fmt: skip


def _cl(path, dropout: float = 0.0, runtime=None, **settings):
    config = AutoConfig.from_pretrained(path, hidden_dropout_prob=dropout, attention_probs_dropout_prob=dropout)
    torch.manual_seed(0)
    model = load_cl_model(str(path), config=config, simcse_settings=settings, runtime=runtime)
    return model.double().train()


def _examples(num_sent: int, n: int = 5) -> dict[str, torch.Tensor]:
    enc = make_tokenizer("bert")(SENTS[: n * num_sent], padding=True, return_tensors="pt")
    return {k: v.view(n, num_sent, -1) for k, v in enc.items()}  # (n, S, L), rows of different lengths


def _all_grads(model) -> dict[str, torch.Tensor]:
    return {n: p.grad.detach().clone() for n, p in model.named_parameters() if p.grad is not None}


def test_chunk_slices_cover_the_batch_in_order():
    assert chunk_slices(5, 2) == [slice(0, 2), slice(2, 4), slice(4, 5)]
    assert chunk_slices(3, 8) == [slice(0, 3)]
    with pytest.raises(ValueError, match=">= 1"):
        chunk_slices(3, 0)


@pytest.mark.parametrize(
    ("num_sent", "settings", "buckets"),
    [
        (2, {"pooler_type": "cls"}, 0),  # unsupervised-style pairs; CPU default: 4 length buckets, [CLS] shortcut
        (2, {"pooler_type": "avg"}, 1),  # one padded pass, mean pooling
        (3, {"pooler_type": "cls", "hard_negative_weight": 1.5}, 0),  # supervised with hard negatives
        (3, {"pooler_type": "cls_before_pooler", "hard_negative_weight": -0.7}, 1),
        (3, {"pooler_type": "avg", "similarity": "dot", "temp": 5.0}, 0),  # paper Table D.1's dot product
    ],
)
def test_cached_step_equals_full_batch_step_in_float64(tiny_bert_dir, num_sent, settings, buckets):
    runtime = RuntimeOptions(length_buckets=buckets)
    batch = _examples(num_sent)
    plain = _cl(tiny_bert_dir, runtime=runtime, **settings)
    out = plain(**batch)
    out.loss.backward()
    cached = _cl(tiny_bert_dir, runtime=runtime, **settings)
    got = cached_contrastive_loss(cached, batch, chunk_size=2)  # chunks of 2, 2 and 1 examples
    assert got.loss.dtype == torch.float64 and got.loss.requires_grad
    assert_close_scaled(got.loss, out.loss.detach(), what="loss")
    assert got.logits.shape == out.logits.shape == (5, 5 * (num_sent - 1))
    assert_close_scaled(got.logits, out.logits.detach(), what="logits")
    assert all(p.grad is None for p in cached.parameters()), "no parameter gradient before backward"
    got.loss.backward()
    assert_grads_close(_all_grads(cached), _all_grads(plain))


def test_cached_step_with_same_dropout_mask_equals_full_batch_step(tiny_bert_dir):
    """"Fixed 0.1" (--same_dropout_mask, one encoding per sentence as both views) under gradient caching."""
    runtime = RuntimeOptions(length_buckets=1, same_dropout_mask=True)
    single = _examples(1, n=5)
    batch = {k: torch.cat([v, v], dim=1) for k, v in single.items()}  # (5, 2, L): each sentence twice
    plain = _cl(tiny_bert_dir, runtime=runtime, pooler_type="cls")
    out = plain(**batch)
    out.loss.backward()
    cached = _cl(tiny_bert_dir, runtime=runtime, pooler_type="cls")
    got = cached_contrastive_loss(cached, batch, chunk_size=2)
    assert_close_scaled(got.loss, out.loss.detach(), what="loss")
    got.loss.backward()
    assert_grads_close(_all_grads(cached), _all_grads(plain))


def test_factor_on_the_returned_loss_scales_the_gradients(tiny_bert_dir):
    """What the Trainer does to the loss (1/GA, fp16 loss scale) reaches the re-encoded chunks."""
    batch = _examples(3)
    plain = _cl(tiny_bert_dir, hard_negative_weight=1.0)
    plain(**batch).loss.backward()
    cached = _cl(tiny_bert_dir, hard_negative_weight=1.0)
    (cached_contrastive_loss(cached, batch, chunk_size=3).loss * 0.25).backward()
    assert_grads_close(_all_grads(cached), {n: 0.25 * g for n, g in _all_grads(plain).items()})
    # Gradient accumulation: a second micro-batch adds to .grad, as a plain step would.
    plain(**batch).loss.backward()
    cached_contrastive_loss(cached, batch, chunk_size=1).loss.backward()
    assert_grads_close(_all_grads(cached), {n: 1.25 / 2 * g for n, g in _all_grads(plain).items()})


@pytest.mark.parametrize("buckets", [0, 1])
def test_with_dropout_each_chunk_replays_bitwise_the_same_embeddings(tiny_bert_dir, buckets):
    model = _cl(tiny_bert_dir, dropout=0.1, runtime=RuntimeOptions(length_buckets=buckets), pooler_type="cls")
    model.float()
    seen: list[tuple[bool, torch.Tensor]] = []
    model.register_forward_hook(lambda _m, _a, out: seen.append((torch.is_grad_enabled(), out.detach().clone())))
    batch = _examples(2, n=6)
    torch.manual_seed(123)
    out = cached_contrastive_loss(model, batch, chunk_size=2)
    after_first = torch.get_rng_state()
    out.loss.backward()
    assert torch.equal(torch.get_rng_state(), after_first), "the replay must leave the random state as it was"
    # chunks 0 and 1 without autograd, chunk 2 once with it (its graph is kept), then chunks 0 and 1 again
    assert [grad for grad, _ in seen] == [False, False, True, True, True]
    for i in range(2):
        assert torch.equal(seen[i][1], seen[3 + i][1]), f"chunk {i}: second pass differs from the first"
    # Dropout is really on: the two views of a sentence differ, and chunk 0 differs from an eval pass.
    first = seen[0][1]
    assert not torch.allclose(first[:, 0], first[:, 1], atol=1e-4)
    with torch.no_grad():
        model.eval()
        assert not torch.allclose(model(**{k: v[:2] for k, v in batch.items()}, embeddings_only=True), first)


def test_mlm_inputs_are_refused_in_one_line(tiny_bert_dir):
    model = _cl(tiny_bert_dir)
    batch = _examples(2)
    with pytest.raises(ValueError, match="does not support --do_mlm"):
        cached_contrastive_loss(model, {**batch, "mlm_input_ids": batch["input_ids"]}, chunk_size=2)
    assert "\n" not in MLM_REFUSAL


def test_train_refuses_gradient_cache_with_mlm(tiny_bert_dir, tmp_path, capsys):
    import train

    with pytest.raises(train.ArgumentsError, match="does not support --do_mlm"):
        train.main([
            "--model_name_or_path", str(tiny_bert_dir), "--train_file", str(tmp_path / "t.txt"),
            "--output_dir", str(tmp_path / "out"), "--do_mlm", "--gradient_cache_batch_size", "4",
        ])  # fmt: skip

# The 2-process DDP check (gathered negatives, one all-reduce per step) runs in tests/test_ddp.py's workers.


@pytest.fixture(scope="module")
def no_dropout_bert(tmp_path_factory):
    from tests.conftest import make_tiny_model_dir

    path = make_tiny_model_dir(tmp_path_factory.mktemp("tiny_bert_p0"), "bert")
    config = AutoConfig.from_pretrained(path)
    config.hidden_dropout_prob = config.attention_probs_dropout_prob = 0.0
    config.save_pretrained(path)
    return path


def test_trainer_step_with_gradient_accumulation_equals_plain_training(no_dropout_bert, tmp_path, monkeypatch):
    """train.py end to end (CLTrainer.compute_loss -> the Trainer's backward, 1/GA scaling): 2 optimizer steps
    of 2 accumulated batches of 6 with chunks of 4 give the weights of the plain run (plain SGD, so a weight
    difference is the learning rate times a gradient difference; float32, so compared at float32 gradient noise)."""
    from safetensors.torch import load_file

    import train

    data = tmp_path / "train.csv"
    rows = [f'"{SENTS[i % 15]}","{SENTS[(i * 7 + 3) % 15]}","{SENTS[(i * 4 + 1) % 15]}"' for i in range(24)]
    data.write_text("sent0,sent1,hard_neg\n" + "\n".join(rows) + "\n", encoding="utf-8")
    import simcse.grad_cache

    calls = [0]
    real_set_state = simcse.grad_cache._set_rng_state

    def counting(*args):
        calls[0] += 1
        return real_set_state(*args)

    monkeypatch.setattr(simcse.grad_cache, "_set_rng_state", counting)  # once per re-encoded chunk
    weights = {}
    for name, extra in (("plain", []), ("cached", ["--gradient_cache_batch_size", "4"])):
        out = tmp_path / name
        train.main([
            "--model_name_or_path", str(no_dropout_bert), "--train_file", str(data), "--output_dir", str(out),
            "--per_device_train_batch_size", "6", "--gradient_accumulation_steps", "2", "--max_steps", "2",
            "--learning_rate", "0.5", "--optim", "sgd", "--lr_scheduler_type", "constant", "--pooler_type", "cls",
            "--hard_negative_weight", "1.0", "--use_cpu", "--seed", "3", "--report_to", "none",
            "--disable_tqdm", "true", "--do_train", "--save_strategy", "no", "--plot_training", "false", *extra,
        ])  # fmt: skip
        weights[name] = load_file(out / "model.safetensors")
    start = load_file(no_dropout_bert / "model.safetensors")
    moved = max(float((weights["plain"][k] - start[k]).abs().max()) for k in start if k in weights["plain"])
    assert moved > 1e-3, f"the plain run must have trained (largest weight change {moved:.2e})"
    # The weight changes are lr x summed gradients: compared to the largest change, as gradients are compared to
    # the largest gradient (tests/numerics.py; float32 gradients reordered differ by up to ~1e-3 of that scale).
    for key, want in weights["plain"].items():
        before = start[key] if key in start else torch.zeros_like(want)  # the MLP starts fresh (same seed)
        assert_close_scaled(weights["cached"][key] - before, want - before, rtol=1e-2, scale=moved, what=key)
    # 2 steps x 2 batches, each of 2 chunks (4 + 2 examples): the first re-encoded, the second's graph kept
    assert calls == [2 * 2 * 1], "the cached run goes through gradient caching"


def test_negative_chunk_size_is_a_one_line_argument_error():
    import train

    with pytest.raises(train.ArgumentsError, match="--gradient_cache_batch_size must be >= 0, got -2"):
        train.parse_args(["--output_dir", "x", "--train_file", "t.txt", "--gradient_cache_batch_size", "-2"])
