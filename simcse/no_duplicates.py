"""``--no_duplicates``: training batches in which no sentence appears twice (no false in-batch negatives).

In the supervised NLI data a premise comes with several hypotheses; two of its examples in one batch make
the premise a negative of itself. This batch sampler orders each epoch so that no two examples of one
optimizer micro-step share a sentence in any column. Under DDP a step's negatives are gathered from all W
ranks, and the data loader hands consecutive batches to consecutive ranks, so the sampler builds *global*
batches of B x W examples and cuts each into W batches of B.

Sentences are compared on their token ids (``input_ids``), the text the model sees. An unsupervised example
pairs a sentence with itself by design: that is one sentence, not a duplicate. The order is a seeded shuffle
(``seed + epoch``: reproducible, resumable), then a greedy pass: an example that would repeat a sentence of
the global batch being filled waits for the next batch that can take it (and is counted as moved). Examples
that never fit in a full global batch are dropped with ``drop_last`` (as the Trainer drops the last short
batch), else they form last, smaller global batches. Off by default: the paper samples batches uniformly.
"""

from __future__ import annotations

import logging
from collections import deque
from collections.abc import Iterator, Sequence

import torch
from torch.utils.data import Sampler

logger = logging.getLogger(__name__)

_ROWS_PER_READ = 8192


class NoDuplicatesBatchError(ValueError):
    """The data holds no full batch without a repeated sentence (too few distinct sentences for B x W)."""


def sentence_keys(dataset) -> list[frozenset[int]]:
    """Per example, the hashes of its distinct sentences' token-id sequences (read in slices of the dataset)."""
    keys: list[frozenset[int]] = []
    n = len(dataset)
    for start in range(0, n, _ROWS_PER_READ):
        rows = dataset[start : min(start + _ROWS_PER_READ, n)]["input_ids"]  # (rows, S, L_j) nested lists
        keys.extend(frozenset(hash(tuple(ids)) for ids in example) for example in rows)
    return keys


class _Filling:
    """One global batch being filled, with the sentence keys it already holds."""

    def __init__(self, keys: Sequence[frozenset[int]], size: int) -> None:
        self.keys, self.size = keys, size
        self.examples: list[int] = []
        self.seen: set[int] = set()

    def take(self, i: int) -> bool:
        if len(self.examples) < self.size and self.seen.isdisjoint(self.keys[i]):
            self.examples.append(i)
            self.seen.update(self.keys[i])
            return True
        return False

    def take_waiting(self, pending: deque[int]) -> None:
        for _ in range(len(pending)):  # the waiting examples first, oldest first; the others keep their order
            i = pending.popleft()
            if not self.take(i):
                pending.append(i)


def no_duplicate_order(
    keys: Sequence[frozenset[int]], global_batch: int, seed: int, drop_last: bool
) -> tuple[list[list[int]], int]:
    """(global batches of example indices, number of examples moved to a later batch).

    Every returned global batch has pairwise disjoint ``keys``; all but possibly the last ones (without
    ``drop_last``) hold exactly ``global_batch`` examples."""
    generator = torch.Generator().manual_seed(seed)
    stream = iter(torch.randperm(len(keys), generator=generator).tolist())
    pending: deque[int] = deque()  # examples waiting for a batch without their sentences
    moved: set[int] = set()
    batches: list[list[int]] = []
    while True:
        batch = _Filling(keys, global_batch)
        batch.take_waiting(pending)
        while len(batch.examples) < global_batch:
            i = next(stream, None)
            if i is None:
                break
            if not batch.take(i):
                pending.append(i)
                moved.add(i)
        if len(batch.examples) == global_batch:
            batches.append(batch.examples)
            continue
        if not drop_last:  # the rest: short global batches, still without duplicates
            while batch.examples:
                batches.append(batch.examples)
                batch = _Filling(keys, global_batch)
                batch.take_waiting(pending)
        return batches, len(moved)


class NoDuplicatesBatchSampler(Sampler[list[int]]):
    """Batches of ``batch_size`` whose every ``world_size`` consecutive batches (one optimizer micro-step on all
    ranks) share no sentence. ``set_epoch`` (called by the Trainer) reshuffles with ``seed + epoch``."""

    def __init__(self, dataset, batch_size: int, world_size: int = 1, seed: int = 42, drop_last: bool = False):
        super().__init__()
        self.batch_size, self.world_size, self.seed, self.drop_last = batch_size, world_size, seed, drop_last
        self.keys = sentence_keys(dataset)
        self.epoch = 0
        self.moved: int | None = None  # examples moved in the last epoch ordered
        self._cache: tuple[int, list[list[int]]] | None = None

    def set_epoch(self, epoch: int) -> None:
        self.epoch = epoch

    def _global_batches(self) -> list[list[int]]:
        if self._cache is None or self._cache[0] != self.epoch:
            batches, moved = no_duplicate_order(
                self.keys, self.batch_size * self.world_size, self.seed + self.epoch, self.drop_last
            )
            if not batches:
                raise NoDuplicatesBatchError(
                    f"--no_duplicates: not one batch of {self.batch_size * self.world_size} examples (per-device "
                    f"batch {self.batch_size} x {self.world_size} process(es)) without a repeated sentence exists "
                    f"in the {len(self.keys)} training examples; lower the batch size"
                )
            placed = sum(len(b) for b in batches)
            logger.info(
                "--no_duplicates: epoch %d: %d of %d examples moved to a later batch, %d left out (no full batch "
                "without a duplicate)", self.epoch, moved, len(self.keys), len(self.keys) - placed,
            )  # fmt: skip
            self.moved = moved
            self._cache = (self.epoch, batches)
        return self._cache[1]

    def __iter__(self) -> Iterator[list[int]]:
        for global_batch in self._global_batches():
            for start in range(0, len(global_batch), self.batch_size):
                yield global_batch[start : start + self.batch_size]

    def __len__(self) -> int:
        return sum(-(-len(b) // self.batch_size) for b in self._global_batches())


__all__ = ["NoDuplicatesBatchError", "NoDuplicatesBatchSampler", "no_duplicate_order", "sentence_keys"]
