"""Candidate retention items, generated from word lists: what a small chat model might know.

Five kinds, none phrased like a job (the jobs are reasoning-gym "a + b", "a * b" and gcd):
facts, word tasks, arithmetic in words, instruction and format following, short free answers.
Each item names its `checker` (see `retention.CHECKERS`); an answer with "|" lists acceptable
alternatives. `build_retention` keeps the ones the bundled core answers right robustly; this module
only proposes them. The pool leans on families the bundled 135M core answered right in a
calibration sample ("The plural of cat is cats.", "The capital of Peru is Lima."); families it
mostly got wrong (days and months in order, "double 7", "Write the number 7 in words") are left out.
"""

from __future__ import annotations

from apiary.evals.retention_lexicon import (
    BODY, COUNTRIES, ES_NOUNS, FACTS, IRREGULAR_PLURALS, NUMBER_WORDS, ONE_WORD, OPPOSITES, PHRASES, REGULAR_NOUNS,
    WORDS, Y_NOUNS,
)

ONE_WORD_HINT = "Answer with one word."


def _item(kind: str, question: str, answer: str, checker: str = "word") -> dict:
    return {"question": question, "answer": answer, "kind": kind, "checker": checker}


def countries() -> list[dict]:
    """Capitals and languages of well-known countries, each in two phrasings, and their continents."""
    out = []
    for country, (capital, language, continent) in COUNTRIES.items():
        if capital:
            out.append(_item("fact", f"What is the capital of {country}? {ONE_WORD_HINT}", capital))
            out.append(_item("fact", f"Which city is the capital of {country}?", capital))
        if language:
            out.append(_item("fact", f"What language is spoken in {country}?", language))
            out.append(_item("fact", f"What is the main language of {country}? {ONE_WORD_HINT}", language))
        out.append(_item("fact", f"On which continent is {country}?", continent))
    return out


def facts() -> list[dict]:
    out = countries() + [_item("fact", f"Which part of the body do you use to {verb}? {ONE_WORD_HINT}", part)
                         for verb, part in BODY.items()]
    return out + [_item("fact", q, a, "number" if a.isdigit() else "word") for q, a in FACTS]


def word_tasks() -> list[dict]:
    """Opposites of common words, plurals (and a few singulars) of nouns, first letters of words."""
    out = [_item("word", f"What is the opposite of {w}? {ONE_WORD_HINT}", a) for w, a in OPPOSITES.items()]
    plurals = {n: n + "s" for n in REGULAR_NOUNS} | ES_NOUNS | Y_NOUNS | IRREGULAR_PLURALS
    out += [_item("word", f"What is the plural of {n}?", p) for n, p in plurals.items()]
    unusual = ES_NOUNS | Y_NOUNS | IRREGULAR_PLURALS  # singulars only where the plural is not just "+s"
    out += [_item("word", f"What is the singular of {p}?", n) for n, p in unusual.items() if p != n]
    out += [_item("word", f"What is the first letter of the word {w}?", w[0], "letter")
            for w in _vocabulary() if w[0] not in "ai"]
    return out


def arithmetic_in_words() -> list[dict]:
    """Halves of small even numbers and of round tens, and the smaller of two numbers in words."""
    halves = list(range(4, 42, 2)) + list(range(50, 210, 10))
    out = [_item("arithmetic", f"What is half of {n}?", str(n // 2), "number") for n in halves]
    for a in range(2, 21, 3):
        for b in range(1, 21, 4):
            if a != b:
                out.append(_item("arithmetic", f"Which number is smaller, {NUMBER_WORDS[b]} or {NUMBER_WORDS[a]}?",
                                 NUMBER_WORDS[min(a, b)], "choice"))
    return out


def format_following() -> list[dict]:
    """Repeat a word or a short phrase as given."""
    out = [_item("format", f"Repeat this word exactly: {w}", w) for w in _vocabulary()]
    return out + [_item("format", f"Repeat this phrase exactly: {p}", p) for p in PHRASES]


def free_answers() -> list[dict]:
    """One-word answers to everyday questions."""
    return [_item("free", f"Answer with one word: {q}", a) for q, a in ONE_WORD]


def _vocabulary() -> list[str]:
    """Common words for the letter and repetition items: the word list, then the nouns."""
    return list(dict.fromkeys(WORDS + REGULAR_NOUNS))


def candidates() -> list[dict]:
    """Every candidate, in a fixed order, each question once."""
    seen, out = set(), []
    for item in facts() + word_tasks() + arithmetic_in_words() + format_following() + free_answers():
        if item["question"] not in seen:
            seen.add(item["question"])
            out.append(item)
    return out
