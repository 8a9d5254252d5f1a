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

from simcse.export import ExportError, export_folder
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


def main(argv: Sequence[str] | None = None) -> int:
    """Convert; print what was done; return 0, or 1 with one error line for an unusable folder."""
    args = parse_args(argv)
    logging.basicConfig(level=logging.WARNING, format="%(levelname)s %(name)s: %(message)s")
    print(f"SimCSE checkpoint -> HF format: {args.path}")
    try:
        report = export_folder(
            args.path,
            pooler=args.pooler,
            sentence_transformers=not args.no_sentence_transformers,
            max_seq_length=args.max_seq_length,
            drop_mlm_head=args.drop_mlm_head,
        )
    except (ExportError, OSError) as err:
        print(f"error: {err}", file=sys.stderr)
        return 1
    print(report.summary())
    return 0


if __name__ == "__main__":
    sys.exit(main())
