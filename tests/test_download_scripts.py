"""The download scripts' local-source paths (the network paths cannot run here): copy, verify, refuse."""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

from tests.conftest import REPO_ROOT


def _run(script: Path, *args: str, cwd: Path) -> subprocess.CompletedProcess:
    return subprocess.run(["bash", str(script), *args], cwd=cwd, capture_output=True, text=True, timeout=120)


def test_senteval_local_copy_is_verified_and_tampering_is_caught(shared_data, tmp_path):
    folder = tmp_path / "downstream"
    folder.mkdir()
    for name in ("download_dataset.sh", "checksums.sha256"):
        shutil.copy(REPO_ROOT / "SentEval" / "data" / "downstream" / name, folder / name)
    script = folder / "download_dataset.sh"
    listed = len((folder / "checksums.sha256").read_text().splitlines())
    # a relative source folder is resolved from the caller's working directory
    ok = _run(script, "--local", "senteval/downstream", cwd=shared_data)
    assert ok.returncode == 0, ok.stderr
    assert f"SentEval data OK ({listed} files verified)" in ok.stdout
    gold = folder / "STS" / "STSBenchmark" / "sts-test.csv"
    assert gold.read_bytes() == (shared_data / "senteval/downstream/STS/STSBenchmark/sts-test.csv").read_bytes()
    gold.write_text("tampered\n")
    assert subprocess.run(["sha256sum", "--quiet", "-c", "checksums.sha256"], cwd=folder).returncode != 0
    bad = _run(script, "--local", str(tmp_path / "nowhere"), cwd=tmp_path)
    assert bad.returncode == 2 and "not a directory" in bad.stderr


def test_training_data_local_copies(shared_data, tmp_path):
    for name in ("download_wiki.sh", "download_nli.sh"):
        shutil.copy(REPO_ROOT / "data" / name, tmp_path / name)
    wiki = _run(tmp_path / "download_wiki.sh", "--local", str(shared_data / "wiki"), cwd=tmp_path)
    assert wiki.returncode == 0, wiki.stderr
    assert "copied wiki1m_sample.txt (11914 lines)" in wiki.stdout
    nli = _run(tmp_path / "download_nli.sh", "--local", str(shared_data / "nli"), cwd=tmp_path)
    assert nli.returncode == 0, nli.stderr
    assert "copied nli_for_simcse_senteval_snli_devtest.csv (6339 rows)" in nli.stdout
    assert (tmp_path / "nli_for_simcse_senteval_snli_devtest.csv").read_bytes() == (
        shared_data / "nli" / "nli_for_simcse_senteval_snli_devtest.csv"
    ).read_bytes()
    (tmp_path / "empty").mkdir()
    missing = _run(tmp_path / "download_nli.sh", "--local", str(tmp_path / "empty"), cwd=tmp_path)
    assert missing.returncode == 2 and "no nli_*.csv" in missing.stderr
