"""Unsupervised SimCSE training throughput on the CPU: ours (BertForCL) against sentence-transformers (MNRL).

    python -m benchmarks.bench_train_cpu                       # all-MiniLM-L6-v2, batch 64, len 32, wiki sentences
    python -m benchmarks.bench_train_cpu --steps 2 --repeats 5 --threads 2

Both sides train the same encoder (the same checkpoint) on the same real sentences in the same order, with
the same batch, max_seq_len 32, fused AdamW (lr 3e-5, weight decay 0: transformers' Trainer default, which both
train.py and sentence-transformers' trainer use), dropout on and the same torch threads:

* ``ours``: ``load_cl_model`` -> ``BertForCL`` (pooler ``cls`` = [CLS] + MLP, as in the paper), data tokenised
  once up front (as ``train.py`` does with ``load_training_dataset``) and batched by ``SimCSECollator`` into
  (B, 2, L), contrastive loss (temperature 0.05), with train.py's defaults: on the CPU the 2B rows are encoded
  as 4 length-sorted buckets, each padded to its own length (``--length_buckets``, automatic), and the last
  layer runs at [CLS] only, the one position the loss reads (``--cls_only_last_layer``).
* ``ours_plain``: the same with both off (``--length_buckets 1 --cls_only_last_layer false``): ONE padded
  encoder pass over the 2B rows, all positions of every layer (the original code's computation), to show
  what the two are worth.
* ``peer``: ``SentenceTransformer(path)`` (max_seq_length = 32, its own mean pooling + normalise) with
  ``MultipleNegativesRankingLoss(scale=20.0)`` (= temperature 0.05) on (anchor, positive = same sentence) pairs;
  each column tokenised per step by ``model.tokenize`` (what its data collator does) and embedded by its own
  encoder pass (two passes of B rows: MNRL keeps the anchor column separate).

The time of a step covers batching/tokenising, forward, backward and the optimizer step. Blocks of ``--steps``
steps alternate between the two sides (ours, peer, peer, ours, ...) and the median block is reported, so a
noisy neighbour slows both. Sentences/s counts examples: each example is one sentence, seen twice.
"""

from __future__ import annotations

import argparse
import warnings
from typing import Any

import torch

from benchmarks.common import (
    add_model_data_args,
    interleaved_throughput,
    machine_info,
    median,
    model_label,
    print_json_line,
    print_table,
    read_sentences,
    resolve_model_arg,
    set_threads,
    trainer_optimizer,
)
from benchmarks.harness import Runner, make_model, optimizer_step, unsup_dataset
from simcse.length_buckets import DEFAULT_LENGTH_BUCKETS


def build_ours(
    model_path: str,
    texts: list[str],
    batch_size: int,
    max_len: int,
    lr: float,
    two_pass: bool = False,
    length_buckets: int = DEFAULT_LENGTH_BUCKETS,
    plain: bool = False,
) -> Runner:
    """Our training step; ``plain`` turns off both speed-ups (the original computation); ``two_pass``
    prototypes the peer's layout (one full encoder pass per view) to explain the gap."""
    from transformers import AutoTokenizer

    from simcse.data import SimCSECollator
    from simcse.losses import contrastive_loss

    tokenizer = AutoTokenizer.from_pretrained(model_path)
    # Tokenised once, before training, exactly as train.py's load_training_dataset does for a .txt file.
    data = unsup_dataset(tokenizer, texts, max_len)
    rows = data[:]  # columnar -> per-example lists, outside the timed region (a DataLoader prefetches them)
    features = [{k: rows[k][i] for k in rows} for i in range(len(data))]
    batches = [features[i : i + batch_size] for i in range(0, len(features) - batch_size + 1, batch_size)]
    model = make_model(model_path, length_buckets=1 if plain else length_buckets, cls_only_last_layer=not plain)
    optimizer = trainer_optimizer(model.parameters(), lr)

    def loss_two_pass(batch: dict[str, torch.Tensor]) -> torch.Tensor:
        views = [
            model._encode(*(batch[k][:, j] for k in ("input_ids", "attention_mask", "token_type_ids")))[0]
            for j in range(2)
        ]  # (B, H) each: the same maths as BertForCL, in two passes of B rows
        return contrastive_loss(views[0], views[1], temp=model.config.temp)[0]

    def step(batch: dict[str, torch.Tensor]) -> torch.Tensor:
        return optimizer_step(optimizer, lambda: loss_two_pass(batch) if two_pass else model(**batch).loss)

    name = "ours_2pass" if two_pass else "ours_plain" if plain else "ours"
    if length_buckets != DEFAULT_LENGTH_BUCKETS:
        name = f"ours_buckets{length_buckets}"
    return Runner(name, batches, step, prepare=SimCSECollator(tokenizer))


def build_peer(model_path: str, texts: list[str], batch_size: int, max_len: int, lr: float) -> Runner:
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", DeprecationWarning)
        from sentence_transformers import SentenceTransformer, losses

    model = SentenceTransformer(model_path, device="cpu")
    model.max_seq_length = max_len
    model.train()
    loss_fn = losses.MultipleNegativesRankingLoss(model, scale=20.0)
    optimizer = trainer_optimizer(model.parameters(), lr)
    batches = [texts[i : i + batch_size] for i in range(0, len(texts) - batch_size + 1, batch_size)]

    def prepare(sentences: list[str]) -> list[dict[str, torch.Tensor]]:
        return [model.tokenize(sentences), model.tokenize(sentences)]  # anchor column, positive column

    def step(features: list[dict[str, torch.Tensor]]) -> torch.Tensor:
        return optimizer_step(optimizer, lambda: loss_fn(features, None))

    return Runner("peer", batches, step, prepare=prepare)


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    add_model_data_args(p)
    p.add_argument("--batch_size", type=int, default=64)
    p.add_argument("--max_seq_len", type=int, default=32)
    p.add_argument("--steps", type=int, default=2, help="training steps per timed block")
    p.add_argument("--repeats", type=int, default=3, help="timed blocks per side (interleaved); median reported")
    p.add_argument("--warmup", type=int, default=1, help="untimed blocks per side first")
    p.add_argument("--threads", type=int, default=None, help="torch intra-op threads (default: torch's choice)")
    p.add_argument("--lr", type=float, default=3e-5)
    p.add_argument(
        "--length_buckets",
        type=int,
        default=None,
        help="also time ours with train.py --length_buckets N (length-sorted buckets, less padding)",
    )
    p.add_argument("--seed", type=int, default=0)
    p.add_argument(
        "--explain",
        action="store_true",
        help="also time ours_2pass: our model run the peer's way (one encoder pass per view), to split the gap",
    )
    args = p.parse_args(argv)
    resolve_model_arg(p, args)
    return args


def build_sides(args: argparse.Namespace, texts: list[str]) -> dict[str, Runner]:
    """ours, peer, ours_plain (in that order: the order the models are built in draws the MLP inits), and the
    optional ``--length_buckets`` / ``--explain`` sides."""
    common = (args.model, texts, args.batch_size, args.max_seq_len, args.lr)
    sides = {
        "ours": build_ours(*common),
        "peer": build_peer(*common),
        "ours_plain": build_ours(*common, plain=True),
    }
    if args.length_buckets not in (None, DEFAULT_LENGTH_BUCKETS, 1):
        sides[f"ours_buckets{args.length_buckets}"] = build_ours(*common, length_buckets=args.length_buckets)
    if args.explain:
        sides["ours_2pass"] = build_ours(*common, two_pass=True)
    return sides


def summarise(
    args: argparse.Namespace,
    sides: dict[str, Runner],
    rates: dict[str, list[float]],
    cpu_rates: dict[str, list[float]],
    threads: int,
) -> tuple[dict[str, Any], list[list[Any]]]:
    """The JSON record (medians, per-block rates, ratios against the peer) and the table rows."""
    timed = args.steps * args.repeats  # the last steps of each side are the timed ones (warm-up came first)
    result: dict[str, Any] = {
        "bench": "train_cpu",
        "model": model_label(args.model),
        "batch_size": args.batch_size,
        "max_seq_len": args.max_seq_len,
        "steps_per_block": args.steps,
        "repeats": args.repeats,
        "machine": {**machine_info(), "torch_threads": threads},
    }
    rows = []
    for name, side in sides.items():
        sps = median(rates[name])
        prep_ms = 1000 * median(side.prep_s[-timed:])
        model_ms = 1000 * median(side.model_s[-timed:])
        result[f"{name}_sentences_per_s"] = sps
        result[f"{name}_sentences_per_s_all"] = [round(r, 2) for r in rates[name]]
        result[f"{name}_sentences_per_cpu_s"] = median(cpu_rates[name])
        result[f"{name}_sentences_per_cpu_s_all"] = [round(r, 3) for r in cpu_rates[name]]
        result[f"{name}_prep_ms"] = prep_ms
        result[f"{name}_model_ms"] = model_ms
        result[f"{name}_last_loss"] = side.losses[-1]
        cps = result[f"{name}_sentences_per_cpu_s"]
        rows.append([name, sps, cps, 1000 * args.batch_size / sps, prep_ms, model_ms, side.losses[-1]])

    pairs = [("ours", "peer"), ("ours_plain", "peer")]
    if f"ours_buckets{args.length_buckets}" in sides:
        pairs.append((f"ours_buckets{args.length_buckets}", "peer"))
    if args.explain:
        pairs += [("ours_plain", "ours_2pass"), ("ours_2pass", "peer")]
    for a, b in pairs:
        wall = result[f"{a}_sentences_per_s"] / result[f"{b}_sentences_per_s"]
        cpu = result[f"{a}_sentences_per_cpu_s"] / result[f"{b}_sentences_per_cpu_s"]
        key = "ratio_ours_over_peer" if (a, b) == ("ours", "peer") else f"ratio_{a}_over_{b}"
        result[key], result[f"{key}_cpu_time"] = wall, cpu
        rows.append([f"{a}/{b}", wall, cpu, "", "", "", ""])
    return result, rows


def main(argv: list[str] | None = None) -> dict[str, Any]:
    args = parse_args(argv)
    threads = set_threads(args.threads)
    torch.manual_seed(args.seed)
    needed = args.batch_size * args.steps * (args.repeats + args.warmup)
    texts = read_sentences(args.data, limit=needed)
    if len(texts) < args.batch_size:
        raise SystemExit(f"{args.data}: {len(texts)} sentences, fewer than one batch of {args.batch_size}")

    sides = build_sides(args, texts)
    cpu_rates: dict[str, list[float]] = {}
    rates = interleaved_throughput(
        {name: (lambda s=side: s.block(args.steps)) for name, side in sides.items()},
        repeats=args.repeats,
        warmup=args.warmup,
        cpu_rates=cpu_rates,
    )
    result, rows = summarise(args, sides, rates, cpu_rates, threads)
    print_table(
        ["side", "sentences/s", "sent/CPU-s", "step ms", "prep ms", "fwd+bwd+opt ms", "last loss"],
        rows,
        title=f"Unsup SimCSE training on CPU ({result['machine']['cpu']}, {threads} threads), "
        f"{result['model']}, batch {args.batch_size}, max_seq_len {args.max_seq_len}, median of {args.repeats} blocks",
    )
    print_json_line(result)
    return result


if __name__ == "__main__":
    main()
