"""Command-line runs started together: each ``python <script>`` subprocess spends most of its time importing
torch and transformers on one core, so the bad-input cases of a module start at once (a module fixture) and
each test reads its own result. Output goes to files, not pipes (a full pipe would block a child)."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

REPO_ROOT = Path(__file__).resolve().parent.parent


class CliBatch:
    """``start`` launches ``python script args`` from the repository root; ``result`` waits for it."""

    def __init__(self, folder: Path, timeout: float = 300.0) -> None:
        self.folder, self.timeout = folder, timeout
        self.runs: dict[str, tuple[subprocess.Popen, Path]] = {}

    def start(self, name: str, script: str, *args: str, env_extra: dict[str, str] | None = None) -> None:
        log = self.folder / f"{name}.stderr"
        env = dict(os.environ, HF_HUB_OFFLINE="1", **(env_extra or {}))
        with open(log, "w", encoding="utf-8") as err:
            proc = subprocess.Popen([sys.executable, script, *args], cwd=REPO_ROOT, stdout=subprocess.DEVNULL,
                                    stderr=err, env=env)  # fmt: skip
        self.runs[name] = (proc, log)

    def result(self, name: str) -> tuple[int, str]:
        """(exit code, stderr) of run ``name``; a run past the timeout is killed and fails the test."""
        proc, log = self.runs[name]
        try:
            code = proc.wait(timeout=self.timeout)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
            raise AssertionError(f"{name}: no exit within {self.timeout:.0f} s") from None
        return code, log.read_text(encoding="utf-8")

    def close(self) -> None:
        for proc, _ in self.runs.values():
            if proc.poll() is None:
                proc.kill()
                proc.wait()
