"""Ctrl-C and a full disk during training, in a child process as a user meets them (docs/RELIABILITY.md,
"Interruption").

* SIGINT: the run stops at the next step boundary with a complete checkpoint, exits 130 and prints the
  command that resumes it (without the ``--overwrite_output_dir`` that was passed, which would delete the
  checkpoint); that command, run, continues with the same losses and ends with the same weights as an
  uninterrupted run of the same seed.
* A second SIGINT exits at once (130), leaving the last complete checkpoint as it was.
* Disk full: the child lowers its file-size limit (``RLIMIT_FSIZE``, SIGXFSZ ignored so a write raises
  ``EFBIG`` instead of killing the process) once the first checkpoint is complete, so the next checkpoint's
  write fails as on a full disk; the run exits 2 with one line saying the previous checkpoint is intact, and
  resuming from it with the printed command gives the uninterrupted run's weights.

The child runs ``train.cli()`` through a small wrapper (written to a temporary folder, not part of the library)
that adds one callback, so the parent acts at a known step instead of guessing with timers.
"""

from __future__ import annotations

import functools
import json
import os
import shlex
import signal
import subprocess
import time
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file

import train
from simcse.run_state import COMPLETE_MARKER, RUN_COMPLETE_MARKER
from tests.train_runs import (
    assert_same_trained_weights,
    logged_losses,
    short_train_args,
    start_train_with_callback,
    write_corpus,
)

# The test callback the child's trainer runs (tests/train_runs.py adds it to train.cli()).
PROBE = """
import resource, signal, time

MODE, STEP = os.environ["SIMCSE_TEST_MODE"], int(os.environ["SIMCSE_TEST_STEP"])


class Probe(TrainerCallback):
    def on_step_end(self, args, state, control, **kwargs):
        if MODE in ("sigint", "sigint_twice") and state.global_step == STEP:
            waiting = signal.getsignal(signal.SIGINT)
            print("SIMCSE_TEST_READY", flush=True)
            deadline = time.monotonic() + 120
            while signal.getsignal(signal.SIGINT) is waiting and time.monotonic() < deadline:
                time.sleep(0.05)  # our handler restores the previous one when the signal arrives
            print("SIMCSE_TEST_GOT_SIGNAL", flush=True)
            if MODE == "sigint_twice":
                # The second Ctrl-C interrupts this wait (short sleeps, like a training loop that runs Python
                # code all the time). A child started from a background job inherits SIGINT ignored: the
                # second signal must act anyway (simcse/interrupt.py:_acting).
                deadline = time.monotonic() + 120
                while time.monotonic() < deadline:
                    time.sleep(0.05)

    def on_save(self, args, state, control, **kwargs):
        if MODE == "disk_full" and state.global_step == STEP:
            signal.signal(signal.SIGXFSZ, signal.SIG_IGN)
            resource.setrlimit(resource.RLIMIT_FSIZE, (4096, resource.getrlimit(resource.RLIMIT_FSIZE)[1]))
"""

MAX_STEPS, SAVE_STEPS = 12, 4


@pytest.fixture(scope="module")
def train_txt(tmp_path_factory) -> Path:
    """48 distinct sentences: batch 8 gives 6 steps per epoch, so a stop at step 7 is mid-epoch."""
    return write_corpus(tmp_path_factory.mktemp("interrupt_data"), 48, first=3, spread=6)


train_args = functools.partial(short_train_args, seed=7, max_steps=MAX_STEPS, save_steps=SAVE_STEPS)


@pytest.fixture(scope="module")
def uninterrupted(tiny_bert_dir, train_txt, tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("uninterrupted") / "out"
    train.main(train_args(tiny_bert_dir, train_txt, out))
    return out


def start(mode: str, step: int, args: list[str], tmp: Path, **popen) -> subprocess.Popen:
    env = {"SIMCSE_TEST_MODE": mode, "SIMCSE_TEST_STEP": str(step)}
    return start_train_with_callback(PROBE, "Probe", args, tmp, env, **popen)


def wait_for(text: str, log: Path, proc: subprocess.Popen, limit_s: float = 240.0) -> None:
    deadline = time.monotonic() + limit_s
    while text not in log.read_text(errors="replace"):
        if proc.poll() is not None or time.monotonic() > deadline:
            proc.kill()
            pytest.fail(f"no {text} (exit {proc.poll()}):\n{log.read_text(errors='replace')[-3000:]}")
        time.sleep(0.1)


def resume_line(stderr: str) -> str:
    lines = [ln for ln in stderr.splitlines() if "resume with: " in ln]
    assert len(lines) == 1, stderr[-3000:]
    return lines[0].split("resume with: ", 1)[1]


def run_printed(command: str) -> None:
    """Run the printed ``python train.py ...`` in-process (the same code path minus the interpreter start-up)."""
    parts = shlex.split(command)
    assert parts[:2] == ["python", "train.py"]
    train.main(parts[2:])


def assert_same_weights(a: Path, b: Path) -> None:
    assert_same_trained_weights(load_file(a / "model.safetensors"), load_file(b / "model.safetensors"))


def test_sigint_saves_stops_and_the_printed_command_resumes_exactly(tiny_bert_dir, train_txt, uninterrupted, tmp_path):
    out = tmp_path / "out"
    args = train_args(tiny_bert_dir, train_txt, out, "--overwrite_output_dir")  # as the example scripts do
    log = tmp_path / "child.log"
    with open(log, "w") as fh:
        proc = start("sigint", 6, args, tmp_path, stdout=fh, stderr=subprocess.STDOUT)
        wait_for("SIMCSE_TEST_READY", log, proc)
        proc.send_signal(signal.SIGINT)
        assert proc.wait(timeout=240) == 130, log.read_text()[-3000:]
    text = log.read_text()
    assert "Traceback" not in text
    # The signal came while step 6 ended, after that step's check: the run saved and stopped after step 7.
    ckpt = out / "checkpoint-7"
    assert f"stopped by SIGINT after step 7: complete checkpoint {ckpt}; final save and evaluation skipped" in text
    assert (ckpt / COMPLETE_MARKER).is_file() and (ckpt / "optimizer.pt").is_file()
    assert not (out / "model.safetensors").exists() and not (out / RUN_COMPLETE_MARKER).exists()
    command = resume_line(text)
    assert "--overwrite_output_dir" not in command
    assert shlex.split(command)[2:] == [a for a in args if a != "--overwrite_output_dir"]

    run_printed(command)
    resumed, straight = logged_losses(out), logged_losses(uninterrupted)
    assert sorted(resumed) == sorted(straight) == list(range(1, MAX_STEPS + 1))
    for step in range(1, MAX_STEPS + 1):  # 1-7 before the stop, 8-12 after the resume
        assert resumed[step] == pytest.approx(straight[step], rel=1e-5), step
    assert_same_weights(out, uninterrupted)
    assert (out / RUN_COMPLETE_MARKER).is_file()


def test_second_sigint_exits_at_once_keeping_the_last_complete_checkpoint(tiny_bert_dir, train_txt, tmp_path):
    out = tmp_path / "out"
    log = tmp_path / "child.log"
    with open(log, "w") as fh:
        proc = start("sigint_twice", 6, train_args(tiny_bert_dir, train_txt, out), tmp_path, stdout=fh,
                     stderr=subprocess.STDOUT)  # fmt: skip
        wait_for("SIMCSE_TEST_READY", log, proc)
        saved = {p.name: p.read_bytes() for p in (out / "checkpoint-4").iterdir() if p.is_file()}
        proc.send_signal(signal.SIGINT)
        wait_for("SIMCSE_TEST_GOT_SIGNAL", log, proc)
        start_wait = time.monotonic()
        proc.send_signal(signal.SIGINT)
        assert proc.wait(timeout=60) == 130
        assert time.monotonic() - start_wait < 30  # at once, not after the 120 s the child was sleeping
    text = log.read_text()
    assert "Traceback" not in text
    last = out / "checkpoint-4"
    assert (
        f"interrupted again: stopped at once; the last complete checkpoint {last} is intact; resume with: python "
        "train.py " in text
    )
    assert sorted(p.name for p in out.glob("checkpoint-*")) == ["checkpoint-4"]
    assert {p.name: p.read_bytes() for p in last.iterdir() if p.is_file()} == saved


def test_disk_full_while_saving_keeps_the_previous_checkpoint(tiny_bert_dir, train_txt, uninterrupted, tmp_path):
    out = tmp_path / "out"
    proc = start("disk_full", SAVE_STEPS, train_args(tiny_bert_dir, train_txt, out), tmp_path,
                 stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)  # fmt: skip
    stdout, stderr = proc.communicate(timeout=300)  # pipes: the file-size limit does not apply to them
    assert proc.returncode == 2, stderr[-3000:]
    assert "Traceback" not in stderr
    errors = [ln for ln in stderr.splitlines() if ln.startswith("error: ")]
    assert len(errors) == 1, stderr[-3000:]
    last = out / "checkpoint-4"
    assert errors[0].startswith(f"error: writing to {out} failed (")
    assert "File too large" in errors[0]
    assert f"): is the disk full? the last complete checkpoint {last} is intact (a partial checkpoint is never " \
        "resumed from); free space, then resume with: python train.py " in errors[0]
    assert (last / COMPLETE_MARKER).is_file()
    assert not (out / "checkpoint-8" / COMPLETE_MARKER).exists()  # the failed one, never marked complete
    assert not (out / "model.safetensors").exists()

    run_printed(errors[0].split("resume with: ", 1)[1])  # the limit was the child's: this has room again
    assert not (out / "checkpoint-8").exists() or (out / "checkpoint-8" / COMPLETE_MARKER).is_file()
    assert_same_weights(out, uninterrupted)


def _ddp_stop_worker(rank: int, port: int, out_dir: str) -> None:
    """Only rank 1 got the signal; after one step end both ranks must stop (and save) at that step."""
    from types import SimpleNamespace

    import torch.distributed as dist
    from transformers import TrainerControl

    from simcse.interrupt import StopOnSignal

    os.environ.update(MASTER_ADDR="127.0.0.1", MASTER_PORT=str(port))
    dist.init_process_group("gloo", rank=rank, world_size=2)
    try:
        stop = StopOnSignal()
        args = SimpleNamespace(device=torch.device("cpu"))
        quiet = stop.on_step_end(args, None, TrainerControl())  # nobody signalled yet
        if rank == 1:
            stop.signum = signal.SIGTERM
        control = stop.on_step_end(args, None, TrainerControl())
        result = {
            "quiet": (quiet.should_save, quiet.should_training_stop),
            "stopped": (control.should_save, control.should_training_stop),
            "signum": stop.signum,
        }
        (Path(out_dir) / f"rank{rank}.json").write_text(json.dumps(result))
    finally:
        dist.destroy_process_group()


def test_ddp_ranks_agree_to_stop(tmp_path):
    import socket

    import torch.multiprocessing as mp

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    mp.spawn(_ddp_stop_worker, args=(port, str(tmp_path)), nprocs=2, join=True)
    for rank in range(2):
        result = json.loads((tmp_path / f"rank{rank}.json").read_text())
        assert result == {"quiet": [False, False], "stopped": [True, True], "signum": int(signal.SIGTERM)}, rank


@pytest.mark.parametrize("before", [signal.SIG_IGN, signal.default_int_handler])
def test_second_sigint_acts_even_when_sigint_was_ignored_at_start(before):
    """A run started in the background by a script inherits SIGINT ignored; the first SIGINT reaches our handler
    anyway, so the second must raise KeyboardInterrupt (stop at once) instead of being ignored again."""
    from simcse.interrupt import StopOnSignal

    saved = {sig: signal.getsignal(sig) for sig in (signal.SIGINT, signal.SIGTERM)}
    signal.signal(signal.SIGINT, before)
    stop = StopOnSignal()
    try:
        assert stop.install()
        signal.raise_signal(signal.SIGINT)  # the first: recorded, handler switched
        assert stop.signum == signal.SIGINT
        assert signal.getsignal(signal.SIGINT) is signal.default_int_handler
        with pytest.raises(KeyboardInterrupt):
            signal.raise_signal(signal.SIGINT)  # the second: at once
    finally:
        stop.restore()
        for sig, handler in saved.items():
            signal.signal(sig, handler)
