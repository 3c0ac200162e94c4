"""Simulated people: feedback for experiments, from episodes whose reference answer is known.

Every learner can then be measured without humans. What each simulated person says:

- reward:     the job's own score of the answer (what a careful grader would give);
- correction: the reference answer, on wrong answers only (nobody corrects a right one);
- critique:   on wrong answers, words that give the answer away:
              "The answer should be a single number; the correct value is 12.";
- hint:       on wrong answers, a critique that does not give the answer away: it names the
              kind of mistake ("you added where the problem subtracts", "too high", "your reply
              starts with something other than the result"), never the value;
- preference: for two answers to the same prompt with different scores, the better one.

Hints are stored as critiques (kind "critique"); only the words differ.
"""

from __future__ import annotations

import random
from collections import defaultdict

from apiary.jobs.checks import arithmetic_answer
from apiary.jobs.scoring import NUMBER, first_number
from apiary.store.feedback import make_feedback
from apiary.store.records import Episode, Feedback

KINDS = ("reward", "correction", "critique", "hint", "preference")


def reveal(episode: Episode) -> str:
    return f"The answer should be a single number; the correct value is {episode.answer}."


def hint(episode: Episode) -> str:
    """A critique that names the mistake without the right value."""
    got, want = first_number(episode.completion), first_number(episode.answer or "")
    if want is None:
        return "That is not right. Read the request again and answer exactly what it asks."
    if got is None:
        return "Your reply has no number in it. Reply with the result only, as a single number."
    if want in [first_number(n) for n in NUMBER.findall(episode.completion)[1:]]:
        return "Your reply starts with something other than the result. Reply with the result only, as a single number."
    question = _question(episode)
    if "-" in question and arithmetic_answer(question.replace("-", "+")) == _as_answer(got):
        return "You added where the problem subtracts. Mind the minus signs and reply with the number only."
    direction = "too high" if got > want else "too low"
    return f"Your answer is {direction}. Work it out again and reply with the number only."


def simulate(episodes: list[Episode], kind: str, n: int, seed: int = 0, by: str = "simulated") -> list[Feedback]:
    """Up to `n` pieces of feedback of `kind` on `episodes` (each needs its reference answer)."""
    if kind not in KINDS:
        raise ValueError(f"unknown kind {kind!r}; choose from {', '.join(KINDS)}")
    known = [e for e in episodes if e.answer is not None and e.id is not None]
    rng = random.Random(seed)
    if kind == "preference":
        pairs = _pairs(known, rng)
        return [make_feedback(better.id, prefer=worse.id, by=by) for better, worse in pairs[:n]]
    pool = known if kind == "reward" else [e for e in known if e.score < 1.0]
    chosen = rng.sample(pool, min(n, len(pool)))
    if kind == "reward":
        return [make_feedback(e.id, reward=e.score, by=by) for e in chosen]
    if kind == "correction":
        return [make_feedback(e.id, correction=e.answer, by=by) for e in chosen]
    words = reveal if kind == "critique" else hint
    return [make_feedback(e.id, critique=words(e), by=by) for e in chosen]


def _pairs(episodes: list[Episode], rng: random.Random) -> list[tuple[Episode, Episode]]:
    """(better, worse) answers to one prompt; each episode in at most one pair, prompts shuffled."""
    by_prompt: dict[str, list[Episode]] = defaultdict(list)
    for e in episodes:
        by_prompt[repr(e.messages)].append(e)
    pairs = []
    for group in by_prompt.values():
        good = [e for e in group if e.score >= 1.0]
        bad = [e for e in group if e.score < 1.0]
        pairs += list(zip(good, bad))
    rng.shuffle(pairs)
    return pairs


def _question(episode: Episode) -> str:
    users = [m["content"] for m in episode.messages if m.get("role") == "user"]
    return users[-1] if users else ""


def _as_answer(value: float) -> str:
    return str(int(value)) if float(value).is_integer() else str(value)
