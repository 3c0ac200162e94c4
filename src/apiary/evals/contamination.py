"""Contamination: does training data contain held-out items, exactly or nearly?

Texts are normalised (case-folded, punctuation dropped except arithmetic operators, whitespace
collapsed). A training text contaminates a held-out item when the normalised texts are equal, or
when the held-out item's word n-grams (n = `n`, or the whole item if shorter) are mostly
(`threshold`) found in the training text: a held-out question pasted into a longer prompt still
counts. "Calculate 4 + 5 =" and "Calculate 4 + 6 =" share one 3-gram in three and do not.

A job's wording ("State the final answer to the following arithmetic problem: ...") is shared by
every item, so n-grams found in at least `template` of the held-out items (with 4 or more items)
are the template, not the item, and are not counted; an item that is all template is then
checked for exact equality only.
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


def template_ngrams(heldout: list[str], n: int = 3, template: float = 0.5) -> set[tuple[str, ...]]:
    """The n-grams in at least `template` of the held-out items: the job's wording."""
    if len(heldout) < 4:
        return set()
    counts: dict[tuple[str, ...], int] = {}
    for text in heldout:
        for gram in ngrams(normalise(text), n):
            counts[gram] = counts.get(gram, 0) + 1
    return {gram for gram, c in counts.items() if c >= template * len(heldout)}


def find(train: list[str], heldout: list[str], n: int = 3, threshold: float = 0.8, template: float = 0.5) -> list[Hit]:
    """Every (held-out item, training text) pair that overlaps at least `threshold`, at most one per item."""
    common = template_ngrams(heldout, n, template)
    exact = {" ".join(normalise(t)): i for i, t in enumerate(train)}
    grams = [ngrams(normalise(t), n) - common for t in train]
    index: dict[tuple[str, ...], set[int]] = {}
    for i, g in enumerate(grams):
        for gram in g:
            index.setdefault(gram, set()).add(i)
    hits = []
    for h, text in enumerate(heldout):
        if " ".join(normalise(text)) in exact:
            hits.append(Hit(heldout_index=h, train_index=exact[" ".join(normalise(text))], overlap=1.0))
            continue
        mine = ngrams(normalise(text), n) - common
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
