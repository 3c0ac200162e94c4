"""Contamination: does training data contain held-out items, exactly or nearly?

Texts are normalised (case-folded, punctuation dropped except arithmetic operators, whitespace
collapsed). A training text contaminates a held-out item when the normalised texts are equal, or
when the held-out item's word n-grams (n = `n`, or the whole item if shorter) are mostly
(`threshold`) found in the training text: a held-out question pasted into a longer prompt still
counts. "Calculate 4 + 5 =" and "Calculate 4 + 6 =" share one 3-gram in three and do not.

A job's wording ("State the final answer to the following arithmetic problem: ...", "What is the
opposite of X?") is shared by its prompts, so it is the template, not the item, and is not
counted. An n-gram is template when it is in at least `template` (a small share) of the job's
prompts, the held-out items and the training texts together (`wording`, by default the training
texts), in at least 3 of them, and in at least 2 held-out items: a held-out item's own content is
in one held-out item only, so pasting it into many training texts does not make it template. An
item that is all template is checked for exact equality only. So "What is the opposite of cold?"
in training does not contaminate "What is the opposite of hot?", and "... problem: 5 + 6 =" in
training contaminates the held-out "... problem: 5 + 6 =" and not "... problem: 5 + 7 =".

A whole held-out text shared by many held-out items (the same share, and at least 3) is template too, even
verbatim in training: a game's opening ("I'm thinking of a number between 1 and 20...") is every game's, and
what tells one held-out game from a training game (its seed, the hidden number) is not in the text at all.
"""

from __future__ import annotations

import re
from collections import Counter
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


def template_ngrams(heldout: list[str], wording: list[str] = (), n: int = 3, template: float = 0.1) -> set[tuple[str, ...]]:
    """The job's wording: n-grams in at least `template` of the held-out items and `wording`
    together (and in at least 3 of them), and in at least 2 held-out items (1 if there is one)."""
    def counts(texts) -> dict[tuple[str, ...], int]:
        out: dict[tuple[str, ...], int] = {}
        for text in texts:
            for gram in ngrams(normalise(text), n):
                out[gram] = out.get(gram, 0) + 1
        return out

    held, other = counts(heldout), counts(wording)
    pooled = len(heldout) + len(wording)
    need = max(3.0, template * pooled)
    return {gram for gram, c in held.items() if c >= min(2, len(heldout)) and c + other.get(gram, 0) >= need}


def find(train: list[str], heldout: list[str], n: int = 3, threshold: float = 0.8, template: float = 0.1,
         wording: list[str] | None = None) -> list[Hit]:
    """Every (held-out item, training text) pair that overlaps at least `threshold`, at most one
    per item. `wording`: the job's other prompts, to tell its template (default: `train`)."""
    common = template_ngrams(heldout, train if wording is None else wording, n, template)
    exact = {" ".join(normalise(t)): i for i, t in enumerate(train)}
    grams = [ngrams(normalise(t), n) - common for t in train]
    index: dict[tuple[str, ...], set[int]] = {}
    for i, g in enumerate(grams):
        for gram in g:
            index.setdefault(gram, set()).add(i)
    keys = [" ".join(normalise(text)) for text in heldout]
    shared = {key for key, count in Counter(keys).items() if count >= max(3.0, template * len(heldout))}
    hits = []
    for h, text in enumerate(heldout):
        if keys[h] in shared:
            continue
        if keys[h] in exact:
            hits.append(Hit(heldout_index=h, train_index=exact[keys[h]], overlap=1.0))
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
