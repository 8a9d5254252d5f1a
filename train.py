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
import time
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
from simcse.cli_errors import debug_enabled, one_line_errors
from simcse.data import DataFormatError, SimCSECollator, check_training_file
from simcse.data_cache import TrainingCacheError, load_cached_training_dataset
from simcse.eval_file import read_scored_pairs
from simcse.families import dropout_fields
from simcse.grad_cache import MLM_REFUSAL
from simcse.interrupt import (
    SaveFailedError,
    StopOnSignal,
    TrainingInterrupted,
    is_write_error,
    last_checkpoint_note,
    resume_command,
    write_error_detail,
)
from simcse.load_errors import ModelLoadError, check_model_source, translate_load_errors
from simcse.models import UnsupportedModelError, check_model_weights, load_cl_model, model_class_for
from simcse.no_duplicates import NoDuplicatesBatchError
from simcse.run_state import (
    CheckpointCompletionCallback,
    OutputDirError,
    mark_run_complete,
    prepare_output_dir,
    run_record,
    write_run_record,
)
from simcse.senteval_files import missing_file
from simcse.trainer import CLTrainer, NonFiniteLossError

logger = logging.getLogger("simcse.train")


class ArgumentsError(ValueError):
    """An argument value the dataclasses' checks rejected (e.g. ``--pooler_type max``)."""


# Errors that are the user's input, reported as one line by the CLI.
USER_ERRORS = (
    ArgumentsError,
    DataFormatError,
    UnsupportedModelError,
    ModelLoadError,
    OutputDirError,
    NonFiniteLossError,
    SaveFailedError,
    TrainingCacheError,
    NoDuplicatesBatchError,
    FileNotFoundError,
)


class StoppedAtOnce(KeyboardInterrupt):
    """A second Ctrl-C: training stopped at once, without a checkpoint of its own."""

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


def check_senteval_data(data_dir: str, transfer: bool = False) -> None:
    """Fail before training, not at the first evaluation (original issue #58) nor, for the transfer tasks of
    ``--eval_transfer`` / the final ``--do_eval``, after training: every file those evaluations read."""
    from simcse.evaluation import DEV_STS, TRANSFER_TASKS

    path = missing_file(data_dir, DEV_STS + (TRANSFER_TASKS if transfer else ()), splits=("dev",))
    if path is not None:
        raise FileNotFoundError(
            f"{path}: SentEval data not found (run SentEval/data/downstream/download_dataset.sh, "
            "or point --senteval_data_dir / SENTEVAL_DATA_DIR at a downstream folder)"
        )


# --metric_for_best_model values that need no SentEval metric (transformers' default "loss" included).
SENTEVAL_FREE_METRICS = (None, "loss", "eval_loss", "file_spearman", "eval_file_spearman")


def uses_senteval(training_args: OurTrainingArguments, has_eval_file: bool, data_dir: str) -> bool:
    """Whether this run's evaluations read SentEval data (then it must be there before any work).

    Without ``--eval_file`` any evaluation does (STS-B/SICK-R dev). With it, the in-training evaluation reads
    SentEval only when the data is there or the best-model metric or ``--eval_transfer``/``--do_eval`` needs it:
    a user's own dev set needs no SentEval download."""
    evaluates = training_args.eval_strategy != "no"
    if training_args.final_eval or (evaluates and not has_eval_file):
        return True
    if not evaluates:
        return False
    from simcse.evaluation import DEV_STS

    if training_args.eval_transfer or training_args.metric_for_best_model not in SENTEVAL_FREE_METRICS:
        return True
    if missing_file(data_dir, DEV_STS, splits=("dev",)) is None:
        return True
    logger.info("no SentEval data at %s: evaluating on --eval_file only", data_dir)
    return False


def check_model_sources(model_args: ModelArguments) -> None:
    """Model, config and tokenizer sources exist (or are cached) before any work; weights are checked after
    the model type, so an unsupported type is reported as such."""
    kwargs = {"cache_dir": model_args.cache_dir, "revision": model_args.model_revision, "weights": False}
    check_model_source(model_args.model_name_or_path, **kwargs)
    for other in (model_args.config_name, model_args.tokenizer_name):
        if other:
            check_model_source(other, **kwargs)


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
    for field in dropout_fields(config.model_type):  # each family's own names (simcse.families)
        setattr(config, field, dropout)


def check_launch(
    model_args: ModelArguments, data_args: DataTrainingArguments, training_args: OurTrainingArguments
) -> None:
    """Log the device set-up; refuse set-ups that would train the wrong thing."""
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
    if training_args.gradient_cache_batch_size and model_args.do_mlm:
        raise ArgumentsError(MLM_REFUSAL)
    if training_args.do_train:
        check_training_file(data_args.train_file)


def hub_kwargs(model_args: ModelArguments) -> dict:
    """Where and how ``from_pretrained`` fetches hub files."""
    return {
        "cache_dir": model_args.cache_dir,
        "revision": model_args.model_revision,
        "token": True if model_args.use_auth_token else None,
    }


def load_config_and_tokenizer(model_args: ModelArguments):
    """The base config and tokenizer; a bad source, an unsupported model type or a folder without weights
    fails here (one line, simcse/load_errors.py), before the training file is tokenised."""
    config_source = model_args.config_name or model_args.model_name_or_path
    with translate_load_errors(config_source, cache_dir=model_args.cache_dir, part="config"):
        config = AutoConfig.from_pretrained(config_source, **hub_kwargs(model_args))
    model_class_for(config, model_args.model_name_or_path)  # unsupported types fail before any work
    apply_dropout(config, model_args.dropout)
    check_model_weights(model_args.model_name_or_path)
    tokenizer_source = model_args.tokenizer_name or model_args.model_name_or_path
    with translate_load_errors(tokenizer_source, cache_dir=model_args.cache_dir, part="tokenizer"):
        tokenizer = AutoTokenizer.from_pretrained(
            tokenizer_source, use_fast=model_args.use_fast_tokenizer, **hub_kwargs(model_args)
        )
    return config, tokenizer


def load_training_data(data_args: DataTrainingArguments, training_args: OurTrainingArguments, tokenizer):
    """The tokenised training set, memory-mapped from its cache (built on the first run; simcse/data_cache.py).

    No barrier here: one process per cache builds it (a file lock), the others wait for it without a
    collective, so a long first build cannot hit the DDP timeout, and a stalled one ends well before it."""
    data_started = time.perf_counter()
    train_dataset, summary = load_cached_training_dataset(
        data_args.train_file,
        tokenizer,
        max_seq_length=data_args.max_seq_length,
        pad_to_max_length=data_args.pad_to_max_length,
        num_proc=data_args.preprocessing_num_workers,
        cache_root=data_args.data_cache_dir,
        overwrite=data_args.overwrite_cache,
        is_local_main=training_args.local_process_index == 0,
        stall_timeout=min(300.0, 0.5 * training_args.ddp_timeout),
        augmentation=data_args.augmentation,
        augmentation_seed=training_args.seed,
    )
    logger.info("data phase: %.2f s", time.perf_counter() - data_started)
    return train_dataset, summary


def build_model(model_args: ModelArguments, config, tokenizer) -> torch.nn.Module:
    """The SimCSE head with the run's settings and speed options (fixed when it is built)."""
    model = load_cl_model(
        model_args.model_name_or_path,
        config=config,
        simcse_settings=model_args.simcse_settings(),
        runtime=model_args.runtime_options(),
        mlm_head_from_checkpoint=model_args.mlm_head_from_checkpoint,
        **hub_kwargs(model_args),
    )
    if len(tokenizer) > model.get_input_embeddings().num_embeddings:
        model.resize_token_embeddings(len(tokenizer))
    return model


def alignment_uniformity_metrics(training_args: OurTrainingArguments):
    """The extra per-evaluation metrics function (STS-B dev alignment and uniformity), or None."""
    if not training_args.eval_alignment_uniformity:
        return None
    from simcse.analysis import stsb_alignment_uniformity

    def extra_metrics(embed, folder):
        found = stsb_alignment_uniformity(embed, folder, split="dev")
        return {"align": found["align"], "uniform": found["uniform"]}

    return extra_metrics


def build_trainer(
    model, tokenizer, train_dataset, model_args, data_args, training_args, data_dir, stop: StopOnSignal,
    eval_pairs=None, use_senteval: bool = True,
) -> CLTrainer:
    from simcse.evaluation import dev_metrics  # imported late: SentEval is only needed to evaluate

    collator = SimCSECollator(
        tokenizer,
        do_mlm=model_args.do_mlm,
        mlm_probability=data_args.mlm_probability,
        pad_to_multiple_of=data_args.pad_to_multiple_of,
    )
    return CLTrainer(
        model=model,
        args=training_args,
        train_dataset=train_dataset,
        # Trainer insists on an eval_dataset when evaluating; ours reads SentEval instead.
        eval_dataset=[{"unused": 0}] if training_args.eval_strategy != "no" else None,
        processing_class=tokenizer,
        data_collator=collator,
        senteval_data_dir=data_dir,
        dev_metrics_fn=dev_metrics if use_senteval else None,
        extra_metrics_fn=alignment_uniformity_metrics(training_args) if use_senteval else None,
        eval_pairs=eval_pairs,
        callbacks=[CheckpointCompletionCallback(), stop],
    )


def train_and_save(
    trainer: CLTrainer, stop: StopOnSignal, resume_from, argv: list[str], num_examples: int, model_args, data_args
) -> dict[str, float]:
    """Train, save the model (the best one with --load_best_model_at_end) and write the result files.

    A signal stops at the next step boundary with a complete checkpoint (:class:`TrainingInterrupted`); a
    second Ctrl-C stops at once; a failed write says which checkpoint is intact (docs/RELIABILITY.md)."""
    training_args = trainer.args
    command = resume_command(argv, _launcher(training_args))
    try:
        train_result = _train_until_signal(trainer, stop, resume_from, command)
        trainer.save_model()  # the best model when --load_best_model_at_end, else the last one
        train_metrics = dict(train_result.metrics, train_examples=num_examples)
        trainer.log_metrics("train", train_metrics)
        trainer.save_metrics("train", train_metrics)
        trainer.save_state()
        if trainer.is_world_process_zero():
            _write_sorted(Path(training_args.output_dir) / "train_results.txt", train_metrics)
            finalize(training_args.output_dir, model_args, data_args, trainer)
            mark_run_complete(training_args.output_dir)
    except Exception as err:  # safetensors and torch.save report a failed write as their own types
        if isinstance(err, USER_ERRORS) or not is_write_error(err):
            raise
        raise SaveFailedError(
            f"writing to {training_args.output_dir} failed ({write_error_detail(err)}): is the disk full? "
            f"{last_checkpoint_note(training_args.output_dir)} (a partial checkpoint is never resumed from); "
            f"free space, then resume with: {command}"
        ) from err
    return train_metrics


def _train_until_signal(trainer: CLTrainer, stop: StopOnSignal, resume_from, command: str):
    """``trainer.train`` with the signal handlers installed (restored on exit: tests and studies call main())."""
    installed = stop.install()
    try:
        train_result = trainer.train(resume_from_checkpoint=resume_from)
    except KeyboardInterrupt:
        raise StoppedAtOnce(
            f"interrupted again: stopped at once; {last_checkpoint_note(trainer.args.output_dir)}; "
            f"resume with: {command}"
        ) from None
    finally:
        if installed:
            stop.restore()
    if stop.signum:
        raise TrainingInterrupted(
            stop.signum, trainer.state.global_step, _last_checkpoint(trainer.args.output_dir), command
        )
    return train_result


def final_evaluation(trainer: CLTrainer) -> dict[str, float]:
    """--do_eval: STS dev and the 7 transfer tasks (dev, fast mode) on the final model."""
    eval_metrics = trainer.evaluate(eval_senteval_transfer=True)
    trainer.log_metrics("eval", eval_metrics)
    trainer.save_metrics("eval", eval_metrics)
    if trainer.is_world_process_zero():
        _write_sorted(Path(trainer.args.output_dir) / "eval_results.txt", eval_metrics)
    return eval_metrics


def main(argv: list[str] | None = None) -> dict[str, float]:
    """Train (and with ``--do_eval`` evaluate) as the command line ``argv`` says; returns the metrics."""
    argv = sys.argv[1:] if argv is None else list(argv)
    model_args, data_args, training_args = parse_args(argv)
    setup_logging(training_args)
    check_launch(model_args, data_args, training_args)
    eval_pairs = read_scored_pairs(training_args.eval_file) if training_args.eval_file else None  # before any work

    record = run_record(model_args, data_args, training_args, argv=["train.py", *argv])
    resume_from = prepare_output_dir(record, training_args, is_main=training_args.process_index == 0)
    data_dir = resolve_senteval_data_dir(training_args.senteval_data_dir)
    use_senteval = uses_senteval(training_args, eval_pairs is not None, data_dir)
    if use_senteval:
        check_senteval_data(data_dir, transfer=training_args.final_eval or training_args.eval_transfer)
    check_model_sources(model_args)

    configure_compile(training_args, data_args.pad_to_max_length)
    set_seed(training_args.seed)
    config, tokenizer = load_config_and_tokenizer(model_args)
    train_dataset, summary = load_training_data(data_args, training_args, tokenizer)
    model = build_model(model_args, config, tokenizer)
    if training_args.process_index == 0:
        record["simcse_heads"] = model.simcse_heads  # what the MLP and the MLM head started from
        write_run_record(training_args.output_dir, record)
    stop = StopOnSignal()  # Ctrl-C / SIGTERM: save and stop at the next step boundary (simcse/interrupt.py)
    trainer = build_trainer(
        model, tokenizer, train_dataset, model_args, data_args, training_args, data_dir, stop,
        eval_pairs=eval_pairs, use_senteval=use_senteval,
    )  # fmt: skip

    results: dict[str, float] = {}
    if training_args.do_train:
        results.update(train_and_save(trainer, stop, resume_from, argv, summary.num_examples, model_args, data_args))
    if training_args.final_eval:
        results.update(final_evaluation(trainer))
    return results


def _launcher(training_args: OurTrainingArguments) -> list[str]:
    """How this run was started, for the resume command (``torchrun`` under DDP)."""
    if training_args.world_size > 1:
        return ["torchrun", f"--nproc_per_node={training_args.world_size}", "train.py"]
    return ["python", "train.py"]


def _last_checkpoint(output_dir: str) -> str | None:
    from simcse.run_state import last_complete_checkpoint

    last = last_complete_checkpoint(output_dir)
    return str(last) if last else None


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
    """``python train.py``: user errors are one ``error:`` line and exit 2; a signal stops at the next step
    with a complete checkpoint and exits 128 + the signal (130 for Ctrl-C, 143 for SIGTERM)."""
    try:
        with one_line_errors(USER_ERRORS):
            main()
    except TrainingInterrupted as stopped:
        if os.environ.get("RANK", "0") == "0":  # under torchrun every rank stops; one prints
            print(f"{stopped}\nresume with: {stopped.command}", file=sys.stderr)
        sys.exit(stopped.exit_code)
    except KeyboardInterrupt as err:
        if debug_enabled():
            raise
        print(str(err) or "interrupted", file=sys.stderr)
        sys.exit(130)


if __name__ == "__main__":
    cli()
