"""Unsupervised SimCSE training throughput on one GPU: BERT-base from config, fp32 / tf32 / bf16 / bf16+compile.

    python -m benchmarks.bench_gpu --out gpu_results.json           # on a CUDA machine (~4-5 min)
    python -m benchmarks.bench_gpu --cpu-smoke --out smoke.json      # tiny config, 2 steps, on the CPU

Why a random-weight model from ``BertConfig()``: throughput does not depend on the weights, and the GPU
machine has no network, so no checkpoint is needed (BERT-base shapes: 12 layers, hidden 768, vocab 30522).

Each training step is what ``train.py`` runs for unsup SimCSE: a (B, 2, L) batch (each sentence twice) goes
through ``BertForCL`` in ONE encoder pass over 2B sequences, contrastive loss, backward, fused AdamW.
Token ids are random with lengths uniform in [10, max_seq_len], padded per batch to the longest, rounded up
to a multiple of 8 (so L is almost always 32 at these batch sizes and ``torch.compile`` does not recompile).

Modes (the blocks of all modes are interleaved per batch size, median of the repeats):

* ``fp32``          strict fp32 matmuls (``set_float32_matmul_precision('highest')``).
* ``tf32``          fp32 weights and activations, matmuls on the tensor cores in TF32 (``'high'``).
* ``bf16``          ``torch.autocast(dtype=bfloat16)``, fp32 master weights (what ``--bf16`` does in Trainer).
* ``bf16_compile``  as ``bf16`` with ``torch.compile(model)``; a compile failure is reported, not fatal.
* ``bf16_compile_cg``  as ``bf16_compile`` with ``mode="reduce-overhead"`` (CUDA graphs): at batch 64 a step is
                    only ~4096 tokens, so kernel-launch and Python overhead, not arithmetic, bound it.
* ``bf16_compile_eager_attn``  as ``bf16_compile`` on a twin model with ``attn_implementation="eager"``: at
                    L = 32 the fused SDPA kernel (with a padding mask and dropout) may lose to Inductor's own
                    fusion of the small matmul-softmax-dropout-matmul chain.

* ``bf16_pure_compile``  bf16 *weights and activations* (no autocast), compiled, with fp32 master weights in
                    the optimizer (grads cast up, fused AdamW on fp32, weights cast back): autocast keeps the
                    residual stream and layer norms in fp32, and the memory-bound dropout/LayerNorm/GELU kernels
                    (about 37% of a compiled step at batch 512) move twice the bytes for it.

* ``bf16_pure_compile_mea``  as ``bf16_pure_compile`` with SDPA pinned to the memory-efficient/flash kernels:
                    with bf16 inputs and a mask SDPA picked cuDNN attention, 12.3 ms of a 52.6 ms step on an
                    H200 against 1.0 ms for the kernel chosen under autocast (not yet measured on a GPU).

``--profile MODE`` adds a torch.profiler breakdown of 5 steps of that mode at every batch size: GPU time per
kernel class (GEMM, attention, Triton/elementwise, optimizer, other) and the top kernels, to see where the
gap between the achieved and the peak FLOP rate goes.

FLOP count (for MFU), per training step, with T = 2B * L padded tokens (the compute the GPU really does:
SDPA still multiplies the padded positions), N = non-embedding encoder parameters, n layers, hidden H:

    FLOPs = 6 * N * T              (fwd 2NT + bwd 4NT for every linear layer)
          + 12 * n * L * H * T     (attention scores QK^T and the weighted sum AV: 2 * 2LH per token
                                    per layer forward, times 3 for forward + backward)

Embeddings (gathers), the MLP on the [CLS] rows, layer norms, softmax and the (2B x B) loss are left out
(< 1%). MFU = achieved FLOP/s / the card's dense bf16 peak (H100 SXM / H200: 989 TFLOP/s; H100 PCIe 756),
for every mode, fp32 included, so the figures say how much of the card each mode uses.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import math
import time
import traceback
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import torch

from benchmarks.common import interleaved_throughput, machine_info, median, print_json_line, print_table
from benchmarks.harness import Runner, bert_config, make_model, optimizer_step

MODES = (
    "fp32", "tf32", "bf16", "bf16_compile", "bf16_compile_cg", "bf16_compile_eager_attn", "bf16_pure_compile",
    "bf16_pure_compile_mea",
)  # fmt: skip
EPOCH_SENTENCES = 1_000_000
EPOCH_BATCH = 64

# Dense (no sparsity) bf16 tensor-core peaks from the vendor datasheets, in FLOP/s; matched in this order.
PEAK_BF16: tuple[tuple[tuple[str, ...], float], ...] = (
    (("H200",), 989e12),
    (("H100", "PCIE"), 756e12),
    (("H100",), 989e12),
    (("A100",), 312e12),
)


def peak_bf16_flops(device_name: str) -> float | None:
    """The card's dense bf16 peak, detected from ``torch.cuda.get_device_name``; None if unknown (no MFU then)."""
    name = device_name.upper()
    for needles, peak in PEAK_BF16:
        if all(n in name for n in needles):
            return peak
    return None


def train_flops_per_step(n_params: int, n_layers: int, hidden: int, seqs: int, seq_len: int) -> float:
    """Model FLOPs of one training step over ``seqs`` sequences of ``seq_len`` tokens (formula in the docstring)."""
    tokens = seqs * seq_len
    return 6.0 * n_params * tokens + 12.0 * n_layers * seq_len * hidden * tokens


def make_batches(
    n_batches: int, batch_size: int, max_len: int, min_len: int, vocab: int, device: torch.device, seed: int = 0
) -> list[dict[str, torch.Tensor]]:
    """Random (B, 2, L) batches: per sentence a length in [min_len, max_len], [CLS] ... [SEP], padded to the batch's
    longest rounded up to a multiple of 8; the two views of a sentence are the same ids (unsup SimCSE)."""
    gen = torch.Generator().manual_seed(seed)
    batches = []
    for _ in range(n_batches):
        lengths = torch.randint(min_len, max_len + 1, (batch_size,), generator=gen)
        width = min(max_len, int(math.ceil(int(lengths.max()) / 8) * 8))
        ids = torch.randint(1000 if vocab > 2000 else 5, vocab, (batch_size, width), generator=gen)
        positions = torch.arange(width).unsqueeze(0)  # (1, L)
        mask = (positions < lengths.unsqueeze(1)).long()  # (B, L)
        ids[:, 0] = 101 % vocab  # [CLS]
        ids[torch.arange(batch_size), lengths - 1] = 102 % vocab  # [SEP]
        ids = ids * mask  # [PAD] = 0
        two = {
            "input_ids": ids.unsqueeze(1).expand(-1, 2, -1).contiguous(),  # (B, 2, L)
            "attention_mask": mask.unsqueeze(1).expand(-1, 2, -1).contiguous(),
            "token_type_ids": torch.zeros(batch_size, 2, width, dtype=torch.long),
        }
        batches.append({k: v.to(device, non_blocking=True) for k, v in two.items()})
    return batches


class MasterWeightAdamW:
    """AdamW on fp32 master copies of low-precision parameters (the mixed-precision recipe without autocast).

    ``step`` casts the gradients up, updates the fp32 masters with fused AdamW, and writes the rounded weights
    back, so updates smaller than a bf16 ulp still accumulate, as they do under autocast's fp32 weights.
    """

    def __init__(self, params: list[torch.nn.Parameter], lr: float, fused: bool) -> None:
        self.params = [p for p in params if p.requires_grad]
        self.master = [p.detach().float().clone() for p in self.params]
        self.inner = torch.optim.AdamW(self.master, lr=lr, fused=fused)

    def zero_grad(self, set_to_none: bool = True) -> None:
        for p in self.params:
            p.grad = None

    @torch.no_grad()
    def step(self) -> None:
        for m, p in zip(self.master, self.params, strict=True):
            m.grad = None if p.grad is None else p.grad.float()
        self.inner.step()
        torch._foreach_copy_(self.params, self.master)


class ModeRunner(Runner):
    """One mode's training step on a shared model/optimizer (the modes are timed against each other).

    The loss is read once per block, so the GPU queue is never drained between steps."""

    def __init__(
        self,
        name: str,
        model: torch.nn.Module,
        forward: Callable[..., Any],
        optimizer: torch.optim.Optimizer,
        batches: list[dict[str, torch.Tensor]],
        device: torch.device,
    ) -> None:
        super().__init__(name, batches, examples=lambda b: b["input_ids"].shape[0], sync_every_step=False)
        self.model, self.forward, self.optimizer, self.device = model, forward, optimizer, device
        self.error: str | None = None
        self.compile_s: float | None = None

    def _precision(self) -> contextlib.AbstractContextManager:
        if self.device.type == "cuda":
            torch.backends.cuda.matmul.allow_tf32 = self.name == "tf32"
            torch.backends.cudnn.allow_tf32 = self.name == "tf32"
        stack = contextlib.ExitStack()
        if self.name.startswith("bf16") and "pure" not in self.name:
            stack.enter_context(torch.autocast(device_type=self.device.type, dtype=torch.bfloat16))
        if self.name.endswith("_mea"):
            from torch.nn.attention import SDPBackend, sdpa_kernel

            # everything but cuDNN attention; MATH only as the fallback where neither kernel applies (CPU)
            stack.enter_context(
                sdpa_kernel([SDPBackend.EFFICIENT_ATTENTION, SDPBackend.FLASH_ATTENTION, SDPBackend.MATH])
            )
        return stack

    def step(self, batch: dict[str, torch.Tensor]) -> torch.Tensor:
        def loss() -> torch.Tensor:
            if self.name.endswith("_cg"):
                torch.compiler.cudagraph_mark_step_begin()  # a new iteration: earlier graph outputs may be reused
            return self.forward(**batch).loss

        return optimizer_step(self.optimizer, loss, self._precision())


def sync_fn(device: torch.device) -> Callable[[], None] | None:
    return torch.cuda.synchronize if device.type == "cuda" else None


def build_runners(
    models: Callable[[str], tuple[torch.nn.Module, torch.optim.Optimizer]],
    batches: list[dict[str, torch.Tensor]],
    modes: list[str],
    device: torch.device,
    warmup_steps: int,
) -> list[ModeRunner]:
    """Warm every mode up (compiling where asked); a mode that fails keeps its error and is not timed.

    ``models(mode)`` gives the (model, optimizer) a mode trains; modes of the same attention share one.
    """
    runners = []
    for mode in modes:
        model, optimizer = models(mode)
        forward = model
        if "compile" in mode:  # L is fixed by the padding to 8, so no dynamic shapes
            cg = mode.endswith("_cg")
            forward = torch.compile(model, dynamic=False, mode="reduce-overhead" if cg else None)
        runner = ModeRunner(mode, model, forward, optimizer, batches, device)
        start = time.perf_counter()
        try:
            runner.block(warmup_steps)
            if device.type == "cuda":
                torch.cuda.synchronize()
        except Exception as err:  # noqa: BLE001 - report any failure (compile, OOM) and go on with the others
            runner.error = f"{type(err).__name__}: {str(err).splitlines()[0][:300] if str(err) else ''}"
            traceback.print_exc(limit=3)
            if device.type == "cuda":
                torch.cuda.empty_cache()
        if "compile" in mode:
            runner.compile_s = time.perf_counter() - start
        runners.append(runner)
    return runners


def peak_memory(runner: ModeRunner, device: torch.device) -> float | None:
    """Peak allocated GiB over two steps of this mode (weights, grads and AdamW state included).

    Under CUDA graphs (``_cg``) activations live in the graph's private pool, captured during warm-up, so this
    figure leaves them out; ``peak_reserved_gib`` (read right after) is the one to compare there.
    """
    if device.type != "cuda":
        return None
    torch.cuda.synchronize()
    torch.cuda.empty_cache()
    torch.cuda.reset_peak_memory_stats()
    runner.block(2)
    torch.cuda.synchronize()
    return torch.cuda.max_memory_allocated() / 2**30


def peak_reserved(device: torch.device) -> float | None:
    """Peak GiB held by the caching allocator: unlike the allocated peak it includes CUDA-graph pools."""
    return torch.cuda.max_memory_reserved() / 2**30 if device.type == "cuda" else None


class ModelCache:
    """``models(mode) -> (model, optimizer)``, built on first use: modes of the same attention kernel (and
    precision of the weights) share one model, with the same initial weights for every variant."""

    def __init__(self, config: Any, device: torch.device) -> None:
        self.config, self.device = config, device
        self.built: dict[str, tuple[torch.nn.Module, Any]] = {}

    def __call__(self, mode: str) -> tuple[torch.nn.Module, Any]:
        attn = "eager" if mode.endswith("eager_attn") else "sdpa"
        key = f"{attn}_pure" if "pure" in mode else attn
        if key not in self.built:
            torch.manual_seed(0)  # same initial weights for every variant
            # MFU counts every position of every layer: keep the full last layer in the eager modes too
            # (compiled modes never take the [CLS] shortcut), and one padded pass (no length buckets).
            model = make_model(self.config, attn_implementation=attn, length_buckets=1, cls_only_last_layer=False,
                               device=self.device)  # fmt: skip
            fused = self.device.type == "cuda"
            if "pure" in mode:
                model = model.to(torch.bfloat16)
                optimizer: Any = MasterWeightAdamW(list(model.parameters()), lr=3e-5, fused=fused)
            else:
                optimizer = torch.optim.AdamW(model.parameters(), lr=3e-5, fused=fused)
            self.built[key] = (model, optimizer)
        return self.built[key]


def mode_record(
    r: ModeRunner, batch_size: int, mean_len: float, flops_step: float, rates: dict[str, list[float]],
    peak: float | None, args: argparse.Namespace, device: torch.device,
) -> dict[str, Any]:
    """One mode's record: sentences/s, step time, model TFLOP/s and MFU, peak memory (and a profile if asked)."""
    rec: dict[str, Any] = {
        "bench": "gpu_train",
        "batch_size": batch_size,
        "mode": r.name,
        "seq_len_padded": mean_len,
        "status": "ok" if r.error is None else "error",
    }
    if r.error is not None:
        rec["error"] = r.error
    else:
        sps = median(rates[r.name])
        achieved = flops_step * sps / batch_size
        rec.update(
            sentences_per_s=sps,
            sentences_per_s_all=[round(x, 1) for x in rates[r.name]],
            step_ms=1000.0 * batch_size / sps,
            model_tflops=achieved / 1e12,
            mfu=achieved / peak if peak else None,
            peak_mem_gib=peak_memory(r, device),
            peak_reserved_gib=peak_reserved(device),
            last_loss=r.losses[-1],
        )
    if r.compile_s is not None:
        rec["compile_and_warmup_s"] = r.compile_s
    if r.error is None and r.name in (args.profile or []):
        rec["profile"] = profile_steps(r, device, steps=5)
    return rec


def run_batch_size(args: argparse.Namespace, batch_size: int, device: torch.device, peak: float | None) -> list[dict]:
    config = bert_config(tiny=args.cpu_smoke)  # the unsup recipe's settings are added by make_model
    models = ModelCache(config, device)
    model, _ = models("bf16")
    batches = make_batches(8, batch_size, args.max_seq_len, args.min_len, config.vocab_size, device)
    n_params = sum(p.numel() for p in model.bert.encoder.parameters())  # non-embedding (pooler MLP left out)

    runners = build_runners(models, batches, args.modes, device, args.warmup_steps)
    ok = [r for r in runners if r.error is None]
    rates = interleaved_throughput(
        {r.name: (lambda r=r: r.block(args.steps)) for r in ok}, repeats=args.repeats, warmup=0, sync=sync_fn(device)
    )
    mean_len = sum(int(b["input_ids"].shape[-1]) for b in batches) / len(batches)
    flops_step = train_flops_per_step(
        n_params, config.num_hidden_layers, config.hidden_size, 2 * batch_size, int(round(mean_len))
    )
    records = []
    for r in runners:
        records.append(mode_record(r, batch_size, mean_len, flops_step, rates, peak, args, device))
        print_json_line(records[-1])
    models.built.clear()  # frees both models and their optimizer states
    del runners, ok, model, batches
    torch._dynamo.reset()  # the next batch size compiles afresh, not as a dynamic-shape recompile
    if device.type == "cuda":
        torch.cuda.empty_cache()
    return records


KERNEL_CLASSES = (  # first match wins; names of cuBLAS/CUTLASS/Triton/PyTorch kernels
    ("attention", ("fmha", "attention", "flash", "efficient_attention", "softmax")),
    ("gemm", ("gemm", "nvjet", "sm90_xmma", "cutlass", "wgmma", "matmul", "splitk", "cublas", "::mm", "addmm", "bmm")),
    ("optimizer", ("adam", "multi_tensor", "foreach")),
    ("embedding", ("embedding", "index", "scatter", "sort", "radix")),
    ("triton_fused", ("triton",)),
    ("elementwise", ("elementwise", "vectorized", "reduce", "norm", "dropout", "gelu", "copy", "fill")),
)


def kernel_class(name: str) -> str:
    low = name.lower()
    for label, needles in KERNEL_CLASSES:
        if any(n in low for n in needles):
            return label
    return "other"


def profile_steps(runner: ModeRunner, device: torch.device, steps: int = 5) -> dict[str, Any]:
    """GPU time per kernel class over ``steps`` training steps of one mode, and the 10 longest kernels."""
    from torch.profiler import ProfilerActivity, profile

    activities = [ProfilerActivity.CPU] + ([ProfilerActivity.CUDA] if device.type == "cuda" else [])
    runner.block(1)
    if device.type == "cuda":
        torch.cuda.synchronize()
    start = time.perf_counter()
    with profile(activities=activities) as prof:
        runner.block(steps)
        if device.type == "cuda":
            torch.cuda.synchronize()
    wall_ms = 1000 * (time.perf_counter() - start) / steps
    per_kernel: dict[str, float] = {}  # microseconds over the profiled steps
    for evt in prof.events():
        on_gpu = "CUDA" in str(getattr(evt, "device_type", ""))
        if device.type == "cuda" and on_gpu:
            us = evt.time_range.elapsed_us()  # kernels: their span on the GPU timeline
        elif device.type != "cuda" and not on_gpu:
            us = evt.self_cpu_time_total  # CPU smoke: the ops' own CPU time, so the breakdown has content
        else:
            continue
        per_kernel[evt.name] = per_kernel.get(evt.name, 0.0) + us
    classes: dict[str, float] = {}
    for name, us in per_kernel.items():
        classes[kernel_class(name)] = classes.get(kernel_class(name), 0.0) + us / 1000 / steps
    gpu_ms = sum(classes.values())
    top = sorted(per_kernel.items(), key=lambda kv: -kv[1])[:10]
    out = {
        "mode": runner.name,
        "wall_ms_per_step": round(wall_ms, 2),
        "busy_ms_per_step": round(gpu_ms, 2),  # GPU (CPU for the smoke path)
        "ms_per_step_by_class": {k: round(v, 2) for k, v in sorted(classes.items(), key=lambda kv: -kv[1])},
        "top_kernels_ms_per_step": [[name[:90], round(us / 1000 / steps, 3)] for name, us in top],
    }
    print(f"profile {runner.name}: {json.dumps(out)}", flush=True)
    return out


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--batch_sizes", type=int, nargs="+", default=[64, 512])
    p.add_argument("--max_seq_len", type=int, default=32)
    p.add_argument("--min_len", type=int, default=10)
    p.add_argument("--modes", nargs="+", default=list(MODES), choices=MODES)
    p.add_argument("--steps", type=int, default=10, help="training steps per timed block")
    p.add_argument("--repeats", type=int, default=5, help="timed blocks per mode (interleaved); the median is kept")
    p.add_argument("--warmup_steps", type=int, default=3, help="untimed steps per mode first (compile happens here)")
    p.add_argument("--out", type=str, default=None, help="write all records to this JSON file")
    p.add_argument("--profile", nargs="*", default=None, choices=MODES, help="kernel-time breakdown of these modes")
    p.add_argument(
        "--cpu-smoke",
        "--cpu_smoke",
        dest="cpu_smoke",
        action="store_true",
        help="tiny config, 2 steps, no compile, on the CPU (automatic when CUDA is missing)",
    )
    args = p.parse_args(argv)
    if not torch.cuda.is_available() and not args.cpu_smoke:
        print("no CUDA device: running the CPU smoke path (--cpu-smoke)", flush=True)
        args.cpu_smoke = True
    if args.cpu_smoke:
        args.steps, args.repeats, args.warmup_steps = 2, 1, 1
        args.batch_sizes = [min(b, 8) for b in args.batch_sizes[:1]]
        args.modes = [m for m in args.modes if "compile" not in m and m != "tf32"] or ["fp32"]
    return args


def _iter_summary(records: list[dict]) -> Iterator[list[Any]]:
    for r in records:
        if r["status"] != "ok":
            yield [r["batch_size"], r["mode"], "FAILED", "", "", "", "", r["error"][:60]]
            continue
        mfu = f"{100 * r['mfu']:.1f}%" if r.get("mfu") is not None else "n/a"
        mem = f"{r['peak_mem_gib']:.2f}" if r.get("peak_mem_gib") is not None else "n/a"
        note = f"compile+warmup {r['compile_and_warmup_s']:.0f}s" if "compile_and_warmup_s" in r else ""
        yield [r["batch_size"], r["mode"], r["sentences_per_s"], r["step_ms"], r["model_tflops"], mfu, mem, note]


def main(argv: list[str] | None = None) -> dict[str, Any]:
    args = parse_args(argv)
    device = torch.device("cpu" if args.cpu_smoke else "cuda")
    if device.type == "cuda":
        torch.backends.cuda.matmul.allow_tf32 = False
    info = machine_info()
    peak = peak_bf16_flops(info.get("gpu", "")) if device.type == "cuda" else None
    print(f"machine: {info}; dense bf16 peak used for MFU: {peak / 1e12 if peak else 'n/a'} TFLOP/s", flush=True)
    records: list[dict] = []
    result: dict[str, Any] = {"machine": info, "peak_bf16_flops": peak, "args": vars(args), "records": records}
    for bs in args.batch_sizes:
        records.extend(run_batch_size(args, bs, device, peak))
        if args.out:  # written after each batch size, so a run cut short still leaves its figures
            Path(args.out).write_text(json.dumps(result, indent=2, default=str))

    print_table(
        ["batch", "mode", "sent/s", "step ms", "model TFLOP/s", "MFU", "peak GiB", "note"],
        list(_iter_summary(records)),
        title=f"Unsup SimCSE training, {'tiny config (CPU smoke)' if args.cpu_smoke else 'BERT-base'}, "
        f"max_seq_len {args.max_seq_len}, {info.get('gpu', info['cpu'])}",
    )
    at_epoch_batch = [r for r in records if r["status"] == "ok" and r["batch_size"] == EPOCH_BATCH]
    summary: dict[str, Any] = {"bench": "gpu_summary", "device": info.get("gpu", info["cpu"])}
    if at_epoch_batch:
        best = max(at_epoch_batch, key=lambda r: r["sentences_per_s"])
        steps = EPOCH_SENTENCES // EPOCH_BATCH
        epoch_s = steps * best["step_ms"] / 1000.0
        summary.update(best_mode_b64=best["mode"], epoch_steps=steps, epoch_projected_s=epoch_s)
        print(
            f"\nprojected epoch (1,000,000 sentences, batch 64 = {steps:,} steps) with {best['mode']}: "
            f"{epoch_s:.0f} s = {epoch_s / 60:.1f} min (training steps only, no evaluation)"
        )
    fp32 = {r["batch_size"]: r for r in records if r["mode"] == "fp32" and r["status"] == "ok"}
    speedups = {
        f"{r['mode']}_vs_fp32_b{r['batch_size']}": r["sentences_per_s"] / fp32[r["batch_size"]]["sentences_per_s"]
        for r in records
        if r["status"] == "ok" and r["batch_size"] in fp32 and r["mode"] != "fp32"
    }
    summary["speedup_vs_fp32"] = speedups
    result["summary"] = summary
    print_json_line(summary)
    if args.out:
        Path(args.out).write_text(json.dumps(result, indent=2, default=str))
    return result


if __name__ == "__main__":
    main()
