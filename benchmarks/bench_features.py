"""Before/after figures for each training speed feature on the CPU (all-MiniLM-L6-v2, batch 64, len 32).

    python -m benchmarks.bench_features                     # ~4-6 min on 2 cores, compile included
    python -m benchmarks.bench_features --no-compile --repeats 5

One baseline (SDPA attention, fp32, one encoder pass padded to the batch's longest with every position of
every layer computed, DataLoader with 0 workers, eager, no MLM) and one variant per feature, each changing
exactly one thing. Why one shared baseline: the blocks of ALL variants and the baseline are interleaved
(rotating order) on the same real wiki sentences, so every ratio is against a baseline measured in the same
minutes; the median of ``--repeats`` blocks is kept.

Variants: ``eager_attn`` (``attn_implementation="eager"``), ``bf16_autocast`` (``torch.autocast("cpu", bf16)``;
fp32 master weights), ``pad_multiple_8`` (``SimCSECollator(pad_to_multiple_of=8)``), ``workers_2``
(``DataLoader(num_workers=2)``), ``compile`` (``torch.compile(model)``, compile time reported apart),
``length_buckets_4`` (``--length_buckets 4``, train.py's CPU default: 4 length-sorted buckets, each padded to its
own length), ``cls_only_last_layer`` (train.py's default: the last layer's query, output and feed-forward at
[CLS] only), ``mlm`` (``do_mlm=True``, vocabulary scores for the masked positions only, as we train) and
``mlm_full_vocab`` (MLM scoring every position, as the original code does; ``mlm`` / ``mlm_full_vocab`` is what
scoring the masked positions only is worth). A forward hook counts the encoder calls and the token positions
they compute per step, showing that the second pass (over the masked ids) exists only with MLM. Encoding
(``sent_emb=True``, no grad) is timed for the attention and bf16 features, where inference changes too.
"""

from __future__ import annotations

import argparse
import contextlib
import time
import traceback
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import torch

from benchmarks import common
from benchmarks.harness import Runner, make_model, optimizer_step, unsup_dataset


@dataclass
class Variant:
    """A training configuration that differs from the baseline in one feature."""

    name: str
    feature: str
    attn: str = "sdpa"
    bf16: bool = False
    pad_multiple: int | None = None
    workers: int = 0
    compile: bool = False
    mlm: bool = False
    mlm_full_vocab: bool = False
    length_buckets: int = 1
    cls_only: bool = False


VARIANTS = (
    Variant("baseline", "-"),
    Variant("eager_attn", "attention: eager (after) vs SDPA (before)", attn="eager"),
    Variant("bf16_autocast", "bf16 autocast vs fp32", bf16=True),
    Variant("pad_multiple_8", "pad to a multiple of 8 vs longest", pad_multiple=8),
    Variant("workers_2", "DataLoader workers 2 vs 0", workers=2),
    Variant("compile", "torch.compile vs eager", compile=True),
    Variant("length_buckets_4", "4 length buckets (CPU default) vs 1 padded pass", length_buckets=4),
    Variant("cls_only_last_layer", "last layer at [CLS] only (default) vs all positions", cls_only=True),
    Variant("mlm", "MLM on vs off (masked positions scored)", mlm=True),
    Variant("mlm_full_vocab", "MLM on, every position scored (original) vs off", mlm=True, mlm_full_vocab=True),
)


class VariantRunner(Runner):
    """Model, optimizer and a never-ending DataLoader iterator for one variant; counts what a step computes."""

    def __init__(
        self,
        variant: Variant,
        model: torch.nn.Module,
        forward: Any,
        optimizer: torch.optim.Optimizer,
        loader: torch.utils.data.DataLoader,
        batch_size: int,
    ) -> None:
        # The loss is read once per block (as the GPU bench does); the examples of a step are the batch size.
        super().__init__(variant.name, self._next_from_loader, examples=lambda _: batch_size, sync_every_step=False)
        self.variant, self.model, self.forward = variant, model, forward
        self.optimizer, self.loader = optimizer, loader
        self.batch_size = batch_size
        self.passes = self.positions = self.steps = 0
        self.warmup_s: float | None = None
        self.error: str | None = None
        self.tokens: list[int] = []
        self._it: Iterator | None = None

    def _next_from_loader(self) -> dict[str, torch.Tensor]:
        for _ in range(2):
            if self._it is None:
                self._it = iter(self.loader)
            try:
                return next(self._it)
            except StopIteration:
                self._it = None
        raise RuntimeError("empty DataLoader")

    def _autocast(self) -> contextlib.AbstractContextManager:
        if self.variant.bf16:
            return torch.autocast("cpu", dtype=torch.bfloat16)
        return contextlib.nullcontext()

    def step(self, batch: dict[str, torch.Tensor]) -> torch.Tensor:
        self.tokens.append(int(batch["input_ids"].numel()))
        loss = optimizer_step(self.optimizer, lambda: self.forward(**batch).loss, self._autocast())
        self.steps += 1
        return loss

    @torch.no_grad()
    def encode(self, batches: list[dict[str, torch.Tensor]]) -> int:
        """Sentence embeddings (eval mode, as the evaluation and the tool do) for pre-tokenised batches."""
        self.model.eval()
        try:
            with self._autocast():
                for batch in batches:
                    self.model(**batch, sent_emb=True)
        finally:
            self.model.train()
        return sum(int(b["input_ids"].shape[0]) for b in batches)


def build_runner(variant: Variant, args: argparse.Namespace, dataset: Any, tokenizer: Any) -> VariantRunner:
    from simcse.data import SimCSECollator

    torch.manual_seed(args.seed)  # the same fresh MLP init for every variant
    model = make_model(
        args.model,
        simcse_settings={"do_mlm": variant.mlm},
        attn_implementation=variant.attn,
        length_buckets=variant.length_buckets,
        cls_only_last_layer=variant.cls_only,
    )
    if variant.mlm_full_vocab:
        model._mlm_loss = _full_vocab_mlm_loss(model)
    collator = SimCSECollator(tokenizer, do_mlm=variant.mlm, pad_to_multiple_of=variant.pad_multiple)
    loader = torch.utils.data.DataLoader(
        dataset,
        batch_size=args.batch_size,
        shuffle=False,  # every variant sees the same batches in the same order
        drop_last=True,
        collate_fn=collator,
        num_workers=variant.workers,
        persistent_workers=variant.workers > 0,
    )
    runner = VariantRunner(
        variant,
        model,
        torch.compile(model) if variant.compile else model,
        common.trainer_optimizer(model.parameters(), 3e-5),
        loader,
        args.batch_size,
    )

    def count_pass(_module: Any, _args: Any, out: torch.Tensor) -> None:
        if model.training:  # training steps only, not the encode blocks
            runner.passes += 1
            runner.positions += out.shape[0] * out.shape[1]  # (n, L, H): token positions computed

    model.encoder.embeddings.register_forward_hook(count_pass)  # every encoder call (both passes) embeds first
    return runner


def _full_vocab_mlm_loss(model: torch.nn.Module) -> Any:
    """The original code's MLM loss: vocabulary scores for every position, the ignored ones included."""

    def loss(hidden: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
        scores = model.mlm_head(hidden)  # (n, L, V)
        return torch.nn.functional.cross_entropy(scores.float().view(-1, scores.size(-1)), labels.reshape(-1))

    return loss


def warm_up(trainer: VariantRunner, steps: int) -> None:
    """Untimed steps (compile happens here); a failure is recorded and the variant is left out, not fatal."""
    start = time.perf_counter()
    try:
        trainer.block(steps)
    except Exception as err:  # noqa: BLE001 - e.g. no C++ compiler for inductor: report it, keep the others
        trainer.error = f"{type(err).__name__}: {str(err).splitlines()[0][:200] if str(err) else ''}"
        traceback.print_exc(limit=2)
    trainer.warmup_s = time.perf_counter() - start


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    common.add_model_data_args(p)
    p.add_argument("--batch_size", type=int, default=64)
    p.add_argument("--max_seq_len", type=int, default=32)
    p.add_argument("--steps", type=int, default=1, help="training steps per timed block")
    p.add_argument("--repeats", type=int, default=3)
    p.add_argument("--encode_batches", type=int, default=4, help="batches of batch_size sentences per encode block")
    p.add_argument("--threads", type=int, default=None)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--no-compile", "--no_compile", dest="compile", action="store_false")
    p.add_argument("--only", nargs="+", default=None, help="run only these variants (baseline always runs)")
    args = p.parse_args(argv)
    common.resolve_model_arg(p, args)
    return args


def encode_batches(tokenizer: Any, texts: list[str], args: argparse.Namespace) -> list[dict[str, torch.Tensor]]:
    """The pre-tokenised batches every encode block embeds (the same ones for each variant)."""
    enc_texts = texts[: args.batch_size * args.encode_batches]
    return [
        dict(
            tokenizer(
                enc_texts[i : i + args.batch_size],
                padding=True,
                truncation=True,
                max_length=args.max_seq_len,
                return_tensors="pt",
            )
        )
        for i in range(0, len(enc_texts), args.batch_size)
    ]


def variant_record(
    runner: VariantRunner, train_rates: dict[str, list[float]], encode_rates: dict[str, list[float]],
    base_train: float, base_enc: float,
) -> tuple[dict[str, Any], list[Any]]:
    """One variant's JSON record and table row: rates, ratios to the baseline, encoder calls and positions."""
    name = runner.name
    rec: dict[str, Any] = {
        "feature": runner.variant.feature,
        "encoder_passes_per_step": runner.passes / max(runner.steps, 1),
        "mean_padded_tokens_per_step": sum(runner.tokens) / max(len(runner.tokens), 1),
        "encoder_positions_per_step": runner.positions / max(runner.steps, 1),
    }
    if runner.variant.compile:
        rec["warmup_incl_compile_s"] = runner.warmup_s
    if runner.error:
        rec["error"] = runner.error
        return rec, [name, rec["feature"], "FAILED", "", "", "", "", runner.error[:50]]
    sps = common.median(train_rates[name])
    rec.update(train_sentences_per_s=sps, train_ratio=sps / base_train)
    rec["train_all"] = [round(x, 2) for x in train_rates[name]]
    enc = ""
    if name in encode_rates:
        rec["encode_sentences_per_s"] = common.median(encode_rates[name])
        rec["encode_ratio"] = rec["encode_sentences_per_s"] / base_enc
        enc = f"{rec['encode_sentences_per_s']:.0f} ({rec['encode_ratio']:.2f}x)"
    note = f"warm-up incl. compile {runner.warmup_s:.0f}s" if runner.variant.compile else ""
    row = [name, rec["feature"], sps, f"{rec['train_ratio']:.2f}x", enc, f"{rec['encoder_passes_per_step']:.0f}",
           f"{rec['encoder_positions_per_step']:.0f}", note]  # fmt: skip
    return rec, row


def main(argv: list[str] | None = None) -> dict[str, Any]:
    from transformers import AutoTokenizer

    args = parse_args(argv)
    threads = common.set_threads(args.threads)
    variants = [
        v
        for v in VARIANTS
        if v.name == "baseline" or ((args.only is None or v.name in args.only) and (args.compile or not v.compile))
    ]
    tokenizer = AutoTokenizer.from_pretrained(args.model)
    n = args.batch_size * args.steps * (args.repeats + 2)  # warm-up + repeats, with room for a DataLoader restart
    texts = common.read_sentences(args.data, limit=n)
    dataset = unsup_dataset(tokenizer, texts, args.max_seq_len)

    runners = {v.name: build_runner(v, args, dataset, tokenizer) for v in variants}
    for runner in runners.values():
        warm_up(runner, args.steps)
    ok = {name: r for name, r in runners.items() if r.error is None}
    train_rates = common.interleaved_throughput(
        {name: (lambda r=r: r.block(args.steps)) for name, r in ok.items()}, repeats=args.repeats, warmup=0
    )
    # Encoding: only attention and precision change inference; same pre-tokenised batches for each.
    enc_batches = encode_batches(tokenizer, texts, args)
    enc_names = [name for name in ("baseline", "eager_attn", "bf16_autocast") if name in ok]
    encode_rates = common.interleaved_throughput(
        {name: (lambda r=ok[name]: r.encode(enc_batches)) for name in enc_names}, repeats=args.repeats, warmup=1
    )

    base_train, base_enc = common.median(train_rates["baseline"]), common.median(encode_rates["baseline"])
    result: dict[str, Any] = {
        "bench": "features_cpu",
        "model": common.model_label(args.model),
        "batch_size": args.batch_size,
        "max_seq_len": args.max_seq_len,
        "repeats": args.repeats,
        "machine": {**common.machine_info(), "torch_threads": threads},
        "baseline_train_sentences_per_s": base_train,
        "baseline_encode_sentences_per_s": base_enc,
        "features": {},
    }
    rows = []
    for name, runner in runners.items():
        result["features"][name], row = variant_record(runner, train_rates, encode_rates, base_train, base_enc)
        rows.append(row)
    if "mlm" in ok and "mlm_full_vocab" in ok:
        mlm, full = common.median(train_rates["mlm"]), common.median(train_rates["mlm_full_vocab"])
        result["ratio_mlm_masked_over_full_vocab"] = mlm / full
        rows.append(["mlm/mlm_full_vocab", "masked positions vs every position scored", "",
                     f"{result['ratio_mlm_masked_over_full_vocab']:.2f}x", "", "", "", ""])  # fmt: skip
    common.print_table(
        ["variant", "feature (after vs before)", "train sent/s", "ratio", "encode sent/s (ratio)",
         "encoder calls/step", "positions/step", "note"],  # fmt: skip
        rows,
        title=f"Speed features, CPU ({result['machine']['cpu']}, {threads} threads), {result['model']}, "
        f"batch {args.batch_size}, max_seq_len {args.max_seq_len}, median of {args.repeats} interleaved blocks",
    )
    common.print_json_line(result)
    return result


if __name__ == "__main__":
    main()
