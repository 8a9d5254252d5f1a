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
from transformers import Trainer

logger = logging.getLogger(__name__)


class NonFiniteLossError(RuntimeError):
    """The training loss became NaN or inf; the run stops before a broken model is saved."""


class SentenceEmbedder:
    """Embeds sentences with the training model's own embedding path (``sent_emb=True``).

    Sentences are encoded once per evaluation (a cache shared by every metric of that evaluation)
    in length-sorted batches, so padding is minimal and nothing is encoded twice.
    """

    def __init__(
        self,
        model: torch.nn.Module,
        tokenizer: Any,
        device: torch.device,
        batch_size: int = 128,
        max_length: int | None = None,
    ) -> None:
        self.model, self.tokenizer, self.device = model, tokenizer, device
        self.batch_size = batch_size
        limit = getattr(model.config, "max_position_embeddings", 512)
        if getattr(model.config, "model_type", "") == "roberta":
            limit -= 2  # RoBERTa's positions start after the padding index
        self.max_length = min(max_length or limit, limit)
        self.cache: dict[str, torch.Tensor] = {}

    @torch.no_grad()
    def __call__(self, sentences: Sequence[str]) -> torch.Tensor:
        todo = sorted({s for s in sentences if s not in self.cache}, key=len)
        for start in range(0, len(todo), self.batch_size):
            chunk = todo[start : start + self.batch_size]
            batch = self.tokenizer(
                chunk, padding=True, truncation=True, max_length=self.max_length, return_tensors="pt"
            ).to(self.device)
            emb = self.model(**batch, sent_emb=True, return_dict=True).pooler_output.float().cpu()  # (n, H)
            self.cache.update(zip(chunk, emb))
        if not sentences:
            return torch.empty(0, self.model.config.hidden_size)
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

    def compute_loss(self, model, inputs, return_outputs=False, num_items_in_batch=None):
        outputs = model(**inputs)
        loss = outputs.loss
        if not torch.isfinite(loss.detach()).all():
            raise NonFiniteLossError(
                f"training loss is {loss.detach().float().mean().item()} at step {self.state.global_step}: "
                "stopping before a broken model is saved (lower --learning_rate, check the data, "
                "or prefer --bf16 to --fp16)"
            )
        return (loss, outputs) if return_outputs else loss

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
        model = self.accelerator.unwrap_model(self.model)
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
