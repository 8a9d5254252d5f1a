"""Shared pieces of the tests that train a tiny model with train.py: a small numbered corpus, the short CPU
command line, the losses a run logged, and ``train.cli()`` in a child process through a test wrapper.

The wrappers themselves (the callback each test adds) stay in their test files; here is only what the files
had each written again.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from collections.abc import Mapping
from pathlib import Path

import torch

from tests.numerics import assert_close_scaled

REPO_ROOT = Path(__file__).resolve().parent.parent
_WORDS = "man woman dog cat plays eats runs guitar food park fast slow red blue the a".split()


def write_corpus(folder: Path, count: int, first: int, spread: int) -> Path:
    """``count`` distinct sentences in ``folder/train.txt``: sentence i has ``first - 1 + i % spread`` words
    and its number (so no two are equal, and lengths vary for padding)."""
    lines = [
        " ".join(_WORDS[(i * k) % len(_WORDS)] for k in range(1, first + i % spread)) + f" {i}" for i in range(count)
    ]
    path = folder / "train.txt"
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")
    return path


def short_train_args(
    model_dir: Path,
    train_file: Path,
    out: Path,
    *extra: str,
    seed: int,
    max_steps: int,
    save_steps: int,
    learning_rate: float | str = "1e-3",
    logging_steps: int | None = 1,
) -> list[str]:
    """A short CPU run: batch 8, max_seq_length 16, no evaluation, checkpoints every ``save_steps``."""
    args = [
        "--model_name_or_path", str(model_dir), "--train_file", str(train_file), "--output_dir", str(out),
        "--per_device_train_batch_size", "8", "--max_steps", str(max_steps), "--learning_rate", str(learning_rate),
        "--max_seq_length", "16", "--eval_strategy", "no", "--save_strategy", "steps", "--save_steps", str(save_steps),
    ]  # fmt: skip
    if logging_steps is not None:
        args += ["--logging_steps", str(logging_steps)]
    return args + [
        "--use_cpu", "--seed", str(seed), "--report_to", "none", "--disable_tqdm", "true", "--plot_training", "false",
        "--dataloader_num_workers", "0", "--do_train", *extra,
    ]  # fmt: skip


def logged_losses(folder: Path) -> dict[int, float]:
    """step -> training loss, from the ``trainer_state.json`` in ``folder``."""
    state = json.loads((folder / "trainer_state.json").read_text(encoding="utf-8"))
    return {e["step"]: e["loss"] for e in state["log_history"] if "loss" in e}


# The child's script: this checkout's train.cli() with one test callback added to the trainer. The callback's
# source goes between head and tail; it sees os, sys, TrainerCallback and train.
_WRAPPER_HEAD = """
import os, sys
sys.path.insert(0, os.environ["SIMCSE_REPO"])
from transformers import TrainerCallback
import train
"""
_WRAPPER_TAIL = """

class _WithTestCallback(train.CLTrainer):
    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        self.add_callback({callback}())


train.CLTrainer = _WithTestCallback
sys.argv[0] = "train.py"
train.cli()
"""


def start_train_with_callback(
    callback_source: str, callback: str, args: list[str], tmp: Path, env: dict[str, str], **popen
) -> subprocess.Popen:
    """``train.cli()`` with ``args`` in a child process whose trainer also runs the ``TrainerCallback`` subclass
    named ``callback``, defined in ``callback_source`` (so the parent can act at a known step instead of guessing
    with timers). The script is written to ``tmp``; ``env`` adds the callback's own variables and ``popen`` goes
    to :class:`subprocess.Popen`."""
    script = tmp / "train_with_test_callback.py"
    script.write_text(_WRAPPER_HEAD + callback_source + _WRAPPER_TAIL.format(callback=callback), encoding="utf-8")
    child_env = dict(os.environ, SIMCSE_REPO=str(REPO_ROOT), **env)
    return subprocess.Popen([sys.executable, str(script), *args], env=child_env, **popen)


def assert_same_trained_weights(final: Mapping[str, torch.Tensor], ref: Mapping[str, torch.Tensor]) -> None:
    """Two float32 trainings that should be the same run (resumed vs uninterrupted): every tensor within the
    float32 tolerance of the model's largest weight.

    Not each tensor's own scale: a parameter whose exact gradient is zero (the attention key biases, which the
    softmax ignores) holds only rounding noise (~1e-7), and another summation order (another thread count)
    changes that noise completely. A missed or repeated step moves the weights by about the learning rate
    (1e-3 in these runs), a hundred times the tolerance.
    """
    assert final.keys() == ref.keys()
    scale = max(float(t.abs().max()) for t in ref.values())
    for name in ref:
        assert_close_scaled(final[name], ref[name], scale=scale, what=name)

