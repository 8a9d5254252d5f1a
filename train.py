"""Train SimCSE (unsupervised or supervised) with the original command-line flags.

    python train.py --model_name_or_path bert-base-uncased --train_file data/wiki1m_for_simcse.txt \
        --output_dir result/my-unsup-simcse --pooler_type cls --mlp_only_train ...
    torchrun --nproc_per_node 4 train.py ...   # DDP: negatives are gathered across the ranks

A ``.txt`` file trains unsupervised SimCSE (each line is its own positive, the two views differ only
by dropout); a ``.csv`` with 2 columns trains on pairs, with 3 columns on pairs plus hard negatives.
The finished ``output_dir`` loads with ``AutoModel``, ``SentenceTransformer`` and ``simcse.SimCSE``.
"""

from __future__ import annotations

import json
import logging
import os
import sys
from pathlib import Path

import torch
import transformers
from transformers import AutoConfig, AutoTokenizer, HfArgumentParser, set_seed

from simcse.arguments import (
    DataTrainingArguments,
    ModelArguments,
    OurTrainingArguments,
    resolve_senteval_data_dir,
)
from simcse.data import DataFormatError, SimCSECollator, load_training_dataset
from simcse.models import UnsupportedModelError, check_model_weights, load_cl_model, model_class_for
from simcse.run_state import (
    CheckpointCompletionCallback,
    OutputDirError,
    prepare_output_dir,
    run_record,
    write_run_record,
)
from simcse.trainer import CLTrainer, NonFiniteLossError

logger = logging.getLogger("simcse.train")


class ArgumentsError(ValueError):
    """An argument value the dataclasses' checks rejected (e.g. ``--pooler_type max``)."""


# Errors that are the user's input, reported as one line by the CLI.
USER_ERRORS = (
    ArgumentsError,
    DataFormatError,
    UnsupportedModelError,
    OutputDirError,
    NonFiniteLossError,
    FileNotFoundError,
)

def parse_args(argv: list[str] | None) -> tuple[ModelArguments, DataTrainingArguments, OurTrainingArguments]:
    """Parse the flags; a value rejected by a ``__post_init__`` check becomes a one-line :class:`ArgumentsError`."""
    parser = HfArgumentParser((ModelArguments, DataTrainingArguments, OurTrainingArguments))
    argv = sys.argv[1:] if argv is None else argv
    try:
        if len(argv) == 1 and argv[0].endswith(".json"):
            return parser.parse_json_file(json_file=os.path.abspath(argv[0]))
        return parser.parse_args_into_dataclasses(args=argv)
    except ValueError as err:
        raise ArgumentsError(str(err)) from err


def setup_logging(training_args: OurTrainingArguments) -> None:
    """INFO on the main process, WARNING elsewhere (only the CLI configures logging)."""
    level = logging.INFO if training_args.should_log else logging.WARNING
    logging.basicConfig(
        format="%(asctime)s - %(levelname)s - %(name)s - %(message)s", datefmt="%m/%d/%Y %H:%M:%S", level=level
    )
    transformers.utils.logging.set_verbosity(level)


def check_senteval_data(data_dir: str) -> None:
    """Fail before training, not at the first evaluation (original issue #58)."""
    needed = [Path(data_dir) / "STS" / "STSBenchmark" / "sts-dev.csv", Path(data_dir) / "SICK" / "SICK_trial.txt"]
    for path in needed:
        if not path.is_file():
            raise FileNotFoundError(
                f"{path}: SentEval data not found (run SentEval/data/downstream/download_dataset.sh, "
                "or point --senteval_data_dir / SENTEVAL_DATA_DIR at a downstream folder)"
            )


def _write_sorted(path: Path, metrics: dict) -> None:
    """The original's ``key = value`` result files, sorted by key."""
    with open(path, "w", encoding="utf-8") as fh:
        for key in sorted(metrics):
            fh.write(f"{key} = {metrics[key]}\n")


def configure_compile(training_args: OurTrainingArguments, static_shapes: bool) -> None:
    """Shape policy for ``--torch_compile`` (transformers' flag; compilation itself is transformers').

    With ``--pad_to_max_length`` every batch is (B, 2, max_seq_length) except an epoch's last, smaller one.
    By default dynamo would answer that second shape by recompiling the model for *dynamic* shapes and
    use those slower kernels for the rest of the run (measured on an H200 at batch 64: 4,900 -> 3,900
    sentences/s after the first epoch boundary). Switching automatic dynamic shapes off compiles the odd
    batch once, statically, and keeps the full-batch graph. Without static padding every batch length
    differs, dynamic shapes are the right choice, and we only advise.
    """
    if not training_args.torch_compile:
        return
    if static_shapes:
        torch._dynamo.config.automatic_dynamic_shapes = False
    else:
        logger.warning(
            "--torch_compile without --pad_to_max_length: batch shapes vary, so the model is compiled for dynamic "
            "shapes (and CUDA graphs, with --torch_compile_mode reduce-overhead, are recorded per shape); "
            "add --pad_to_max_length for the fastest compiled training"
        )


def apply_dropout(config, dropout: float | None) -> None:
    """``--dropout p``: the encoder's hidden and attention dropout (paper Table 3); None keeps the checkpoint's."""
    if dropout is None:
        return
    config.hidden_dropout_prob = dropout
    config.attention_probs_dropout_prob = dropout


def main(argv: list[str] | None = None) -> dict[str, float]:
    """Train (and with ``--do_eval`` evaluate) as the command line ``argv`` says; returns the metrics."""
    argv = sys.argv[1:] if argv is None else list(argv)
    model_args, data_args, training_args = parse_args(argv)
    setup_logging(training_args)
    logger.warning(
        "device: %s, n_gpu: %s, distributed: %s, fp16: %s, bf16: %s",
        training_args.device,
        training_args.n_gpu,
        training_args.parallel_mode.value,
        training_args.fp16,
        training_args.bf16,
    )
    if training_args.n_gpu > 1:
        raise ValueError(
            "several GPUs are visible to one process (nn.DataParallel): negatives would not be gathered. "
            "Launch with `torchrun --nproc_per_node N train.py ...` or set CUDA_VISIBLE_DEVICES"
        )
    if model_args.model_name_or_path is None:
        raise ArgumentsError("--model_name_or_path is required")

    record = run_record(model_args, data_args, training_args, argv=["train.py", *argv])
    resume_from = prepare_output_dir(record, training_args, is_main=training_args.process_index == 0)
    evaluating = training_args.eval_strategy != "no" or training_args.final_eval
    data_dir = resolve_senteval_data_dir(training_args.senteval_data_dir)
    if evaluating:
        check_senteval_data(data_dir)

    configure_compile(training_args, data_args.pad_to_max_length)
    set_seed(training_args.seed)
    hub_kwargs = {
        "cache_dir": model_args.cache_dir,
        "revision": model_args.model_revision,
        "token": True if model_args.use_auth_token else None,
    }
    config = AutoConfig.from_pretrained(model_args.config_name or model_args.model_name_or_path, **hub_kwargs)
    model_class_for(config, model_args.model_name_or_path)  # unsupported types fail before any work
    apply_dropout(config, model_args.dropout)
    check_model_weights(model_args.model_name_or_path)
    tokenizer = AutoTokenizer.from_pretrained(
        model_args.tokenizer_name or model_args.model_name_or_path,
        use_fast=model_args.use_fast_tokenizer,
        **hub_kwargs,
    )

    with training_args.main_process_first(desc="tokenising the training file"):
        train_dataset, summary = load_training_dataset(
            data_args.train_file,
            tokenizer,
            max_seq_length=data_args.max_seq_length,
            pad_to_max_length=data_args.pad_to_max_length,
            num_proc=data_args.preprocessing_num_workers,
            augmentation=data_args.augmentation,
            augmentation_seed=training_args.seed,
        )

    extra = {"attn_implementation": model_args.attn_implementation} if model_args.attn_implementation else {}
    model = load_cl_model(
        model_args.model_name_or_path,
        config=config,
        simcse_settings=model_args.simcse_settings(),
        **hub_kwargs,
        **extra,
    )
    model.length_buckets = model_args.length_buckets
    model.cls_only_last_layer = model_args.cls_only_last_layer
    model.same_dropout_mask = model_args.same_dropout_mask
    if len(tokenizer) > model.get_input_embeddings().num_embeddings:
        model.resize_token_embeddings(len(tokenizer))

    collator = SimCSECollator(
        tokenizer,
        do_mlm=model_args.do_mlm,
        mlm_probability=data_args.mlm_probability,
        pad_to_multiple_of=data_args.pad_to_multiple_of,
    )

    from simcse.evaluation import dev_metrics  # imported late: SentEval is only needed to evaluate

    extra_metrics = None
    if training_args.eval_alignment_uniformity:
        from simcse.analysis import stsb_alignment_uniformity

        def extra_metrics(embed, folder):
            found = stsb_alignment_uniformity(embed, folder, split="dev")
            return {"align": found["align"], "uniform": found["uniform"]}

    if training_args.process_index == 0:
        write_run_record(training_args.output_dir, record)
    trainer = CLTrainer(
        model=model,
        args=training_args,
        train_dataset=train_dataset,
        # Trainer insists on an eval_dataset when evaluating; ours reads SentEval instead.
        eval_dataset=[{"unused": 0}] if training_args.eval_strategy != "no" else None,
        processing_class=tokenizer,
        data_collator=collator,
        senteval_data_dir=data_dir,
        dev_metrics_fn=dev_metrics,
        extra_metrics_fn=extra_metrics,
        callbacks=[CheckpointCompletionCallback()],
    )

    results: dict[str, float] = {}
    if training_args.do_train:
        train_result = trainer.train(resume_from_checkpoint=resume_from)
        trainer.save_model()  # the best model when --load_best_model_at_end, else the last one
        train_metrics = dict(train_result.metrics, train_examples=summary.num_examples)
        trainer.log_metrics("train", train_metrics)
        trainer.save_metrics("train", train_metrics)
        trainer.save_state()
        if trainer.is_world_process_zero():
            _write_sorted(Path(training_args.output_dir) / "train_results.txt", train_metrics)
            finalize(training_args.output_dir, model_args, data_args, trainer)
        results.update(train_metrics)

    if training_args.final_eval:
        eval_metrics = trainer.evaluate(eval_senteval_transfer=True)
        trainer.log_metrics("eval", eval_metrics)
        trainer.save_metrics("eval", eval_metrics)
        if trainer.is_world_process_zero():
            _write_sorted(Path(training_args.output_dir) / "eval_results.txt", eval_metrics)
        results.update(eval_metrics)
    return results


def finalize(
    output_dir: str, model_args: ModelArguments, data_args: DataTrainingArguments, trainer: CLTrainer
) -> None:
    """Turn ``output_dir`` into the inference format and draw the training plots."""
    from simcse.export import finalize_output_dir

    report = finalize_output_dir(
        output_dir,
        trainer.model.config,
        base_model=model_args.model_name_or_path,
        max_seq_length=data_args.max_seq_length,
    )
    logger.info("%s", report.summary())
    args = trainer.args
    if getattr(args, "plot_training", False) and any("eval_stsb_spearman" in e for e in trainer.state.log_history):
        from simcse.analysis import plot_training

        plot_training(trainer.state.log_history, output_dir)
    with open(Path(output_dir) / "log_history.json", "w", encoding="utf-8") as fh:
        json.dump(trainer.state.log_history, fh, indent=1)


def cli() -> None:
    try:
        main()
    except USER_ERRORS as err:
        print(f"error: {err}", file=sys.stderr)
        sys.exit(2)


if __name__ == "__main__":
    cli()
