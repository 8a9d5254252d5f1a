"""Two CPU processes (gloo): gathered negatives give the full-batch loss on every rank, and DDP's
averaged gradient equals 1/W times the single-process full-batch gradient
(docs/FAITHFULNESS.md, "Distributed gathering").

Both sides run in float64: the equality is exact maths, and float32 reordering (other shard shapes,
an all-reduce sum) moves these gradients by up to ~1e-3 of their scale (see tests/numerics.py)."""

from __future__ import annotations

import os
import socket

import pytest
import torch
import torch.distributed as dist
import torch.multiprocessing as mp
from transformers import AutoConfig

from simcse.distributed import gather_with_local_grad
from simcse.models import load_cl_model
from tests.conftest import make_tokenizer
from tests.numerics import assert_close_scaled, assert_grads_close

WORLD = 2
SENTS = [
    "a man is playing the guitar", "a woman is riding a horse", "the dog runs in the park",
    "children eat food", "a cat sits on the table", "the old house is red",
    "a boy reads a book", "the team plays a game", "a girl is cooking in the kitchen",
    "the river is blue", "people walk in the street", "a small car",
]  # fmt: skip


def _model(path: str):
    config = AutoConfig.from_pretrained(path, hidden_dropout_prob=0.0, attention_probs_dropout_prob=0.0)
    torch.manual_seed(0)
    model = load_cl_model(path, config=config, simcse_settings={"pooler_type": "cls"})
    return model.double().train()


def _inputs(num_sent: int) -> dict[str, torch.Tensor]:
    n = 4 * num_sent  # 4 examples
    enc = make_tokenizer("bert")(SENTS[:n], padding=True, return_tensors="pt")
    return {k: v.view(4, num_sent, -1) for k, v in enc.items()}


def _grads(model) -> dict[str, torch.Tensor]:
    names = [
        "bert.pooler.dense.weight",
        "bert.embeddings.word_embeddings.weight",
        "bert.encoder.layer.1.output.dense.weight",
    ]
    params = dict(model.named_parameters())
    return {n: params[n].grad.detach().clone() for n in names}


def rank_results(rank: int, path: str) -> dict:
    """What rank ``rank`` of a 2-process group computes on its half of the 4 examples (the group must exist)."""
    results = {}
    for num_sent in (2, 3):
        model = torch.nn.parallel.DistributedDataParallel(_model(path))
        batch = {k: v[rank * 2 : rank * 2 + 2] for k, v in _inputs(num_sent).items()}  # local shard: 2 of 4
        out = model(**batch)
        out.loss.backward()
        results[num_sent] = {
            "loss": out.loss.detach(),
            "logits": out.logits.detach(),
            "grads": _grads(model.module),
        }
    # Gathering keeps the autograd graph only for the local slot.
    local = torch.full((1, 3), float(rank + 1), requires_grad=True)
    gathered = gather_with_local_grad(local)
    (gathered * torch.arange(1.0, 7.0).view(2, 3)).sum().backward()
    results["gather"] = {"values": gathered.detach(), "grad": local.grad}
    return results


def _worker(rank: int, path: str, port: int, out_dir: str) -> None:
    os.environ.update(MASTER_ADDR="127.0.0.1", MASTER_PORT=str(port))
    dist.init_process_group("gloo", rank=rank, world_size=WORLD)
    try:
        torch.save(rank_results(rank, path), os.path.join(out_dir, f"rank{rank}.pt"))
    finally:
        dist.destroy_process_group()


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture(scope="module")
def ddp_results(tiny_bert_dir, tmp_path_factory):
    out_dir = tmp_path_factory.mktemp("ddp")
    mp.spawn(_worker, args=(str(tiny_bert_dir), _free_port(), str(out_dir)), nprocs=WORLD, join=True)
    return [torch.load(out_dir / f"rank{r}.pt") for r in range(WORLD)]


def assert_matches_single_process_full_batch(results: list[dict], path: str, num_sent: int) -> None:
    """Each rank's loss and logits are the full batch's; its gradients 1/W of the full-batch gradient."""
    model = _model(path)
    out = model(**_inputs(num_sent))
    out.loss.backward()
    full_grads = _grads(model)
    for rank, rank_result in enumerate(results):
        got = rank_result[num_sent]
        assert got["loss"].dtype == torch.float64
        assert_close_scaled(got["loss"], out.loss.detach(), what=f"rank {rank} loss")
        assert got["logits"].shape == out.logits.shape == (4, 4 * (num_sent - 1))
        assert_close_scaled(got["logits"], out.logits.detach(), what=f"rank {rank} logits")
        # DDP averages the ranks' local-shard gradients: 1/W of the full-batch gradient.
        assert_grads_close(got["grads"], {n: g / WORLD for n, g in full_grads.items()}, what=f"rank {rank} grad")


@pytest.mark.parametrize("num_sent", [2, 3])
def test_gathered_loss_and_gradients_equal_single_process_full_batch(ddp_results, tiny_bert_dir, num_sent):
    assert_matches_single_process_full_batch(ddp_results, str(tiny_bert_dir), num_sent)


def test_gather_orders_by_rank_and_keeps_only_local_gradient(ddp_results):
    for rank, result in enumerate(ddp_results):
        assert torch.equal(result["gather"]["values"], torch.tensor([[1.0] * 3, [2.0] * 3]))
        expected = torch.arange(1.0, 7.0).view(2, 3)[rank : rank + 1]
        assert torch.equal(result["gather"]["grad"], expected)


def test_gather_is_a_no_op_without_a_process_group():
    t = torch.randn(3, 2)
    assert gather_with_local_grad(t) is t
