"""``CLTrainer``: transformers' Trainer with SimCSE's loss and SentEval-based evaluation.

Only public hooks are overridden (``compute_loss``, ``evaluate``); optimisation, DDP, mixed
precision, checkpointing, resuming and best-model selection are transformers' own. This is what
lets the project follow current transformers instead of pinning 4.2.1 as the original had to.
"""

from __future__ import annotations

import logging
import math
import time
from collections.abc import Callable, Sequence
from typing import Any

import torch
import torch.distributed as dist
from transformers import Trainer, TrainerCallback

from simcse.encode import make_embed_fn
from simcse.poolers import eval_pooler_from_config
from simcse.settings import RuntimeOptions

logger = logging.getLogger(__name__)


class NonFiniteLossError(RuntimeError):
    """The training loss became NaN or inf; the run stops before a broken model is saved."""


NONFINITE_CHECK_EVERY = 50  # optimizer steps between two (synchronising) reads of the non-finite flag


class _RunChecks(TrainerCallback):
    """Reads the trainer's on-device loss checks at a few points, never on every step.

    A per-step ``if torch.isfinite(loss)`` would block the CPU until the GPU finishes each step; at
    batch 64 that idles the GPU between steps. The flag is read every ``NONFINITE_CHECK_EVERY`` steps
    and always before anything is logged, evaluated or saved, and when training stops, so a NaN still
    stops the run before a broken model can be written. Also keeps the start of the window over which
    ``CLTrainer.log`` reports the training rate (evaluation time left out).
    """

    def __init__(self, trainer: CLTrainer) -> None:
        self.trainer = trainer

    def on_train_begin(self, args, state, control, **kwargs):
        self.trainer.rate_window = (time.perf_counter(), state.global_step)

    def on_step_end(self, args, state, control, **kwargs):
        if (control.should_log or control.should_save or control.should_evaluate or control.should_training_stop
                or state.global_step % NONFINITE_CHECK_EVERY == 0):
            self.trainer.check_finite_losses()

    def on_epoch_end(self, args, state, control, **kwargs):
        self.trainer.check_finite_losses()

    def on_evaluate(self, args, state, control, **kwargs):
        self.trainer.rate_window = (time.perf_counter(), state.global_step)  # evaluation is not training


class SentenceEmbedder:
    """Embeds sentences as the checkpoint will be used: the test-time pooler of the model's config
    (``sent_emb=True``'s vectors) on its encoder, through the one encode path (simcse.encode: token-length
    sorted batches; the last layer at [CLS] only for the [CLS] poolers when the model was built with
    ``RuntimeOptions(cls_only_last_layer=True)``, as training itself).

    Sentences are encoded once per evaluation (a cache shared by every metric of that evaluation).
    """

    def __init__(
        self,
        model: torch.nn.Module,
        tokenizer: Any,
        device: torch.device,
        batch_size: int = 128,
        max_length: int | None = None,
    ) -> None:
        self.hidden_size = model.config.hidden_size
        pooler = eval_pooler_from_config(model.config)
        runtime = getattr(model, "runtime", None) or RuntimeOptions()
        self._embed = make_embed_fn(
            model.encoder, tokenizer, pooler, device, max_length, batch_size, runtime.cls_only_last_layer
        )
        self.cache: dict[str, torch.Tensor] = {}

    def __call__(self, sentences: Sequence[str]) -> torch.Tensor:
        todo = list(dict.fromkeys(s for s in sentences if s not in self.cache))
        if todo:
            self.cache.update(zip(todo, self._embed(todo)))  # (len(todo), H) float CPU rows
        if not sentences:
            return torch.empty(0, self.hidden_size)
        return torch.stack([self.cache[s] for s in sentences])  # (len(sentences), H)


class CLTrainer(Trainer):
    """Trainer for SimCSE heads (:mod:`simcse.models`).

    Args (beyond Trainer's):
        senteval_data_dir: SentEval ``downstream`` folder used for the dev metrics.
        dev_metrics_fn: ``(embed_fn, data_dir, eval_transfer) -> dict`` giving ``stsb_spearman``,
            ``sickr_spearman``, ``avg_sts`` (and transfer dev accuracies).
        extra_metrics_fn: optional ``(embed_fn, data_dir) -> dict`` run at each evaluation on the
            same cached embeddings (alignment and uniformity).
    """

    # Our loss is a per-batch mean that knows nothing of token counts: transformers must divide it by
    # the gradient-accumulation steps itself and must not rescale it across devices.
    loss_is_scaled_for_ga = False

    def __init__(
        self,
        *args: Any,
        senteval_data_dir: str | None = None,
        dev_metrics_fn: Callable[..., dict[str, float]] | None = None,
        extra_metrics_fn: Callable[..., dict[str, float]] | None = None,
        **kwargs: Any,
    ) -> None:
        super().__init__(*args, **kwargs)
        self.senteval_data_dir = senteval_data_dir
        self.dev_metrics_fn = dev_metrics_fn
        self.extra_metrics_fn = extra_metrics_fn
        self._loss_calls: torch.Tensor | None = None  # loss calls since the last finite check (on device)
        self._first_bad_call: torch.Tensor | None = None  # 1-based call of the first NaN/inf loss, or -1
        self._first_bad_value: torch.Tensor | None = None  # that loss's value (on device)
        self._calls_from_step = 0
        self.rate_window: tuple[float, int] | None = None  # (time, global step) where the rate window starts
        self.add_callback(_RunChecks(self))

    def log(self, logs: dict[str, float], *args: Any, **kwargs: Any) -> None:
        """Adds ``train_sentences_per_s`` (all ranks, since the last training log or evaluation) to loss logs."""
        if "loss" in logs and self.rate_window is not None:
            now, (then, step0) = time.perf_counter(), self.rate_window
            if self.state.global_step > step0 and now > then:
                per_step = self.args.train_batch_size * self.args.gradient_accumulation_steps * self.args.world_size
                logs["train_sentences_per_s"] = round((self.state.global_step - step0) * per_step / (now - then), 1)
            self.rate_window = (now, self.state.global_step)
        super().log(logs, *args, **kwargs)

    def compute_loss(self, model, inputs, return_outputs=False, num_items_in_batch=None):
        if getattr(self.args, "torch_compile", False) and self.args.torch_compile_mode in (
            "reduce-overhead", "max-autotune"
        ):
            torch.compiler.cudagraph_mark_step_begin()  # CUDA graphs: a new iteration starts here
        outputs = model(**inputs)
        loss = outputs.loss
        self._note_loss(loss)
        return (loss, outputs) if return_outputs else loss

    def _note_loss(self, loss: torch.Tensor) -> None:
        """Record on the device (no host sync) whether, and at which call, a loss was not finite."""
        if self._loss_calls is None or self._loss_calls.device != loss.device:
            self._loss_calls = torch.zeros((), dtype=torch.long, device=loss.device)
            self._first_bad_call = torch.full((), -1, dtype=torch.long, device=loss.device)
            self._first_bad_value = torch.zeros((), dtype=torch.float32, device=loss.device)
            self._calls_from_step = self.state.global_step
        self._loss_calls += 1
        bad = ~torch.isfinite(loss.detach()).all()
        first = bad & (self._first_bad_call < 0)
        self._first_bad_call = torch.where(first, self._loss_calls, self._first_bad_call)
        self._first_bad_value = torch.where(first, loss.detach().float().mean(), self._first_bad_value)

    def check_finite_losses(self) -> None:
        """Raise ``NonFiniteLossError`` if any loss since the last check was NaN/inf (one host sync)."""
        if self._first_bad_call is None:
            return
        bad_call = int(self._first_bad_call)
        if bad_call >= 0:
            step = self._calls_from_step + (bad_call - 1) // max(self.args.gradient_accumulation_steps, 1)
            raise NonFiniteLossError(
                f"training loss is {float(self._first_bad_value)} at step {step}: "
                "stopping before a broken model is saved "
                "(lower --learning_rate, check the data, or prefer --bf16 to --fp16)"
            )
        self._loss_calls = None  # the next window starts counting from the current global step
        self._first_bad_call = None

    def evaluate(
        self,
        eval_dataset: Any = None,
        ignore_keys: list[str] | None = None,
        metric_key_prefix: str = "eval",
        eval_senteval_transfer: bool = False,
    ) -> dict[str, float]:
        """SentEval dev metrics (STS-B and SICK-R dev Spearman, optionally transfer dev accuracy).

        Runs on the main process only and broadcasts the numbers, so every DDP rank agrees on the
        best checkpoint (the original ran the full SentEval on every rank).
        """
        if self.dev_metrics_fn is None:
            raise RuntimeError("CLTrainer.evaluate needs dev_metrics_fn (see simcse.evaluation.dev_metrics)")
        start = time.perf_counter()
        model = self.accelerator.unwrap_model(self.model, keep_torch_compile=False)  # eval runs eagerly
        was_training = model.training
        model.eval()
        raw: dict[str, float] | None = None
        if self.is_world_process_zero():
            embed = SentenceEmbedder(model, self.processing_class, self.args.device, batch_size=128)
            transfer = eval_senteval_transfer or getattr(self.args, "eval_transfer", False)
            raw = dict(self.dev_metrics_fn(embed, self.senteval_data_dir, eval_transfer=transfer))
            if self.extra_metrics_fn is not None:
                raw.update(self.extra_metrics_fn(embed, self.senteval_data_dir))
        if dist.is_available() and dist.is_initialized():
            box = [raw]
            dist.broadcast_object_list(box, src=0)
            raw = box[0]
        model.train(was_training)
        metrics = {f"{metric_key_prefix}_{k}": float(v) for k, v in (raw or {}).items()}
        metrics[f"{metric_key_prefix}_runtime"] = round(time.perf_counter() - start, 4)
        for key, value in metrics.items():
            if isinstance(value, float) and math.isnan(value):
                logger.warning("%s is NaN (constant embeddings?)", key)
        self.log(metrics)
        self.control = self.callback_handler.on_evaluate(self.args, self.state, self.control, metrics)
        return metrics
