"""Evaluate a sentence encoder with SentEval as the original ``evaluation.py`` (docs/FAITHFULNESS.md, "evaluation.py").

Example: ``python evaluation.py --model_name_or_path princeton-nlp/sup-simcse-bert-base-uncased
--pooler cls --task_set sts --mode test``. Bad data prints one ``error: FILE:LINE: problem`` line and
exits with status 2.
"""

from __future__ import annotations

import argparse
import json
import logging
import sys
from collections.abc import Sequence

from simcse import evaluation as ev
from simcse.cli_errors import one_line_errors
from simcse.load_errors import ModelLoadError
from simcse.poolers import POOLER_TYPES, eval_pooler_from_config
from simcse.senteval_files import missing_file, splits_for_mode
from simcse.settings import RuntimeOptions


def _bool(text: str) -> bool:
    """true/false as train.py's flags spell them (HfArgumentParser's string_to_bool)."""
    from transformers.hf_argparser import string_to_bool

    return string_to_bool(text)


def build_parser() -> argparse.ArgumentParser:
    """The original arguments plus data/device/batching/output options.

    Extra analyses (e.g. --alignment_uniformity) add their own flags here and their results to
    ``run()``'s ``extra`` dict.
    """
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--model_name_or_path", required=True, help="HF-format checkpoint (folder or hub id)")
    p.add_argument("--pooler", choices=POOLER_TYPES, default=None,
                   help="default: the checkpoint's own config (SimCSE-trained), else 'cls' as the original")
    p.add_argument("--mode", choices=ev.MODES, default="test",
                   help="test: full classifiers, test numbers; dev: fast classifiers, dev numbers; "
                        "fasttest: fast classifiers, test numbers")
    p.add_argument("--task_set", choices=("sts", "transfer", "full", "na"), default="sts",
                   help="overrides --tasks unless 'na'")
    p.add_argument("--tasks", nargs="+", default=list(ev.DEFAULT_TASKS))
    p.add_argument("--data_dir", default=None,
                   help="SentEval downstream folder (default: $SENTEVAL_DATA_DIR or SentEval/data/downstream)")
    p.add_argument("--batch_size", type=int, default=128)
    p.add_argument("--cls_only_last_layer", type=_bool, default=RuntimeOptions.cls_only_last_layer,
                   help="(ours) with a cls/cls_before_pooler pooler, run the last layer at [CLS] only (the same "
                        "vectors up to float rounding, less work); false = the full last layer, as the original")
    p.add_argument("--max_seq_length", type=int, default=None, help="truncate longer inputs (default: model max)")
    p.add_argument("--device", default=None, help="default: cuda:0 if available, else cpu")
    p.add_argument("--output_json", default=None, help="write machine-readable results to this path")
    p.add_argument("--no_progress", action="store_true", help="hide the per-task progress bars")
    p.add_argument("--classifier_optim", default=None,
                   help="override the transfer classifier's optimizer; 'lbfgs' trains a converged L2 logistic "
                        "regression (deterministic, lower variance than the early-stopped mini-batch classifier; "
                        "numbers then differ from the paper's protocol). Default: the mode's optimizer (adam for "
                        "test, rmsprop for dev/fasttest)")
    p.add_argument("--alignment_uniformity", action="store_true",
                   help="also report the paper's alignment (STS-B pairs scored > 4) and uniformity (all STS-B "
                        "sentences) on the STS-B split of the mode (test, or dev in dev mode)")
    return p


class UsageError(ValueError):
    """A flag value that cannot work (unknown task, optimizer); printed as one error line."""


def run(args: argparse.Namespace) -> dict:
    """Evaluate and print the tables; returns the JSON-ready report."""
    import senteval
    from senteval.utils import DataError

    data_dir = ev.resolve_data_dir(args.data_dir)
    tasks = list(ev.TASK_SETS[args.task_set]) if args.task_set != "na" else list(args.tasks)
    unknown = [t for t in tasks if t not in senteval.TASKS]
    if unknown:
        raise UsageError(f"--tasks: unknown task(s) {', '.join(unknown)}; available: {', '.join(senteval.TASKS)}")
    if args.classifier_optim is not None:  # fail before loading the model, not at the first transfer task
        from senteval.tools.classifier import parse_optim

        try:
            parse_optim(args.classifier_optim)
        except ValueError as err:
            raise UsageError(f"--classifier_optim: {err}") from None
    needed = [*tasks, "STSBenchmark"] if args.alignment_uniformity else tasks
    missing = missing_file(data_dir, needed, splits_for_mode(args.mode))  # before the model is loaded
    if missing is not None:
        raise DataError(missing, "SentEval data file not found (the data folder is incomplete); run "
                        "SentEval/data/downstream/download_dataset.sh or pass --data_dir / set SENTEVAL_DATA_DIR")
    device = args.device or ev.default_device()
    model, tokenizer = ev.load_encoder(args.model_name_or_path, device)
    pooler = args.pooler or eval_pooler_from_config(model.config) or "cls"
    warning = ev.cls_pooler_warning(model, pooler)
    if warning:
        print(warning, file=sys.stderr)
    embed = ev.make_embed_fn(model, tokenizer, pooler, device, args.max_seq_length, args.batch_size,
                             args.cls_only_last_layer)
    results = ev.run_senteval(embed, tasks, args.mode, data_dir, args.batch_size, device,
                              progress=not args.no_progress, classifier_optim=args.classifier_optim)
    print(ev.format_tables(results, args.mode, tasks))
    extra: dict = {}
    if args.alignment_uniformity:
        from simcse.analysis import stsb_alignment_uniformity

        split = "dev" if args.mode == "dev" else "test"
        found = stsb_alignment_uniformity(embed, data_dir, split=split)
        extra["alignment_uniformity"] = {"split": split, **found}
        print(f"alignment (STS-B {split}, {int(found['num_pairs'])} pairs > 4.0): {found['align']:.4f}   "
              f"uniformity ({int(found['num_sentences'])} sentences): {found['uniform']:.4f}")
    return {
        "model": str(args.model_name_or_path),
        "pooler": pooler,
        "mode": args.mode,
        "classifier_optim": args.classifier_optim,
        "tasks": tasks,
        "data_dir": str(data_dir),
        "table": ev.table_values(results, args.mode),
        "results": ev.to_jsonable(results),
        "extra": extra,
        "versions": ev.versions(),
    }


def main(argv: Sequence[str] | None = None) -> int:
    from senteval.utils import DataError

    args = build_parser().parse_args(argv)
    logging.basicConfig(format="%(asctime)s : %(message)s", level=logging.WARNING)
    with one_line_errors((DataError, FileNotFoundError, ModelLoadError, UsageError)):
        report = run(args)
    if args.output_json:
        with open(args.output_json, "w", encoding="utf-8") as f:
            json.dump(report, f, indent=2)
    return 0


if __name__ == "__main__":
    sys.exit(main())
