"""Two torchrun launchers on localhost as two nodes (``--nnodes 2 --nproc_per_node 1``, c10d rendezvous, gloo
on the loopback interface): the same loss, logits and 1/W gradients as the 2-process test in test_ddp.py."""

from __future__ import annotations

import os
import subprocess
import sys
import time

import pytest
import torch

from tests.conftest import REPO_ROOT
from tests.test_ddp import WORLD, _free_port, assert_matches_single_process_full_batch

WORKER = REPO_ROOT / "tests" / "ddp_env_worker.py"
TIMEOUT_S = 300  # both launchers, start to end (imports on a loaded 2-core machine are slow)


@pytest.fixture(scope="module")
def two_node_results(tiny_bert_dir, tmp_path_factory):
    out_dir = tmp_path_factory.mktemp("two_nodes")
    port = _free_port()
    env = dict(
        os.environ,
        GLOO_SOCKET_IFNAME="lo",  # gloo only on the loopback interface
        OMP_NUM_THREADS="1",
        PYTHONPATH=os.pathsep.join([str(REPO_ROOT), os.environ.get("PYTHONPATH", "")]),
    )
    launchers = []
    for node_rank in range(WORLD):
        cmd = [
            sys.executable, "-m", "torch.distributed.run",
            "--nnodes", str(WORLD), "--nproc_per_node", "1", "--node_rank", str(node_rank),
            "--rdzv_backend", "c10d", "--rdzv_endpoint", f"127.0.0.1:{port}", "--rdzv_id", "simcse-two-nodes",
            "--rdzv_conf", f"join_timeout=120,is_host={int(node_rank == 0)}", "--local_addr", "127.0.0.1",
            "--max_restarts", "0", "--monitor_interval", "1",
            str(WORKER), str(tiny_bert_dir), str(out_dir),
        ]  # fmt: skip
        log = open(out_dir / f"launcher{node_rank}.log", "w")
        launchers.append((subprocess.Popen(cmd, cwd=REPO_ROOT, env=env, stdout=log, stderr=subprocess.STDOUT), log))
    started = time.monotonic()
    try:
        for proc, _ in launchers:
            proc.wait(timeout=max(1.0, TIMEOUT_S - (time.monotonic() - started)))
    finally:
        for proc, log in launchers:  # a launcher that failed or hung never outlives the test
            if proc.poll() is None:
                proc.kill()
                proc.wait(30)
            log.close()
    logs = "\n".join((out_dir / f"launcher{r}.log").read_text() for r in range(WORLD))
    assert all(proc.returncode == 0 for proc, _ in launchers), logs[-4000:]
    return [torch.load(out_dir / f"rank{r}.pt") for r in range(WORLD)]


def test_two_launchers_form_one_group_of_two_nodes(two_node_results):
    envs = [r["env"] for r in two_node_results]
    assert sorted(e["RANK"] for e in envs) == ["0", "1"]
    assert all(e["WORLD_SIZE"] == "2" and e["LOCAL_RANK"] == "0" for e in envs)  # one process per node
    assert sorted(e["GROUP_RANK"] for e in envs) == ["0", "1"]  # two nodes
    assert all(e["MASTER_ADDR"] == "127.0.0.1" for e in envs)


@pytest.mark.parametrize("num_sent", [2, 3])
def test_two_nodes_match_the_single_process_full_batch(two_node_results, tiny_bert_dir, num_sent):
    assert_matches_single_process_full_batch(two_node_results, str(tiny_bert_dir), num_sent)


def test_two_nodes_gather_like_two_processes(two_node_results):
    for rank, result in enumerate(two_node_results):
        assert torch.equal(result["gather"]["values"], torch.tensor([[1.0] * 3, [2.0] * 3]))
        assert torch.equal(result["gather"]["grad"], torch.arange(1.0, 7.0).view(2, 3)[rank : rank + 1])
