"""Answer extraction and scorers. Each scorer says exactly what it reads from a completion.

- exact:    the completion's first non-empty line, trimmed, case-folded, trailing period dropped,
            equals the answer.
- numeric:  the first number in the completion (e.g. "-4", "3.5", "1,200") equals the answer as a
            number. A long answer that contains the right number later gets no credit.
- contains: the answer appears in the completion (case-insensitive).
- line_contains: the answer, trimmed, case-folded, trailing period dropped, appears in the completion's
            first non-empty line ("It is in room Tessaly-4." answers "Tessaly-4"; a right answer after a
            wrong first line gets no credit).
- regex:    the answer is a regular expression that must match somewhere in the completion.
"""

from __future__ import annotations

import math
import re
from dataclasses import dataclass
from typing import Callable

NUMBER = re.compile(r"[-+]?\d[\d,]*(?:\.\d+)?|[-+]?\.\d+")


def first_number(text: str) -> float | None:
    match = NUMBER.search(text)
    if match is None:
        return None
    try:
        return float(match.group(0).replace(",", ""))
    except ValueError:
        return None


def first_line(text: str) -> str:
    for line in text.strip().splitlines():
        if line.strip():
            return line.strip()
    return ""


def number_decided(text: str) -> bool:
    """The first number is complete: something other than a digit, comma or point follows it."""
    match = NUMBER.search(text)
    return match is not None and match.end() < len(text) and text[match.end()] not in "0123456789.,"


def first_line_decided(text: str) -> bool:
    """The first non-empty line has ended."""
    stripped = text.lstrip()
    return bool(stripped) and "\n" in stripped


def _normalise(text: str) -> str:
    return text.strip().casefold().rstrip(".").strip()


def exact(completion: str, answer: str) -> float:
    return float(_normalise(first_line(completion)) == _normalise(answer))


def numeric(completion: str, answer: str) -> float:
    got, want = first_number(completion), first_number(answer)
    if got is None or want is None:
        return 0.0
    return float(math.isclose(got, want, rel_tol=1e-6, abs_tol=1e-9))


def contains(completion: str, answer: str) -> float:
    return float(answer.strip().casefold() in completion.casefold())


def line_contains(completion: str, answer: str) -> float:
    want = _normalise(answer)
    return float(bool(want) and want in first_line(completion).casefold())


def regex(completion: str, answer: str) -> float:
    return float(re.search(answer, completion) is not None)


@dataclass(frozen=True)
class Scorer:
    """A named scoring function (completion, answer) -> [0, 1].

    `decided(text)` is true once no continuation of `text` can change the score (the numeric
    scorer's first number is complete). Learners stop sampling there: the reward is already fixed,
    so later tokens would only add noise to the gradient and cost time.
    """

    name: str
    fn: Callable[[str, str], float]
    decided: Callable[[str], bool] | None = None

    def __call__(self, completion: str, answer: str) -> float:
        return self.fn(completion, answer)


SCORERS = {
    "exact": (exact, first_line_decided),
    "numeric": (numeric, number_decided),
    "contains": (contains, None),
    "line_contains": (line_contains, first_line_decided),
    "regex": (regex, None),
}


def scorer(name: str) -> Scorer:
    if name not in SCORERS:
        raise ValueError(f"unknown scorer {name!r}: choose one of {', '.join(SCORERS)}")
    fn, decided = SCORERS[name]
    return Scorer(name, fn, decided)
