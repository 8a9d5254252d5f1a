"""SentEval for SimCSE: STS and transfer evaluation of sentence embeddings (a fresh re-implementation).

Public API is upstream's: ``senteval.engine.SE(params, batcher, prepare).eval(tasks)``.
"""

from __future__ import annotations

from senteval.engine import SE, TASKS
from senteval.utils import DataError

__all__ = ["SE", "TASKS", "DataError"]
