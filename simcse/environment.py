"""Where the SentEval data is, and which library versions ran: one answer for training and evaluation."""

from __future__ import annotations

import os
import platform
import sys
from pathlib import Path

REPO_ROOT = Path(__file__).resolve().parent.parent


def senteval_data_dir(explicit: str | os.PathLike | None = None) -> Path:
    """SentEval's ``downstream`` folder: explicit argument > $SENTEVAL_DATA_DIR > <repo>/SentEval/data/downstream.

    Not checked here: evaluation requires the folder (``simcse.evaluation.resolve_data_dir``), training
    checks the files it needs before it starts (train.py).
    """
    return Path(explicit or os.environ.get("SENTEVAL_DATA_DIR") or REPO_ROOT / "SentEval" / "data" / "downstream")


def versions() -> dict[str, str]:
    """Versions recorded with training runs (simcse_run.json) and evaluation reports (--output_json)."""
    import datasets
    import numpy
    import scipy
    import sklearn
    import torch
    import transformers

    return {
        "python": sys.version.split()[0],
        "platform": platform.platform(),
        "torch": torch.__version__,
        "transformers": transformers.__version__,
        "datasets": datasets.__version__,
        "numpy": numpy.__version__,
        "scipy": scipy.__version__,
        "scikit-learn": sklearn.__version__,
    }


__all__ = ["REPO_ROOT", "senteval_data_dir", "versions"]
