"""Upgrade a SimCSE checkpoint folder, in place, to the HF + sentence-transformers format.

    python simcse_to_huggingface.py --path result/my-sup-simcse-bert-base-uncased [--pooler cls]

Accepts original SimCSE checkpoints (``pytorch_model.bin`` with ``mlp.*``), our trainer's checkpoint-N
folders (``model.safetensors`` with ``bert.pooler.*``) and already-converted folders (no-op). See
``simcse/convert.py`` for the formats, ``simcse/export.py`` for the sentence-transformers files and model card,
``docs/FAITHFULNESS.md`` ("Checkpoint conversion") for the behaviour, ``docs/USING.md`` for using the result.
"""

from __future__ import annotations

import argparse
import logging
import sys
from collections.abc import Sequence
from pathlib import Path

from simcse.cli_errors import debug_enabled
from simcse.export import ExportError, already_exported, export_folder
from simcse.load_errors import ModelLoadError, translate_load_errors
from simcse.poolers import POOLER_TYPES


def parse_args(argv: Sequence[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--path", required=True, help="checkpoint folder to convert in place")
    parser.add_argument(
        "--pooler",
        choices=POOLER_TYPES,
        default=None,
        help="pooler to use the model with (recorded in config.json); default: what config.json records",
    )
    parser.add_argument(
        "--no_sentence_transformers",
        action="store_true",
        help="only convert the HF weights/config; write no sentence-transformers files",
    )
    parser.add_argument("--max_seq_length", type=int, default=128, help="truncation length for sentence-transformers")
    parser.add_argument(
        "--drop_mlm_head", action="store_true", help="drop MLM head tensors (kept by default; AutoModel ignores them)"
    )
    return parser.parse_args(argv)


def check_checkpoint_folder(path: str) -> None:
    """The folder must exist and hold config.json and weights; say which is missing before touching it."""
    folder = Path(path)
    if not folder.is_dir():
        what = "is a file, not a checkpoint folder" if folder.exists() else "checkpoint folder not found"
        raise ExportError(f"{folder}: {what}; pass the folder that holds config.json and the weights (--path)")
    if not (folder / "config.json").is_file():
        raise ExportError(f"{folder}: not a checkpoint (no config.json); pass a folder that train.py or SimCSE wrote")


def main(argv: Sequence[str] | None = None) -> int:
    """Convert; print what was done; return 0, or 2 with one error line for an unusable folder
    (``SIMCSE_DEBUG=1`` shows the traceback)."""
    args = parse_args(argv)
    logging.basicConfig(level=logging.WARNING, format="%(levelname)s %(name)s: %(message)s")
    try:
        check_checkpoint_folder(args.path)
        wanted = {"sentence_transformers": not args.no_sentence_transformers, "drop_mlm_head": args.drop_mlm_head}
        if already_exported(args.path, args.pooler, **wanted):
            print(f"{args.path}: already converted (HF and sentence-transformers format, model card); nothing changed")
            return 0
        print(f"SimCSE checkpoint -> HF format: {args.path}")
        # A damaged weights file: one line instead of a SafetensorError / unpickling traceback.
        with translate_load_errors(args.path, part="checkpoint"):
            report = export_folder(args.path, pooler=args.pooler, max_seq_length=args.max_seq_length, **wanted)
    except (ExportError, ModelLoadError, OSError) as err:
        if debug_enabled():
            raise
        print(f"error: {err}", file=sys.stderr)
        return 2
    print(report.summary())
    return 0


if __name__ == "__main__":
    sys.exit(main())
