"""A tool-use job: the worker may call a calculator and a lookup table before it answers.

The text format (in the system message, and shown in two worked episodes before each question,
`EXAMPLES`) is one line per turn:

    calc: 37 * 48            -> the environment replies with the result, e.g. "1776"
    lookup: Bavo             -> the environment replies with Bavo's room number, e.g. "417"
    answer: 1776             -> ends the episode; scored against the reference answer (numeric)

Anything else is a malformed call: the environment answers with an `error: ...` message saying
what was wrong and the episode goes on (an invalid move, counted as such); it never raises.
Success (what held-out evals count) is the final answer being right. The training score is 1 for a
right answer, else VALID_WEIGHT (0.2) times the fraction of well-formed calls (jobs.multiturn).

Questions: "What is A * B?" (two-digit numbers: beyond what a 135M model multiplies in its head)
and "What is the room number of NAME plus K?" (the room numbers are made up, so only the lookup
table knows them). Held-out questions come from their own seeds and never appear in training.
"""

from __future__ import annotations

import ast
import operator
import random

from apiary.jobs.base import Job, Task, Turn
from apiary.jobs.multiturn import ENVIRONMENT_SCORER, HELDOUT_SEED_BASE, valid_credit
from apiary.jobs.scoring import numeric

SYSTEM = "You answer with tools. Reply with one line: calc: EXPRESSION, or lookup: NAME, or answer: NUMBER."
# Two worked episodes, shown as chat turns before each question: the 135M core does not follow the
# format from a description alone (0 of 32 samples did), but does after these (31 of 32).
EXAMPLES = [
    {"role": "user", "content": "What is the room number of Ada plus 3?"}, {"role": "assistant", "content": "lookup: Ada"},
    {"role": "user", "content": "120"}, {"role": "assistant", "content": "calc: 120 + 3"},
    {"role": "user", "content": "123"}, {"role": "assistant", "content": "answer: 123"},
    {"role": "user", "content": "What is 15 * 21?"}, {"role": "assistant", "content": "calc: 15 * 21"},
    {"role": "user", "content": "315"}, {"role": "assistant", "content": "answer: 315"},
]
_SYLLABLES = ("ba", "vo", "ki", "ren", "to", "mi", "sa", "lu", "de", "nor", "pa", "li", "gu", "ze", "fa", "ro")
NAMES = sorted({(a + b).capitalize() for a in _SYLLABLES for b in _SYLLABLES if a != b})  # 240 made-up names
ROOMS = {name: random.Random(f"room:{name}").randint(100, 899) for name in NAMES}
OPERATORS = {ast.Add: operator.add, ast.Sub: operator.sub, ast.Mult: operator.mul, ast.Div: operator.truediv,
             ast.FloorDiv: operator.floordiv, ast.Mod: operator.mod, ast.USub: operator.neg, ast.UAdd: operator.pos}
CALLS = ("calc:", "lookup:", "answer:")


def calculate(expression: str) -> float:
    """+ - * / // % and parentheses over numbers; anything else raises ValueError."""
    def value(node):
        if isinstance(node, ast.Constant) and isinstance(node.value, (int, float)) and not isinstance(node.value, bool):
            return node.value
        if isinstance(node, ast.BinOp) and type(node.op) in OPERATORS:
            return OPERATORS[type(node.op)](value(node.left), value(node.right))
        if isinstance(node, ast.UnaryOp) and type(node.op) in OPERATORS:
            return OPERATORS[type(node.op)](value(node.operand))
        raise ValueError("only numbers, + - * / // % and parentheses are allowed")

    try:
        return value(ast.parse(expression.strip(), mode="eval").body)
    except SyntaxError as err:
        raise ValueError(f"not an arithmetic expression ({err.msg})") from err
    except ZeroDivisionError as err:
        raise ValueError("division by zero") from err


def _number(x: float) -> str:
    return str(int(x)) if float(x).is_integer() else f"{x:.6g}"


class ToolEpisode:
    """One question; speaks the jobs.base.Environment protocol."""

    def __init__(self, task: Task):
        self.task, self.calls, self.malformed = task, 0, 0

    def start(self) -> str:
        return self.task.question

    def step(self, reply: str) -> Turn:
        turn = self._answer(reply)
        self.calls, self.malformed = self.calls + 1, self.malformed + int(turn.invalid)
        if not turn.success:
            turn.score = valid_credit(self.calls, self.malformed)
        return turn

    def _answer(self, reply: str) -> Turn:
        line = next((ln.strip() for ln in reply.strip().splitlines() if ln.strip()), "")
        kind, _, argument = line.partition(":")
        kind, argument = kind.strip().casefold(), argument.strip()
        if f"{kind}:" not in CALLS or not argument:
            return Turn(message=f"error: start your reply with {', '.join(CALLS)} followed by its argument; got {line[:60]!r}",
                        invalid=True)
        if kind == "answer":
            score = numeric(argument, self.task.answer)
            return Turn(message=f"the answer was {self.task.answer}", done=True, score=score, success=score == 1.0)
        if kind == "lookup":
            name = argument.strip(" .'\"").capitalize()
            if name not in ROOMS:
                return Turn(message=f"error: no room number for {argument[:40]!r}", invalid=True)
            return Turn(message=str(ROOMS[name]))
        try:
            return Turn(message=_number(calculate(argument)))
        except (ValueError, TypeError, OverflowError) as err:
            return Turn(message=f"error: cannot compute {argument[:60]!r}: {err}", invalid=True)


def question(seed: int) -> Task:
    rng = random.Random(f"tools:{seed}")
    if rng.random() < 0.5:
        a, b = rng.randint(12, 99), rng.randint(12, 99)
        return Task(question=f"What is {a} * {b}?", answer=str(a * b), metadata={"seed": seed})
    name, k = rng.choice(NAMES), rng.randint(2, 9)
    return Task(question=f"What is the room number of {name} plus {k}?", answer=str(ROOMS[name] + k), metadata={"seed": seed})


class ToolSource:
    """Questions by seed: held-out seeds HELDOUT_SEED_BASE + i; training skips every held-out question."""

    def __init__(self, heldout_size: int = 50):
        self.heldout_size = heldout_size
        self._heldout = [question(HELDOUT_SEED_BASE + i) for i in range(heldout_size)]
        self._held = {t.question for t in self._heldout}

    def heldout(self) -> list[Task]:
        return list(self._heldout)

    def train(self, start: int, count: int) -> list[Task]:
        tasks, seed = [], start
        while len(tasks) < count:
            task = question(seed % HELDOUT_SEED_BASE)
            seed += 1
            if task.question not in self._held:
                tasks.append(task)
        return tasks

    def describe(self) -> dict:
        return {"kind": "tools", "tools": ["calc", "lookup"], "heldout": self.heldout_size}


def tools_job(heldout_size: int = 50, max_turns: int = 4, name: str = "tools") -> Job:
    return Job(name=name, source=ToolSource(heldout_size), scorer=ENVIRONMENT_SCORER, system=SYSTEM, max_tokens=24,
               examples=EXAMPLES, environment=ToolEpisode, max_turns=max_turns)
