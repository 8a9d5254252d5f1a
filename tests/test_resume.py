"""Kill-and-resume: a CPU training run killed with SIGKILL after a checkpoint, then resumed, must end with
the same model as an uninterrupted run of the same seed; checkpoints without the completion marker (a kill
mid-save) are never resumed from.

The child process runs ``train.cli()`` through a small wrapper (written to a temporary folder, not part of the
library) that adds a sleeping callback, so the parent can kill it at a known point without timing guesses.
"""

from __future__ import annotations

import functools
import json
import signal
import subprocess
import time
from pathlib import Path

import numpy as np
import pytest
import torch
from safetensors.torch import load_file

import train
from simcse.run_state import COMPLETE_MARKER, OutputDirError, is_complete_checkpoint
from tests.numerics import assert_close_scaled
from tests.train_runs import (
    assert_same_trained_weights,
    logged_losses,
    short_train_args,
    start_train_with_callback,
    write_corpus,
)

# The callback the child's trainer runs (tests/train_runs.py adds it to train.cli()): it stalls once a given step
# has ended, so the checkpoint before it is on disk (with its marker) while the child is still alive and training.
STALL = """
import time

STALL_AT = int(os.environ["SIMCSE_TEST_STALL_AT_STEP"])


class Stall(TrainerCallback):
    def on_step_end(self, args, state, control, **kwargs):
        if state.global_step == STALL_AT:
            print("stalling at step", state.global_step, flush=True)
            time.sleep(600)
"""

SAVE_STEPS, MAX_STEPS, STALL_AT = 4, 12, 6


@pytest.fixture(scope="module")
def train_txt(tmp_path_factory) -> Path:
    """48 distinct sentences: batch 8 gives 6 steps per epoch, so checkpoint-4 is mid-epoch (batches skipped)."""
    return write_corpus(tmp_path_factory.mktemp("resume_data"), 48, first=3, spread=6)


# Short CPU run, dropout on (the tiny config's 0.1), saves at 4/8/12 and no evaluation.
train_args = functools.partial(short_train_args, seed=11, max_steps=MAX_STEPS, save_steps=SAVE_STEPS)


def weights(path: Path) -> dict[str, torch.Tensor]:
    return load_file(path / "model.safetensors")


@pytest.fixture(scope="module")
def uninterrupted(tiny_bert_dir, train_txt, tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("uninterrupted") / "out"
    train.main(train_args(tiny_bert_dir, train_txt, out))
    return out


def start_child(args: list[str], tmp: Path, log) -> subprocess.Popen:
    """``train.cli()`` in a child process that stalls once step STALL_AT has ended."""
    env = {"SIMCSE_TEST_STALL_AT_STEP": str(STALL_AT)}
    return start_train_with_callback(STALL, "Stall", args, tmp, env, stdout=log, stderr=subprocess.STDOUT)


def kill_after_marker(proc: subprocess.Popen, marker: Path, log: Path, limit_s: float = 240.0) -> None:
    """Poll for ``marker``, then SIGKILL the child (it is stalled two steps later, never finished)."""
    deadline = time.monotonic() + limit_s
    while not marker.is_file():
        if proc.poll() is not None:
            pytest.fail(f"child exited with {proc.returncode} before {marker} appeared:\n{log.read_text()[-3000:]}")
        if time.monotonic() > deadline:
            proc.kill()
            pytest.fail(f"{marker} did not appear:\n{log.read_text()[-3000:]}")
        time.sleep(0.2)
    proc.send_signal(signal.SIGKILL)
    assert proc.wait(timeout=60) == -signal.SIGKILL


def test_sigkill_then_resume_equals_uninterrupted(tiny_bert_dir, train_txt, uninterrupted, tmp_path):
    out = tmp_path / "out"
    args = train_args(tiny_bert_dir, train_txt, out)
    with open(tmp_path / "child.log", "wb") as log:
        proc = start_child(args, tmp_path, log)
        kill_after_marker(proc, out / f"checkpoint-{SAVE_STEPS}" / COMPLETE_MARKER, tmp_path / "child.log")
    assert not (out / "model.safetensors").exists()  # killed: no final model
    assert not (out / f"checkpoint-{2 * SAVE_STEPS}").exists()

    # A kill mid-save of the next checkpoint: a folder with partial files and no marker.
    partial = out / f"checkpoint-{2 * SAVE_STEPS}"
    partial.mkdir()
    (partial / "trainer_state.json").write_text('{"global_step": 8', encoding="utf-8")
    (partial / "model.safetensors").write_bytes((out / "checkpoint-4" / "model.safetensors").read_bytes()[:1000])
    refused = rf"checkpoint-8: not a complete checkpoint \(missing {COMPLETE_MARKER}\); cannot resume"
    with pytest.raises(OutputDirError, match=refused):
        train.main([*args, "--resume_from_checkpoint", str(partial)])

    # Same command again: auto-resume from checkpoint-4 (the partial checkpoint-8 is ignored).
    resumed = train.main(args)
    assert resumed["train_examples"] == 48
    state = json.loads((out / "trainer_state.json").read_text(encoding="utf-8"))
    assert state["global_step"] == MAX_STEPS
    assert all(is_complete_checkpoint(out / f"checkpoint-{s}") for s in (4, 8, 12))
    # the partial folder was removed before resuming, so checkpoint-8 is the resumed run's own
    assert json.loads((partial / "trainer_state.json").read_text(encoding="utf-8"))["global_step"] == 8

    want, got = logged_losses(uninterrupted), logged_losses(out)
    assert sorted(got) == list(range(1, MAX_STEPS + 1))
    steps = sorted(want)  # steps 5..12 trained after the resume, same dropout masks: the same float32 losses
    assert_close_scaled(np.float32([got[s] for s in steps]), np.float32([want[s] for s in steps]), what="losses")
    ref, final = weights(uninterrupted), weights(out)
    assert_same_trained_weights(final, ref)
    # and training did move the weights, so the comparison means something
    start = load_file(tiny_bert_dir / "model.safetensors")
    key = "embeddings.word_embeddings.weight"
    assert not torch.allclose(start[key], final[key], atol=1e-4)
