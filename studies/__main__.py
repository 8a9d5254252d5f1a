"""CLI: ``python -m studies {list,commands,run,report} ...`` (see the package docstring)."""

from __future__ import annotations

import argparse
import logging
import shlex
import sys
from collections.abc import Sequence

from studies.catalog import STUDIES
from studies.report import write_outputs
from studies.runner import build_runs, is_finished, read_result, run_study
from studies.spec import SCALES, get_scale


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="python -m studies", description="Run the SimCSE paper's studies.")
    sub = p.add_subparsers(dest="command", required=True)
    sub.add_parser("list", help="the studies and their paper tables")
    for name, help_text in (("run", "run a study (finished runs are kept) and write its table, JSON and plot"),
                            ("commands", "print the train.py command lines of a study"),
                            ("report", "write the table/JSON/plot from the finished runs only")):
        q = sub.add_parser(name, help=help_text)
        q.add_argument("study", choices=sorted(STUDIES))
        q.add_argument("--scale", choices=sorted(SCALES), default="cpu")
        q.add_argument("--seeds", type=int, default=None, help="seeds per cell (default: 1; 3 for `seeds`)")
        q.add_argument("--out", default="results/studies", help="root folder of the runs and the tables")
        q.add_argument("--cells", nargs="+", default=None, help="only these cells (names from `commands`)")
        if name == "run":
            q.add_argument("--keep_models", action="store_true", help="keep each run's weights (default: deleted "
                           "once its numbers are read)")
    return p


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    if args.command == "list":
        for study in STUDIES.values():
            print(f"{study.name:22s} {study.source:40s} {study.title}")
        return 0
    study, scale = STUDIES[args.study], get_scale(args.scale)
    if args.seeds is not None and args.seeds < 1:
        print("error: --seeds must be >= 1", file=sys.stderr)
        return 2
    if args.command == "commands":
        for run in build_runs(study, scale, args.out, args.seeds, args.cells):
            print("python train.py " + shlex.join(run.argv))
        return 0
    logging.basicConfig(format="%(asctime)s - %(levelname)s - %(name)s - %(message)s", level=logging.INFO)
    if args.command == "run":
        results = run_study(study, scale, args.out, args.seeds, keep_models=args.keep_models, cells=args.cells)
    else:
        results = [
            read_result(r) for r in build_runs(study, scale, args.out, args.seeds, args.cells) if is_finished(r)
        ]
    written = write_outputs(study, scale, results, args.out)
    print(written["markdown"].read_text(encoding="utf-8"))
    for kind, path in written.items():
        print(f"{kind}: {path}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
