"""Contamination: does training data contain held-out items, exactly or nearly?

Texts are normalised (case-folded, punctuation dropped except arithmetic operators, whitespace
collapsed). A training text contaminates a held-out item when the normalised texts are equal, or
when the held-out item's word n-grams (n = `n`, or the whole item if shorter) are mostly
(`threshold`) found in the training text: a held-out question pasted into a longer prompt still
counts. "Calculate 4 + 5 =" and "Calculate 4 + 6 =" share one 3-gram in three and do not.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

_DROP = re.compile(r"[^\w\s+\-*/=]")


def normalise(text: str) -> list[str]:
    return re.sub(r"([+\-*/=])", r" \1 ", _DROP.sub(" ", text.casefold())).split()


def ngrams(words: list[str], n: int) -> set[tuple[str, ...]]:
    n = min(n, len(words))
    return {tuple(words[i:i + n]) for i in range(len(words) - n + 1)} if n else set()


@dataclass(frozen=True)
class Hit:
    heldout_index: int
    train_index: int
    overlap: float  # share of the held-out item's n-grams found in the training text


def find(train: list[str], heldout: list[str], n: int = 3, threshold: float = 0.8) -> list[Hit]:
    """Every (held-out item, training text) pair that overlaps at least `threshold`, at most one per item."""
    grams = [ngrams(normalise(t), n) for t in train]
    index: dict[tuple[str, ...], set[int]] = {}
    for i, g in enumerate(grams):
        for gram in g:
            index.setdefault(gram, set()).add(i)
    hits = []
    for h, text in enumerate(heldout):
        mine = ngrams(normalise(text), n)
        if not mine:
            continue
        counts: dict[int, int] = {}
        for gram in mine:
            for i in index.get(gram, ()):
                counts[i] = counts.get(i, 0) + 1
        best = max(counts.items(), key=lambda kv: kv[1], default=None)
        if best is not None and best[1] / len(mine) >= threshold:
            hits.append(Hit(heldout_index=h, train_index=best[0], overlap=best[1] / len(mine)))
    return hits
