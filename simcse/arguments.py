"""Command-line arguments of ``train.py``: three dataclasses parsed by ``HfArgumentParser``.

Flag names and defaults are the original's (SPEC 2.2-2.4), so existing SimCSE command lines keep
working; options added here are marked "(ours)" in their help text.
"""

from __future__ import annotations

import logging
import os
from dataclasses import dataclass, field

import torch
from transformers import TrainingArguments

from simcse.losses import SIMILARITIES
from simcse.poolers import POOLER_TYPES

logger = logging.getLogger(__name__)

# The poolers that can be trained (the legacy first-last variant exists only to evaluate baselines).
TRAIN_POOLERS = ("cls", "cls_before_pooler", "avg", "avg_top2", "avg_first_last")


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
    temp: float = field(default=0.05, metadata={"help": "Softmax temperature tau."})
    pooler_type: str = field(
        default="cls", metadata={"help": f"Sentence pooler used in training, one of {', '.join(TRAIN_POOLERS)}."}
    )
    hard_negative_weight: float = field(
        default=0.0, metadata={"help": "LOG of the weight of an anchor's own hard negative (0 = weight 1)."}
    )
    do_mlm: bool = field(default=False, metadata={"help": "Add the auxiliary masked-LM loss."})
    mlm_weight: float = field(default=0.1, metadata={"help": "Weight lambda of the MLM loss."})
    mlp_only_train: bool = field(
        default=False, metadata={"help": "Use the MLP in training only; embeddings are the raw [CLS] (unsup recipe)."}
    )
    gather_negatives: bool = field(
        default=True,
        metadata={"help": "(ours) Under DDP, use every rank's sentences as negatives, as the paper does."},
    )
    length_buckets: int = field(
        default=0,
        metadata={
            "help": "(ours) Encode each training batch as N length-sorted buckets, each padded to its own length: "
            "same loss, ~25% fewer positions on wiki data (4: 1.05-1.2x faster on CPU); 1 = one padded pass as the "
            "original; 0 (default) = 4 on the CPU, 1 on GPUs and under --torch_compile."
        },
    )
    cls_only_last_layer: bool = field(
        default=True,
        metadata={
            "help": "(ours) With a cls/cls_before_pooler pooler, run the last layer's query, output and feed-forward "
            "at [CLS] only in training (the loss reads nothing else): same loss, 1.1-1.2x faster steps; "
            "false = the full last layer, as the original."
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
    same_dropout_mask: bool = field(
        default=False,
        metadata={
            "help": "(ours) Unsupervised ablation 'fixed 0.1' (paper Table 3): both views of a sentence share one "
            "dropout mask, i.e. each sentence is encoded once and that embedding is both z1 and z2 (the two views "
            "are identical). Needs 2 identical sentences per example."
        },
    )
    similarity: str = field(
        default="cosine",
        metadata={
            "help": "(ours) Similarity in the contrastive loss: cosine (the paper's) or dot (dot product without "
            "normalisation, paper Table D.1; still divided by --temp, so use --temp 1 for the plain dot product)."
        },
    )

    def __post_init__(self) -> None:
        if self.pooler_type not in TRAIN_POOLERS:
            raise ValueError(f"--pooler_type {self.pooler_type!r} is not one of: {', '.join(TRAIN_POOLERS)}")
        if self.length_buckets < 0:
            raise ValueError(f"--length_buckets must be >= 0 (0 = automatic), got {self.length_buckets}")
        if self.temp <= 0:
            raise ValueError(f"--temp must be positive, got {self.temp}")
        if self.dropout is not None and not 0.0 <= self.dropout < 1.0:
            raise ValueError(f"--dropout must be in [0, 1), got {self.dropout}")
        if self.similarity not in SIMILARITIES:
            raise ValueError(f"--similarity {self.similarity!r} is not one of: {', '.join(SIMILARITIES)}")

    def simcse_settings(self) -> dict:
        """The settings recorded in the checkpoint's config.json."""
        return {
            "pooler_type": self.pooler_type,
            "temp": self.temp,
            "hard_negative_weight": self.hard_negative_weight,
            "do_mlm": self.do_mlm,
            "mlm_weight": self.mlm_weight,
            "mlp_only_train": self.mlp_only_train,
            "gather_negatives": self.gather_negatives,
            # Recorded only when not the default, so checkpoints of the paper's recipe keep their config.
            **({"similarity": self.similarity} if self.similarity != "cosine" else {}),
        }


@dataclass
class DataTrainingArguments:
    """The training file and how it is tokenised."""

    dataset_name: str | None = field(default=None, metadata={"help": "Unused (the original ignored it too)."})
    dataset_config_name: str | None = field(default=None, metadata={"help": "Unused."})
    overwrite_cache: bool = field(default=False, metadata={"help": "Unused: tokenisation is not cached on disk."})
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
        if self.report_to is None:
            self.report_to = "none"
        super().__post_init__()


def resolve_senteval_data_dir(explicit: str | None = None) -> str:
    """Data folder for SentEval: explicit > $SENTEVAL_DATA_DIR > <repo>/SentEval/data/downstream."""
    if explicit:
        return explicit
    env = os.environ.get("SENTEVAL_DATA_DIR")
    if env:
        return env
    return os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), "SentEval", "data", "downstream")


__all__ = [
    "DataTrainingArguments",
    "ModelArguments",
    "OurTrainingArguments",
    "POOLER_TYPES",
    "TRAIN_POOLERS",
    "resolve_senteval_data_dir",
]
