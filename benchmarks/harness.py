"""The training harness shared by the benchmarks: how a SimCSE model is built, how its data is made, how a
timed training step runs.

Why one module: the CPU, feature and GPU benchmarks all time the same thing (``train.py``'s training step:
forward, contrastive loss, backward, fused AdamW), so they must build the model and run the step the same
way, or their figures stop being comparable. Every SimCSE model of the benchmarks comes from
:func:`make_model`, the one place that knows how the speed options (``train.py --length_buckets`` and
``--cls_only_last_layer``) reach the model.
"""

from __future__ import annotations

import contextlib
import copy
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import torch

from simcse.length_buckets import DEFAULT_LENGTH_BUCKETS

# The unsupervised recipe: [CLS] + MLP in training, raw [CLS] at test time, temperature 0.05.
UNSUP_SETTINGS: dict[str, Any] = {"pooler_type": "cls", "temp": 0.05, "mlp_only_train": True}
# A BERT of the real one's shape and nothing of its size, for smoke runs on the CPU.
TINY_BERT: dict[str, int] = {
    "vocab_size": 128, "hidden_size": 32, "num_hidden_layers": 2, "num_attention_heads": 4, "intermediate_size": 37,
}  # fmt: skip


def make_model(
    source: str | Path | Any,
    *,
    simcse_settings: dict[str, Any] | None = None,
    length_buckets: int = DEFAULT_LENGTH_BUCKETS,
    cls_only_last_layer: bool = True,
    attn_implementation: str | None = None,
    device: torch.device | str | None = None,
) -> torch.nn.Module:
    """A SimCSE training model in train mode: from a checkpoint folder (``load_cl_model``, as ``train.py``), or
    with random weights from a ``PretrainedConfig`` (throughput does not depend on the weights).

    ``simcse_settings`` are added to the unsupervised recipe (:data:`UNSUP_SETTINGS`). ``length_buckets`` and
    ``cls_only_last_layer`` are ``train.py``'s speed flags (same loss, less work); ``1`` / ``False`` give the
    original computation (one padded pass, every position of every layer).
    """
    from transformers import PretrainedConfig

    from simcse.models import load_cl_model, model_class_for
    from simcse.settings import RuntimeOptions

    settings = {**UNSUP_SETTINGS, **(simcse_settings or {})}
    # train.py --length_buckets / --cls_only_last_layer / --attn_implementation, fixed when the model is built
    runtime = RuntimeOptions(
        length_buckets=length_buckets, cls_only_last_layer=cls_only_last_layer, attn_implementation=attn_implementation
    )
    if isinstance(source, PretrainedConfig):
        config = copy.deepcopy(source)
        for name, value in settings.items():
            setattr(config, name, value)
        extra = {"attn_implementation": attn_implementation} if attn_implementation else {}
        model = model_class_for(config)._from_config(config, runtime=runtime, **extra)
    else:
        model = load_cl_model(str(source), simcse_settings=settings, runtime=runtime)
    if device is not None:
        model.to(device)
    return model.train()


def bert_config(tiny: bool = False, vocab_size: int | None = None) -> Any:
    """BERT-base's ``BertConfig()`` (12 x 768, vocab 30522, dropout 0.1), or :data:`TINY_BERT` for smoke runs."""
    from transformers import BertConfig

    sizes = dict(TINY_BERT) if tiny else {}
    if vocab_size is not None:
        sizes["vocab_size"] = vocab_size
    return BertConfig(**sizes)


def save_random_encoder(tokenizer: str | Path, dest: Path, tiny: bool = False) -> Path:
    """A random-weight ``BertModel`` (BERT-base shape, or tiny) with the given tokenizer (a folder, or a
    WordPiece ``vocab.txt``), saved to ``dest`` as a starting checkpoint for ``train.py``."""
    from transformers import AutoTokenizer, BertModel, BertTokenizerFast

    is_vocab = Path(tokenizer).is_file()
    tok = BertTokenizerFast(vocab_file=str(tokenizer)) if is_vocab else AutoTokenizer.from_pretrained(tokenizer)
    torch.manual_seed(0)
    BertModel(bert_config(tiny, vocab_size=len(tok))).save_pretrained(dest)
    tok.save_pretrained(dest)
    return dest


def unsup_dataset(tokenizer: Any, texts: Sequence[str], max_len: int) -> Any:
    """The tokenised training set ``train.py`` builds from a ``.txt`` file: each sentence is its own positive."""
    from simcse.data import TrainingTexts, build_train_dataset

    texts = list(texts)
    source = TrainingTexts({"sent0": texts, "sent1": list(texts)}, num_sent=2, blank_lines_skipped=0, source="bench")
    return build_train_dataset(source, tokenizer, max_len)


def optimizer_step(
    optimizer: Any,
    compute_loss: Callable[[], torch.Tensor],
    precision: contextlib.AbstractContextManager | None = None,
) -> torch.Tensor:
    """One training step as the Trainer runs it: zero the grads, forward (under ``precision``, e.g. autocast),
    backward, optimizer step. Returns the loss, still on its device (reading it is the caller's choice)."""
    optimizer.zero_grad(set_to_none=True)
    with precision if precision is not None else contextlib.nullcontext():
        loss = compute_loss()
    loss.backward()
    optimizer.step()
    return loss


class Runner:
    """One side of a comparison: its batches and its training step, run in timed blocks.

    ``batches`` is a list (cycled in order) or a callable giving the next batch (e.g. from a DataLoader).
    ``prepare`` turns a raw batch into model inputs and is timed apart from the step (tokenising, collating).
    ``step`` (an argument, or a subclass method) runs one optimizer step and returns the loss tensor.
    ``sync_every_step``: read the loss after every step (exact per-step times on the CPU); False reads it once
    per block, so a GPU's queue is never drained between steps.
    """

    def __init__(
        self,
        name: str,
        batches: Sequence[Any] | Callable[[], Any],
        step: Callable[[Any], torch.Tensor] | None = None,
        prepare: Callable[[Any], Any] | None = None,
        examples: Callable[[Any], int] = len,
        sync_every_step: bool = True,
    ) -> None:
        self.name, self.batches, self.examples, self.sync_every_step = name, batches, examples, sync_every_step
        if step is not None:
            self.step = step
        self.prepare = prepare or (lambda raw: raw)
        self.cursor = 0
        self.prep_s: list[float] = []
        self.model_s: list[float] = []
        self.losses: list[float] = []

    def step(self, batch: Any) -> torch.Tensor:
        raise NotImplementedError("pass step= or override Runner.step")

    def next_batch(self) -> Any:
        if callable(self.batches):
            return self.batches()
        raw = self.batches[self.cursor % len(self.batches)]
        self.cursor += 1
        return raw

    def block(self, steps: int) -> int:
        """``steps`` training steps on the next batches; returns the number of examples trained on."""
        n = 0
        loss = None
        for _ in range(steps):
            raw = self.next_batch()
            t0 = time.perf_counter()
            batch = self.prepare(raw)
            t1 = time.perf_counter()
            loss = self.step(batch)
            if self.sync_every_step:
                self.losses.append(float(loss.detach()))
            self.prep_s.append(t1 - t0)
            self.model_s.append(time.perf_counter() - t1)
            n += self.examples(raw)
        if loss is not None and not self.sync_every_step:
            self.losses.append(float(loss.detach()))  # one sync per block, after the work was queued
        return n
