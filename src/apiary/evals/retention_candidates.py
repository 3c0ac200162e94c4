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
    ANIMAL_HOMES, ANIMAL_SOUNDS, ANIMAL_YOUNG, BODY, COLOURS, COUNTRIES, DAYS, ES_NOUNS, FACTS, IRREGULAR_PLURALS,
    LEGS, LETTERS, MONTHS, NUMBER_WORDS, ONE_WORD, OPPOSITES, PHRASES, REGULAR_NOUNS, REGULAR_VERBS, SHAPES, WHICH,
    WORDS, Y_NOUNS, YES_NO,
)

ONE_WORD_HINT = "Answer with one word."


def _item(kind: str, question: str, answer: str, checker: str = "word") -> dict:
    return {"question": question, "answer": answer, "kind": kind, "checker": checker}


def _unique(words: list[str]) -> list[str]:
    return list(dict.fromkeys(words))


def _past(verb: str) -> str:
    return verb + ("d" if verb.endswith("e") else "ed")


def countries() -> list[dict]:
    """Capitals, languages, people and continents of well-known countries, some in two phrasings."""
    out = []
    for country, (capital, language, person, continent) in COUNTRIES.items():
        if capital:
            out.append(_item("fact", f"What is the capital of {country}? {ONE_WORD_HINT}", capital))
            out.append(_item("fact", f"Which city is the capital of {country}?", capital))
        if language:
            out.append(_item("fact", f"What language is spoken in {country}?", language))
            out.append(_item("fact", f"What is the main language of {country}? {ONE_WORD_HINT}", language))
        out.append(_item("fact", f"What do you call a person from {country}? {ONE_WORD_HINT}", person))
        out.append(_item("fact", f"Which continent is {country} in? {ONE_WORD_HINT}", continent))
    return out


def nature() -> list[dict]:
    """Colours, animals' young, sounds, homes and legs, body parts, shapes."""
    out = [_item("fact", f"What colour is {thing}? {ONE_WORD_HINT}", colour) for thing, colour in COLOURS.items()]
    out += [_item("fact", f"What is a baby {animal} called?", young) for animal, young in ANIMAL_YOUNG.items()]
    out += [_item("fact", f"What sound does a {animal} make?", sound) for animal, sound in ANIMAL_SOUNDS.items()]
    out += [_item("fact", f"Where does a {animal} live? {ONE_WORD_HINT}", home) for animal, home in ANIMAL_HOMES.items()]
    out += [_item("fact", f"How many legs does {animal} have?", n, "number") for animal, n in LEGS.items()]
    out += [_item("fact", f"How many sides does a {shape} have?", n, "number") for shape, n in SHAPES.items()]
    out += [_item("fact", f"Which part of the body do you use to {verb}? {ONE_WORD_HINT}", part)
            for verb, part in BODY.items()]
    return out


def sequences() -> list[dict]:
    """Famous orders: days, months, the alphabet, asked as a list to continue."""
    out = [_item("fact", f"Continue the list with one word: {', '.join(DAYS[i:i + 3])},", DAYS[i + 3]) for i in range(4)]
    out += [_item("fact", f"Continue the list with one word: {', '.join(MONTHS[i:i + 3])},", MONTHS[i + 3])
            for i in range(9)]
    out += [_item("fact", f"Which day comes after {d}? {ONE_WORD_HINT}", DAYS[i + 1]) for i, d in enumerate(DAYS[:-1])]
    out += [_item("fact", f"What letter comes after {c} in the alphabet?", LETTERS[i + 1], "letter")
            for i, c in enumerate(LETTERS[:-1]) if c != "H"]  # not the answer "I"
    return out


def facts() -> list[dict]:
    out = countries() + nature() + sequences()
    return out + [_item("fact", q, a, "number" if a.isdigit() else "word") for q, a in FACTS]


def word_tasks() -> list[dict]:
    """Opposites of common words, plurals, simple past of regular verbs, first letters."""
    out = [_item("word", f"What is the opposite of {w}? {ONE_WORD_HINT}", a) for w, a in OPPOSITES.items()]
    plurals = {n: n + "s" for n in _unique(REGULAR_NOUNS)} | ES_NOUNS | Y_NOUNS | IRREGULAR_PLURALS
    out += [_item("word", f"What is the plural of {n}?", p) for n, p in plurals.items()]
    out += [_item("word", f"What is the past tense of the verb {v}? {ONE_WORD_HINT}", _past(v))
            for v in _unique(REGULAR_VERBS)]
    out += [_item("word", f"What is the first letter of the word {w}?", w[0], "letter")
            for w in _unique(WORDS) if w[0] not in "ai"]
    return out


def arithmetic_in_words() -> list[dict]:
    """Halves, the next number of a counting sequence, the bigger or smaller of two numbers in words."""
    out = [_item("arithmetic", f"What is half of {n}?", str(n // 2), "number") for n in range(4, 101, 2)]
    for step in (1, 2, 5, 10):
        for start in range(step, 12 * step, step):
            shown = ", ".join(str(start + k * step) for k in range(4))
            out.append(_item("arithmetic", f"What number comes next: {shown}?", str(start + 4 * step), "number"))
    for a in range(2, 21, 3):
        for b in range(1, 21, 4):
            if a != b:
                big, small = NUMBER_WORDS[max(a, b)], NUMBER_WORDS[min(a, b)]
                out.append(_item("arithmetic", f"Which number is bigger, {NUMBER_WORDS[a]} or {NUMBER_WORDS[b]}?",
                                 big, "choice"))
                out.append(_item("arithmetic", f"Which number is smaller, {NUMBER_WORDS[b]} or {NUMBER_WORDS[a]}?",
                                 small, "choice"))
    return out


def format_following() -> list[dict]:
    """Repeat a word or phrase as given, or in capital letters."""
    words = _unique(WORDS)
    out = [_item("format", f"Repeat this word exactly: {w}", w) for w in words]
    out += [_item("format", f"Repeat the word {w} in capital letters.", w.upper(), "exact_case") for w in words]
    out += [_item("format", f"Repeat this phrase exactly: {p}", p) for p in PHRASES]
    return out


def free_answers() -> list[dict]:
    """One-word answers to everyday questions, yes/no questions, and which of two things."""
    out = [_item("free", f"Answer with one word: {q}", a) for q, a in ONE_WORD]
    out += [_item("free", f"{q} Answer yes or no.", a) for q, a in YES_NO]
    return out + [_item("free", q, a, "choice") for q, a in WHICH]


def candidates() -> list[dict]:
    """Every candidate, in a fixed order, each question once."""
    seen, out = set(), []
    for item in facts() + word_tasks() + arithmetic_in_words() + format_following() + free_answers():
        if item["question"] not in seen:
            seen.add(item["question"])
            out.append(item)
    return out
