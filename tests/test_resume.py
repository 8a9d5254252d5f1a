"""Kill-and-resume: a CPU training run killed with SIGKILL after a checkpoint, then resumed, must end with
the same model as an uninterrupted run of the same seed; checkpoints without the completion marker (a kill
mid-save) are never resumed from.

The child process runs ``train.cli()`` through a small wrapper (written to a temporary folder, not part of the
library) that adds a sleeping callback, so the parent can kill it at a known point without timing guesses.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
import torch
from safetensors.torch import load_file

import train
from simcse.run_state import COMPLETE_MARKER, OutputDirError, is_complete_checkpoint
from tests.numerics import assert_close_scaled

REPO_ROOT = Path(__file__).resolve().parent.parent

# The wrapper: train.cli() with one extra callback that stalls once a given step has ended, so the checkpoint
# before it is on disk (with its marker) while the child is still alive and training.
WRAPPER = """
import os, sys, time
sys.path.insert(0, os.environ["SIMCSE_REPO"])
from transformers import TrainerCallback
import train

STALL_AT = int(os.environ["SIMCSE_TEST_STALL_AT_STEP"])


class Stall(TrainerCallback):
    def on_step_end(self, args, state, control, **kwargs):
        if state.global_step == STALL_AT:
            print("stalling at step", state.global_step, flush=True)
            time.sleep(600)


class StallingTrainer(train.CLTrainer):
    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        self.add_callback(Stall())


train.CLTrainer = StallingTrainer
sys.argv[0] = "train.py"
train.cli()
"""

SAVE_STEPS, MAX_STEPS, STALL_AT = 4, 12, 6


@pytest.fixture(scope="module")
def train_txt(tmp_path_factory) -> Path:
    """48 distinct sentences: batch 8 gives 6 steps per epoch, so checkpoint-4 is mid-epoch (batches skipped)."""
    words = "man woman dog cat plays eats runs guitar food park fast slow red blue the a".split()
    lines = [" ".join(words[(i * k) % len(words)] for k in range(1, 3 + i % 6)) + f" {i}" for i in range(48)]
    path = tmp_path_factory.mktemp("resume_data") / "train.txt"
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")
    return path


def train_args(model_dir: Path, train_file: Path, out: Path, *extra: str) -> list[str]:
    """Short CPU run, dropout on (the tiny config's 0.1), saves at 4/8/12 and no evaluation."""
    return [
        "--model_name_or_path", str(model_dir), "--train_file", str(train_file), "--output_dir", str(out),
        "--per_device_train_batch_size", "8", "--max_steps", str(MAX_STEPS), "--learning_rate", "1e-3",
        "--max_seq_length", "16", "--eval_strategy", "no", "--save_strategy", "steps",
        "--save_steps", str(SAVE_STEPS), "--logging_steps", "1", "--use_cpu", "--seed", "11", "--report_to", "none",
        "--disable_tqdm", "true", "--plot_training", "false", "--dataloader_num_workers", "0", "--do_train", *extra,
    ]  # fmt: skip


def losses(out: Path) -> dict[int, float]:
    state = json.loads((out / "trainer_state.json").read_text(encoding="utf-8"))
    return {e["step"]: e["loss"] for e in state["log_history"] if "loss" in e}


def weights(path: Path) -> dict[str, torch.Tensor]:
    return load_file(path / "model.safetensors")


@pytest.fixture(scope="module")
def uninterrupted(tiny_bert_dir, train_txt, tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("uninterrupted") / "out"
    train.main(train_args(tiny_bert_dir, train_txt, out))
    return out


def start_child(args: list[str], tmp: Path, log) -> subprocess.Popen:
    """``train.cli()`` in a child process that stalls once step STALL_AT has ended."""
    wrapper = tmp / "stalling_train.py"
    wrapper.write_text(WRAPPER, encoding="utf-8")
    env = dict(os.environ, SIMCSE_REPO=str(REPO_ROOT), SIMCSE_TEST_STALL_AT_STEP=str(STALL_AT))
    return subprocess.Popen([sys.executable, str(wrapper), *args], stdout=log, stderr=subprocess.STDOUT, env=env)


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

    want, got = losses(uninterrupted), losses(out)
    assert sorted(got) == list(range(1, MAX_STEPS + 1))
    steps = sorted(want)  # steps 5..12 trained after the resume, same dropout masks: the same float32 losses
    assert_close_scaled(np.float32([got[s] for s in steps]), np.float32([want[s] for s in steps]), what="losses")
    ref, final = weights(uninterrupted), weights(out)
    assert ref.keys() == final.keys()
    for name in ref:
        assert_close_scaled(final[name], ref[name], what=name)  # float32 weights, scale: the tensor's own
    # and training did move the weights, so the comparison means something
    start = load_file(tiny_bert_dir / "model.safetensors")
    key = "embeddings.word_embeddings.weight"
    assert not torch.allclose(start[key], final[key], atol=1e-4)
