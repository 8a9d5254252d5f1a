"""What a run leaves in its output folder besides the model: its record, and how to resume it.

``simcse_run.json`` stores the full arguments, the seed and the library versions of the run, so a
result can be traced and an interrupted run recognised. Checkpoints get a completion marker once
every file of them is on disk; a folder without it (a kill mid-save) is never resumed from.
"""

from __future__ import annotations

import json
import logging
import os
import re
import shutil
import sys
import tempfile
from dataclasses import asdict
from pathlib import Path
from typing import Any

from transformers import TrainerCallback

from simcse.environment import versions

logger = logging.getLogger(__name__)

RUN_RECORD = "simcse_run.json"
COMPLETE_MARKER = "simcse_checkpoint_complete"
RUN_COMPLETE_MARKER = "simcse_run_complete"  # written into output_dir after the final save of a run
_CHECKPOINT_RE = re.compile(r"^checkpoint-(\d+)$")

# Arguments that may differ between an interrupted run and its continuation.
_RESUME_NEUTRAL = {
    "resume_from_checkpoint",
    "overwrite_output_dir",
    "logging_dir",
    "dataloader_num_workers",
    "disable_tqdm",
    "report_to",
    "run_name",
}


# Data arguments that change where or how the tokenised training set is cached, never its content.
_DATA_RESUME_NEUTRAL = {"data_cache_dir", "overwrite_cache", "preprocessing_num_workers"}


class OutputDirError(ValueError):
    """The output folder holds something this run must not silently overwrite."""


def _jsonable(obj: Any) -> Any:
    return json.loads(json.dumps(obj, default=str))


def run_record(
    model_args: Any, data_args: Any, training_args: Any, argv: list[str] | None = None
) -> dict[str, Any]:
    """The record saved as ``simcse_run.json``; ``argv`` is the command line that was parsed.

    ``argv`` defaults to ``sys.argv``, which is only right for the command line: ``train.main(argv)`` called
    from Python (tests, notebooks) passes its own list, otherwise the caller's ``sys.argv`` would be recorded.
    """
    train = training_args.to_dict() if hasattr(training_args, "to_dict") else asdict(training_args)
    return _jsonable(
        {
            "seed": training_args.seed,
            "model_args": asdict(model_args),
            "data_args": asdict(data_args),
            "training_args": train,
            "versions": versions(),
            "argv": list(sys.argv if argv is None else argv),
        }
    )


def _comparable(record: dict[str, Any]) -> dict[str, Any]:
    train = {k: v for k, v in record.get("training_args", {}).items() if k not in _RESUME_NEUTRAL}
    data = {k: v for k, v in (record.get("data_args") or {}).items() if k not in _DATA_RESUME_NEUTRAL}
    return {"model_args": record.get("model_args"), "data_args": data, "training_args": train}


def checkpoints(output_dir: str | os.PathLike) -> list[Path]:
    """``checkpoint-N`` folders of ``output_dir``, oldest first."""
    root = Path(output_dir)
    if not root.is_dir():
        return []
    found = [(int(m.group(1)), p) for p in root.iterdir() if p.is_dir() and (m := _CHECKPOINT_RE.match(p.name))]
    return [p for _, p in sorted(found)]


def is_complete_checkpoint(path: str | os.PathLike) -> bool:
    return (Path(path) / COMPLETE_MARKER).is_file()


def last_complete_checkpoint(output_dir: str | os.PathLike) -> Path | None:
    done = [p for p in checkpoints(output_dir) if is_complete_checkpoint(p)]
    return done[-1] if done else None


def _remove_incomplete_checkpoints(output_dir: Path) -> None:
    """Delete ``checkpoint-N`` folders without the marker (a kill mid-save) before resuming.

    They are never resumed from, but left in place the resumed run would write into them (stale partial
    files mixed with new ones) and transformers' ``save_total_limit`` rotation would count them.
    """
    for folder in checkpoints(output_dir):
        if not is_complete_checkpoint(folder):
            logger.warning("%s: incomplete checkpoint (no %s), removed before resuming", folder, COMPLETE_MARKER)
            shutil.rmtree(folder, ignore_errors=True)


def prepare_output_dir(record: dict[str, Any], training_args: Any, is_main: bool = True) -> str | None:
    """Decide between a fresh start, a resume and a refusal; return the checkpoint to resume from.

    * ``--overwrite_output_dir``: start afresh (stale ``checkpoint-*`` folders are removed so that
      they cannot be mistaken for this run's).
    * ``--resume_from_checkpoint DIR``: resume from DIR, which must be a complete checkpoint.
    * otherwise, a folder holding the same run (same arguments) with a complete checkpoint is
      resumed automatically, as transformers' examples do (incomplete checkpoint folders, left by a kill
      mid-save, are removed first); a folder holding anything else is refused.
    """
    out = Path(training_args.output_dir)
    check_output_dir(out)
    explicit = training_args.resume_from_checkpoint
    overwrite = getattr(training_args, "overwrite_output_dir", False)
    if (out / RUN_COMPLETE_MARKER).is_file() and not overwrite and not explicit:
        raise OutputDirError(
            f"{out}: holds a finished run ({RUN_COMPLETE_MARKER} was written after its final save); to train "
            "again add --overwrite_output_dir (deletes it) or choose another --output_dir"
        )
    resume_from = _decide(out, training_args, record, is_main)
    if is_main:
        (out / RUN_COMPLETE_MARKER).unlink(missing_ok=True)  # this run is not finished until it says so
    return resume_from


def _decide(out: Path, training_args: Any, record: dict[str, Any], is_main: bool) -> str | None:
    explicit = training_args.resume_from_checkpoint
    overwrite = getattr(training_args, "overwrite_output_dir", False)
    if explicit:
        if not is_complete_checkpoint(explicit):
            raise OutputDirError(f"{explicit}: not a complete checkpoint (missing {COMPLETE_MARKER}); cannot resume")
        return str(explicit)
    if overwrite or not out.is_dir() or not any(out.iterdir()):
        if is_main and out.is_dir():
            for stale in checkpoints(out):
                shutil.rmtree(stale, ignore_errors=True)
        return None
    previous = out / RUN_RECORD
    if previous.is_file():
        old = json.loads(previous.read_text(encoding="utf-8"))
        if _comparable(old) == _comparable(record):
            last = last_complete_checkpoint(out)
            if last is not None:
                logger.info("Resuming the interrupted run from %s", last)
                if is_main:
                    _remove_incomplete_checkpoints(out)
                return str(last)
            raise OutputDirError(
                f"{out}: holds this run's record but no complete checkpoint to resume; "
                "use --overwrite_output_dir to start again"
            )
        raise OutputDirError(
            f"{out}: already holds a different run ({RUN_RECORD} differs); "
            "use --overwrite_output_dir or another --output_dir"
        )
    raise OutputDirError(f"{out}: exists and is not empty; use --overwrite_output_dir or another --output_dir")


def check_output_dir(out: Path) -> None:
    """``--output_dir`` must be a folder we can write to; find out now, not at the first checkpoint."""
    if out.exists() and not out.is_dir():
        raise OutputDirError(f"{out}: --output_dir is a file, not a folder; choose another --output_dir")
    try:
        out.mkdir(parents=True, exist_ok=True)
        fd, probe = tempfile.mkstemp(dir=out, prefix=".simcse_write_test.")
        os.close(fd)
        os.unlink(probe)
    except OSError as err:
        raise OutputDirError(
            f"{out}: --output_dir is not writable ({err.strerror or err}); choose another --output_dir"
        ) from None


def mark_run_complete(output_dir: str | os.PathLike) -> None:
    """Written after the final save: a later run into the same folder is refused instead of resumed."""
    with open(Path(output_dir) / RUN_COMPLETE_MARKER, "w", encoding="utf-8") as fh:
        fh.write("finished\n")
        fh.flush()
        os.fsync(fh.fileno())


def write_run_record(output_dir: str | os.PathLike, record: dict[str, Any]) -> None:
    path = Path(output_dir) / RUN_RECORD
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(".json.tmp")
    tmp.write_text(json.dumps(record, indent=2, sort_keys=True), encoding="utf-8")
    os.replace(tmp, path)


class CheckpointCompletionCallback(TrainerCallback):
    """Marks a checkpoint complete once transformers has written all its files (``on_save`` fires after)."""

    def on_save(self, args, state, control, **kwargs):
        if state.is_world_process_zero:
            folder = Path(args.output_dir) / f"checkpoint-{state.global_step}"
            if folder.is_dir():
                with open(folder / COMPLETE_MARKER, "w", encoding="utf-8") as fh:
                    fh.write(f"{state.global_step}\n")
                    fh.flush()
                    os.fsync(fh.fileno())
        return control
