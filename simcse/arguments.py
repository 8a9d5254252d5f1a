"""Command-line arguments of ``train.py``: three dataclasses parsed by ``HfArgumentParser``.

Flag names and defaults are the original's (docs/FAITHFULNESS.md, "Training arguments and defaults"), so
existing SimCSE command lines keep working; options added here are marked "(ours)" in their help text.
"""

from __future__ import annotations

import dataclasses
import logging
from dataclasses import dataclass, field
from typing import Any

import torch
from transformers import TrainingArguments

from simcse.environment import senteval_data_dir
from simcse.poolers import POOLER_TYPES
from simcse.settings import CONFIG_KEYS, DEFAULT_LENGTH_BUCKETS, TRAIN_POOLERS, RuntimeOptions, SimCSESettings

logger = logging.getLogger(__name__)


def setting_field(name: str) -> Any:
    """A dataclass field for the SimCSE setting ``name``, with the default and help of ``SimCSESettings``."""
    spec = next(f for f in dataclasses.fields(SimCSESettings) if f.name == name)
    return field(default=spec.default, metadata=dict(spec.metadata))


@dataclass
class ModelArguments:
    """Which checkpoint to start from and the SimCSE head settings (saved into config.json)."""

    model_name_or_path: str | None = field(
        default=None, metadata={"help": "Checkpoint to start from: a hub id or a local folder (BERT or RoBERTa)."}
    )
    model_type: str | None = field(default=None, metadata={"help": "Unused; kept for compatibility."})
    config_name: str | None = field(default=None, metadata={"help": "Config name or path, if not the model's."})
    tokenizer_name: str | None = field(default=None, metadata={"help": "Tokenizer name or path, if not the model's."})
    cache_dir: str | None = field(default=None, metadata={"help": "Where hub downloads are cached."})
    use_fast_tokenizer: bool = field(default=True, metadata={"help": "Use a fast (Rust) tokenizer."})
    model_revision: str = field(default="main", metadata={"help": "Hub revision (branch, tag or commit)."})
    use_auth_token: bool = field(default=False, metadata={"help": "Use the stored hub token (private models)."})
    # The SimCSE settings: defaults, help and checks live in simcse.settings.SimCSESettings.
    temp: float = setting_field("temp")
    pooler_type: str = setting_field("pooler_type")
    hard_negative_weight: float = setting_field("hard_negative_weight")
    do_mlm: bool = setting_field("do_mlm")
    mlm_weight: float = setting_field("mlm_weight")
    mlp_only_train: bool = setting_field("mlp_only_train")
    gather_negatives: bool = setting_field("gather_negatives")
    similarity: str = setting_field("similarity")
    # How the heads start (simcse.checkpoints); what was done is recorded (config mlm_head_init, run record).
    mlm_head_from_checkpoint: bool = field(
        default=False,
        metadata={
            "help": "(ours) With --do_mlm from a pre-trained BERT checkpoint, start the MLM head from its "
            "cls.predictions.* weights; default: a freshly initialised head. RoBERTa always starts from the "
            "checkpoint's lm_head.*, and a SimCSE checkpoint's trained head is always kept (README: Starting from "
            "a checkpoint)."
        },
    )
    # Speed only (simcse.settings.RuntimeOptions): the same loss, computed differently.
    length_buckets: int = field(
        default=DEFAULT_LENGTH_BUCKETS,
        metadata={
            "help": "(ours) Encode each training batch as N length-sorted buckets, each padded to its own length: "
            "same loss, about a quarter fewer positions on wiki data (4: 1.05-1.2x faster on CPU); 1 = one padded "
            "pass as the original; 0 (default) = 4 on the CPU, 1 on GPUs and under --torch_compile."
        },
    )
    cls_only_last_layer: bool = field(
        default=RuntimeOptions.cls_only_last_layer,
        metadata={
            "help": "(ours) With a cls/cls_before_pooler pooler, run the last layer's query, output and feed-forward "
            "at [CLS] only, in training and in the in-training evaluation (the loss and the dev vectors read "
            "nothing else): same numbers, faster steps; false = the full last layer, as the original."
        },
    )
    attn_implementation: str | None = field(
        default=None, metadata={"help": "(ours) Attention kernel: sdpa (default when available), eager, ..."}
    )
    dropout: float | None = field(
        default=None,
        metadata={
            "help": "(ours) Dropout rate p of the encoder (config hidden_dropout_prob and "
            "attention_probs_dropout_prob) for training; default: the checkpoint's (0.1 for BERT/RoBERTa). "
            "Paper Table 3 varies it."
        },
    )
    # An ablation of the training forward (simcse.settings.RuntimeOptions.same_dropout_mask): not saved.
    same_dropout_mask: bool = field(
        default=RuntimeOptions.same_dropout_mask,
        metadata={
            "help": "(ours) Unsupervised ablation 'fixed 0.1' (paper Table 3): both views of a sentence share one "
            "dropout mask, i.e. each sentence is encoded once and that embedding is both z1 and z2 (the two views "
            "are identical). Needs 2 identical sentences per example."
        },
    )

    def __post_init__(self) -> None:
        self.simcse_settings()  # one ValueError naming the first bad value
        self.runtime_options()
        if self.dropout is not None and not 0.0 <= self.dropout < 1.0:
            raise ValueError(f"--dropout must be in [0, 1), got {self.dropout}")

    def simcse_settings(self) -> SimCSESettings:
        """The settings recorded in the checkpoint's config.json."""
        return SimCSESettings(**{key: getattr(self, key) for key in CONFIG_KEYS})

    def runtime_options(self) -> RuntimeOptions:
        """The speed options handed to the model when it is built."""
        return RuntimeOptions(
            length_buckets=self.length_buckets,
            cls_only_last_layer=self.cls_only_last_layer,
            attn_implementation=self.attn_implementation,
            same_dropout_mask=self.same_dropout_mask,
        )


@dataclass
class DataTrainingArguments:
    """The training file and how it is tokenised."""

    dataset_name: str | None = field(default=None, metadata={"help": "Unused (the original ignored it too)."})
    dataset_config_name: str | None = field(default=None, metadata={"help": "Unused."})
    overwrite_cache: bool = field(
        default=False, metadata={"help": "Rebuild the cached tokenised training set even if a complete one exists."}
    )
    validation_split_percentage: int | None = field(default=5, metadata={"help": "Unused."})
    preprocessing_num_workers: int | None = field(default=None, metadata={"help": "Processes for tokenisation."})
    train_file: str | None = field(
        default=None,
        metadata={"help": "A .txt (one sentence per line, unsupervised) or .csv/.tsv (2 or 3 columns) file."},
    )
    max_seq_length: int | None = field(
        default=32, metadata={"help": "Truncation length in tokens, special tokens included."}
    )
    pad_to_max_length: bool = field(default=False, metadata={"help": "Pad every sentence to max_seq_length."})
    mlm_probability: float = field(default=0.15, metadata={"help": "Masking rate of the MLM objective."})
    pad_to_multiple_of: int | None = field(
        default=None, metadata={"help": "(ours) Round the padded length up to a multiple (8 suits tensor cores)."}
    )
    data_cache_dir: str | None = field(
        default=None,
        metadata={
            "help": "(ours) Where the tokenised training set is cached (memory-mapped, reused while the file, "
            "tokenizer and settings are unchanged); default $HF_DATASETS_CACHE/simcse, else "
            "~/.cache/huggingface/datasets/simcse. (--cache_dir is the hub model cache.)"
        },
    )
    augmentation: str | None = field(
        default=None,
        metadata={
            "help": "(ours) Unsupervised data only: make the second view's text by an augmentation of the first "
            "(paper Table 1): crop:K (keep a random contiguous (1-K) of the words), word_deletion:K (delete K of the "
            "words), delete_one_word. Drawn once per sentence with --seed. Default: none (dropout only)."
        },
    )

    def __post_init__(self) -> None:
        # The original touched a non-existent `validation_file` here (an AttributeError); say what is wrong.
        if self.train_file is None:
            raise ValueError("--train_file is required (a .txt, .csv or .tsv file)")
        if not 0.0 <= self.mlm_probability <= 1.0:
            raise ValueError(f"--mlm_probability must be in [0, 1], got {self.mlm_probability}")
        if self.augmentation:
            from simcse.augment import parse_augmentation

            parse_augmentation(self.augmentation)  # a bad spec fails at parse time, not after loading the model


@dataclass
class OurTrainingArguments(TrainingArguments):
    """transformers' TrainingArguments plus the SimCSE evaluation options.

    Differences from plain transformers, each to keep the original's behaviour:
    ``--evaluation_strategy`` (the 4.x name) is accepted as an alias of ``--eval_strategy``;
    with ``--load_best_model_at_end`` the model is saved at every evaluation (``save_steps`` follows
    ``eval_steps``, as in transformers 4.2.1, and only the best and the latest checkpoints are kept
    unless ``--save_total_limit`` says otherwise); ``--fp16`` on a machine without CUDA falls back to
    fp32 with a warning instead of failing, so the example scripts also run on a CPU.
    """

    overwrite_output_dir: bool = field(
        default=False,
        metadata={"help": "Start afresh in an output_dir that holds another run (otherwise refused or resumed)."},
    )
    eval_transfer: bool = field(
        default=False, metadata={"help": "Also evaluate the 7 transfer tasks (dev, fast mode) at each evaluation."}
    )
    evaluation_strategy: str | None = field(
        default=None, metadata={"help": "Alias of --eval_strategy (the flag name used by the original scripts)."}
    )
    senteval_data_dir: str | None = field(
        default=None,
        metadata={"help": "(ours) SentEval data folder; default $SENTEVAL_DATA_DIR, else SentEval/data/downstream."},
    )
    eval_alignment_uniformity: bool = field(
        default=True, metadata={"help": "(ours) Log STS-B dev alignment and uniformity at each evaluation."}
    )
    plot_training: bool = field(
        default=True, metadata={"help": "(ours) Save alignment-uniformity and STS-B dev plots in output_dir."}
    )
    eval_file: str | None = field(
        default=None,
        metadata={
            "help": "(ours) Your own dev set, a .csv/.tsv with sentence1, sentence2, score: each evaluation logs the "
            "cosine Spearman on it as eval_file_spearman (usable as --metric_for_best_model file_spearman). "
            "Without SentEval data, it is the only in-training metric."
        },
    )
    no_duplicates: bool = field(
        default=False,
        metadata={
            "help": "(ours) Order each epoch so that no two examples of a step (B x W across the ranks) share a "
            "sentence (compared on token ids): no duplicate false negatives, e.g. an NLI premise with several "
            "hypotheses. Seeded (--data_seed, else --seed); the number of moved examples is logged. Off as in "
            "the paper."
        },
    )
    gradient_cache_batch_size: int = field(
        default=0,
        metadata={
            "help": "(ours) Gradient caching: embed each batch in chunks of this many examples without grad, then "
            "re-encode chunk by chunk with the cached loss gradient (same loss and gradients as the full batch, "
            "activation memory of one chunk; ~1 extra forward). 0 (default) = off. Not with --do_mlm."
        },
    )
    logging_nan_inf_filter: bool = field(
        default=False,
        metadata={
            "help": "transformers' per-step NaN filter of the logged loss; off by default because it syncs the GPU "
            "every step, and a NaN/inf loss stops SimCSE training anyway (NonFiniteLossError)."
        },
    )

    def __post_init__(self) -> None:
        # transformers turns do_eval on whenever an eval strategy is set; the final SentEval pass
        # (STS dev + 7 transfer tasks, minutes on a CPU) runs only when --do_eval was asked for.
        self.final_eval = bool(self.do_eval)
        if self.evaluation_strategy is not None:
            self.eval_strategy = self.evaluation_strategy
        if self.fp16 and not torch.cuda.is_available():
            logger.warning("--fp16 needs a CUDA GPU; none found, so this run uses fp32.")
            self.fp16 = False
        if self.bf16 and not (torch.cuda.is_available() and torch.cuda.is_bf16_supported()):
            logger.warning("--bf16 on this machine runs bf16 autocast on the CPU.")
            self.use_cpu = self.use_cpu or not torch.cuda.is_available()
        if self.load_best_model_at_end:
            # transformers 4.2.1 saved at every evaluation when keeping the best model.
            self.save_strategy = self.eval_strategy
            if self.eval_steps is not None:
                self.save_steps = self.eval_steps
            if self.save_total_limit is None:
                # The original kept one checkpoint (the best); transformers then keeps the best and the
                # latest (needed to resume), instead of one folder per evaluation.
                self.save_total_limit = 1
        if self.gradient_cache_batch_size < 0:
            raise ValueError(f"--gradient_cache_batch_size must be >= 0, got {self.gradient_cache_batch_size}")
        if self.report_to is None:
            self.report_to = "none"
        super().__post_init__()


def resolve_senteval_data_dir(explicit: str | None = None) -> str:
    """Data folder for SentEval (see ``simcse.environment.senteval_data_dir``)."""
    return str(senteval_data_dir(explicit))


__all__ = [
    "DataTrainingArguments",
    "ModelArguments",
    "OurTrainingArguments",
    "POOLER_TYPES",
    "TRAIN_POOLERS",
    "resolve_senteval_data_dir",
]
