"""Turn a study into ``train.py`` runs, run them (resumably), and read their metrics.

Every run is ``train.main(argv)``: the study adds flags, never a second training or evaluation path. A run is
finished when its ``study_result.json`` exists (written last, atomically); a rerun of the study skips it. A
run stopped midway is started again from scratch, or resumed by ``train.py`` itself when it left a complete
checkpoint (paper scale with best-model selection).
"""

from __future__ import annotations

import csv
import json
import logging
import os
import shutil
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

from studies.spec import Run, Scale, Study

logger = logging.getLogger("studies")

RESULT_FILE = "study_result.json"
FIRST_SEED = 42
WEIGHT_FILES = ("model.safetensors", "pytorch_model.bin")


def pairs_file(out_root: Path) -> Path:
    """Where the 2-column (no hard negative) copy of the supervised file is written."""
    return out_root / "_data" / "nli_pairs.csv"


def build_runs(
    study: Study,
    scale: Scale,
    out_root: str | os.PathLike,
    seeds: int | None = None,
    cells: Sequence[str] | None = None,
) -> list[Run]:
    """The run list of ``study`` at ``scale``: one :class:`Run` per available cell (all, or those named in
    ``cells``) and seed. No I/O."""
    root = Path(out_root)
    n = seeds or study.default_seeds
    unknown = set(cells or ()) - {c.name for c in study.cells}
    if unknown:
        raise ValueError(f"study {study.name} has no cell(s) {sorted(unknown)}; cells: "
                         f"{', '.join(c.name for c in study.cells)}")
    runs = []
    for cell in study.cells:
        if not cell.available or (cells and cell.name not in cells):
            continue
        recipe = "sup" if cell.recipe == "sup_pairs" else cell.recipe
        train_file = str(pairs_file(root)) if cell.recipe == "sup_pairs" else scale.data[recipe]
        for seed in range(FIRST_SEED, FIRST_SEED + n):
            out = root / study.name / scale.name / cell.name / f"seed{seed}"
            argv = (
                "--model_name_or_path", scale.model,
                "--train_file", train_file,
                "--output_dir", str(out),
                "--senteval_data_dir", scale.senteval_data_dir,
                "--seed", str(seed),
                *scale.recipes[recipe],
                *(scale.figure2_flags if study.name == "figure2" else ()),
                *study.extra_flags,
                *cell.flags,
            )
            runs.append(Run(study.name, cell.name, seed, out, argv, test_eval=study.test_eval))
    return runs


LOCK_FILE = "study_run.lock"


def _claim(run: Run) -> bool:
    """Take the run's lock (a file holding our pid); False when a live process holds it. Lets several workers
    share one study (``python -m studies run ...`` started twice): each run is done by one of them."""
    run.output_dir.mkdir(parents=True, exist_ok=True)
    lock = run.output_dir / LOCK_FILE
    for _ in range(2):
        try:
            fd = os.open(lock, os.O_CREAT | os.O_EXCL | os.O_WRONLY)
        except FileExistsError:
            try:
                pid = int(lock.read_text(encoding="utf-8") or 0)
                os.kill(pid, 0)
                return pid == os.getpid()
            except (ValueError, ProcessLookupError):
                lock.unlink(missing_ok=True)  # left by a stopped worker
                continue
            except PermissionError:
                return False
        with os.fdopen(fd, "w", encoding="utf-8") as fh:
            fh.write(str(os.getpid()))
        return True
    return False


def is_finished(run: Run) -> bool:
    return (run.output_dir / RESULT_FILE).is_file()


def read_result(run: Run) -> dict[str, Any]:
    return json.loads((run.output_dir / RESULT_FILE).read_text(encoding="utf-8"))


def write_pairs_file(source: str | os.PathLike, dest: Path) -> Path:
    """Copy a sent0,sent1,hard_neg file without its hard negatives (the "no hard negative" row of Table 7)."""
    from simcse.data import read_training_file

    if dest.is_file():
        return dest
    texts = read_training_file(source)
    dest.parent.mkdir(parents=True, exist_ok=True)
    tmp = dest.with_suffix(".tmp")
    with open(tmp, "w", encoding="utf-8", newline="") as fh:
        writer = csv.writer(fh)
        writer.writerow(["sent0", "sent1"])
        writer.writerows(zip(texts.columns["sent0"], texts.columns["sent1"]))
    os.replace(tmp, dest)
    return dest


def metrics_from_history(log_history: Sequence[dict[str, Any]]) -> dict[str, Any]:
    """What a study reads from a run: best and last STS-B dev (x100, the paper's protocol picks the best
    checkpoint), alignment/uniformity per evaluation, and the final transfer dev average if evaluated."""
    evals = sorted((e for e in log_history if "eval_stsb_spearman" in e and "step" in e), key=lambda e: e["step"])
    out: dict[str, Any] = {}
    if evals:
        # The final --do_eval pass is logged at the last step too; the best-dev curve uses the in-training ones.
        best = max(evals, key=lambda e: e["eval_stsb_spearman"])
        out["stsb_dev"] = 100 * best["eval_stsb_spearman"]
        out["best_step"] = best["step"]
        out["stsb_dev_last"] = 100 * evals[-1]["eval_stsb_spearman"]
        out["curve"] = [
            {k: e[k] for k in ("step", "eval_stsb_spearman", "eval_align", "eval_uniform") if k in e} for e in evals
        ]
        if "eval_align" in evals[-1]:
            out["align_start"], out["uniform_start"] = evals[0]["eval_align"], evals[0]["eval_uniform"]
            out["align"], out["uniform"] = evals[-1]["eval_align"], evals[-1]["eval_uniform"]
    transfer = [e for e in log_history if "eval_avg_transfer" in e]
    if transfer:
        out["transfer_dev"] = transfer[-1]["eval_avg_transfer"]
    return out


def sts_test_avg(model_dir: Path, data_dir: str) -> dict[str, Any]:
    """The STS test table of ``evaluation.py --task_set sts --mode test`` on ``model_dir`` (its own code)."""
    import evaluation

    args = evaluation.build_parser().parse_args(
        ["--model_name_or_path", str(model_dir), "--task_set", "sts", "--mode", "test", "--data_dir", data_dir,
         "--no_progress"]
    )
    report = evaluation.run(args)
    sts = {task: float(v) for task, v in report["table"]["sts"].items()}
    return {"sts_test": sts, "sts_test_avg": sum(sts.values()) / len(sts)}


def train_main(argv: Sequence[str]) -> dict[str, float]:
    import train

    return train.main(list(argv))


def execute(
    run: Run,
    scale: Scale,
    trainer: Callable[[Sequence[str]], Any] = train_main,
    tester: Callable[[Path, str], dict[str, Any]] = sts_test_avg,
    keep_models: bool = False,
) -> dict[str, Any] | None:
    """Run one train.py invocation (and the test evaluation) unless already finished; returns its result
    (None when another worker is running it)."""
    if is_finished(run):
        logger.info("%s/%s seed %d: finished earlier, kept", run.study, run.cell, run.seed)
        return read_result(run)
    from simcse.run_state import last_complete_checkpoint

    if not _claim(run):
        logger.info("%s/%s seed %d: being run by another worker, skipped", run.study, run.cell, run.seed)
        return None
    argv = list(run.argv)
    if last_complete_checkpoint(run.output_dir) is None:
        argv.append("--overwrite_output_dir")  # a stopped run without checkpoint starts again
    start = time.perf_counter()
    trainer(argv)
    history_file = run.output_dir / "log_history.json"
    history = json.loads(history_file.read_text(encoding="utf-8")) if history_file.is_file() else []
    result: dict[str, Any] = {"study": run.study, "cell": run.cell, "seed": run.seed, "argv": ["train.py", *argv]}
    result.update(metrics_from_history(history))
    if run.test_eval:
        result.update(tester(run.output_dir, scale.senteval_data_dir))
    result["wall_s"] = round(time.perf_counter() - start, 1)
    if not keep_models:
        for name in WEIGHT_FILES:
            (run.output_dir / name).unlink(missing_ok=True)
        for ckpt in run.output_dir.glob("checkpoint-*"):
            shutil.rmtree(ckpt, ignore_errors=True)
    tmp = run.output_dir / (RESULT_FILE + ".tmp")
    tmp.write_text(json.dumps(result, indent=1), encoding="utf-8")
    os.replace(tmp, run.output_dir / RESULT_FILE)  # written last: its presence means "finished"
    (run.output_dir / LOCK_FILE).unlink(missing_ok=True)
    return result


def run_study(
    study: Study,
    scale: Scale,
    out_root: str | os.PathLike,
    seeds: int | None = None,
    trainer: Callable[[Sequence[str]], Any] = train_main,
    tester: Callable[[Path, str], dict[str, Any]] = sts_test_avg,
    keep_models: bool = False,
    cells: Sequence[str] | None = None,
) -> list[dict[str, Any]]:
    """All runs of ``study`` in order (finished ones are read, not redone); returns their results."""
    runs = build_runs(study, scale, out_root, seeds, cells)
    if any(c.recipe == "sup_pairs" and c.available for c in study.cells):
        write_pairs_file(scale.data["sup"], pairs_file(Path(out_root)))
    results = []
    for i, run in enumerate(runs, 1):
        logger.info("[%d/%d] %s/%s seed %d", i, len(runs), run.study, run.cell, run.seed)
        result = execute(run, scale, trainer, tester, keep_models)
        if result is not None:
            results.append(result)
    # Runs finished meanwhile by other workers of the same study belong to the table too.
    done = {(r["cell"], r["seed"]) for r in results}
    results += [read_result(r) for r in runs if (r.cell, r.seed) not in done and is_finished(r)]
    return results
