"""Discrete text augmentations for the second view of unsupervised SimCSE (paper Table 1).

The paper compares dropout noise with classic augmentations of the positive's *text*. Its Table 1
caption defines them on words, which we read as whitespace-separated tokens:

* ``crop k%``: keep a random contiguous span holding (100 - k)% of the words (rounded, at least one);
* ``word deletion k%``: delete k% of the words (rounded), chosen at random without replacement;
* ``delete one word``: delete one word chosen at random.

A one-word sentence is returned unchanged by every augmentation (deleting its only word would leave an
empty sentence). Synonym replacement (nlpaug + WordNet) and MLM 15 % (BERT filling in masked words) need
resources that are not part of this toolkit and are not implemented.

Each function takes a :class:`random.Random`, so a whole corpus is augmented reproducibly from one seed
(:func:`augment_sentences`). The augmentation is drawn once per sentence, before tokenisation, so every
epoch sees the same second view; the paper trains one epoch, where this makes no difference.
"""

from __future__ import annotations

import random
from collections.abc import Callable, Sequence

AUGMENTATIONS: tuple[str, ...] = ("crop", "word_deletion", "delete_one_word")


def crop(sentence: str, ratio: float, rng: random.Random) -> str:
    """Keep a random contiguous span of ``round((1 - ratio) * n)`` of the ``n`` words (at least one)."""
    words = sentence.split()
    n = len(words)
    if n <= 1:
        return sentence
    keep = max(1, round((1.0 - ratio) * n))
    start = rng.randrange(n - keep + 1)
    return " ".join(words[start : start + keep])


def word_deletion(sentence: str, ratio: float, rng: random.Random) -> str:
    """Delete ``round(ratio * n)`` randomly chosen words of the ``n`` (at least one word is kept)."""
    words = sentence.split()
    n = len(words)
    if n <= 1:
        return sentence
    drop = min(n - 1, round(ratio * n))
    gone = set(rng.sample(range(n), drop))
    return " ".join(w for i, w in enumerate(words) if i not in gone)


def delete_one_word(sentence: str, rng: random.Random) -> str:
    """Delete one randomly chosen word."""
    words = sentence.split()
    if len(words) <= 1:
        return sentence
    gone = rng.randrange(len(words))
    return " ".join(words[:gone] + words[gone + 1 :])


def parse_augmentation(spec: str) -> Callable[[str, random.Random], str]:
    """``crop:0.1``, ``word_deletion:0.2`` or ``delete_one_word`` -> a function ``(sentence, rng) -> sentence``."""
    name, _, arg = spec.partition(":")
    if name not in AUGMENTATIONS:
        raise ValueError(f"--augmentation {spec!r}: unknown augmentation {name!r}; one of {', '.join(AUGMENTATIONS)}")
    if name == "delete_one_word":
        if arg:
            raise ValueError(f"--augmentation {spec!r}: delete_one_word takes no ratio")
        return delete_one_word
    try:
        ratio = float(arg)
    except ValueError:
        raise ValueError(f"--augmentation {spec!r}: {name} needs a ratio in [0, 1), e.g. {name}:0.1") from None
    if not 0.0 <= ratio < 1.0:
        raise ValueError(f"--augmentation {spec!r}: the ratio must be in [0, 1), got {ratio}")
    fn = crop if name == "crop" else word_deletion
    return lambda sentence, rng: fn(sentence, ratio, rng)


def augment_sentences(sentences: Sequence[str], spec: str, seed: int = 42) -> list[str]:
    """Augment every sentence with ``spec`` using one RNG seeded with ``seed`` (same seed, same corpus)."""
    fn = parse_augmentation(spec)
    rng = random.Random(seed)
    return [fn(s, rng) for s in sentences]
