"""One rank of tests/test_multinode.py, started by torchrun: the process group comes from torchrun's environment
(RANK, WORLD_SIZE, MASTER_ADDR, MASTER_PORT), the work is tests/test_ddp.py's, the result goes to OUT_DIR."""

from __future__ import annotations

import os
import sys
from datetime import timedelta

import torch
import torch.distributed as dist

from tests.test_ddp import rank_results


def main(model_dir: str, out_dir: str) -> None:
    dist.init_process_group("gloo", timeout=timedelta(seconds=60))
    try:
        rank = dist.get_rank()
        result = rank_results(rank, model_dir)
        result["env"] = {k: os.environ[k] for k in ("RANK", "WORLD_SIZE", "LOCAL_RANK", "GROUP_RANK", "MASTER_ADDR")}
        torch.save(result, os.path.join(out_dir, f"rank{rank}.pt"))
    finally:
        dist.destroy_process_group()


if __name__ == "__main__":
    main(sys.argv[1], sys.argv[2])
