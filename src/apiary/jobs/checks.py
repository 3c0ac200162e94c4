"""Checks a job can provide for questions nobody wrote an answer for (used by practice).

`arithmetic_answer` finds the arithmetic expression in a question ("... problem: 4 - 1 =",
"Solve the following multiplication: 5 * 9.") and computes it exactly, so the worker's own
practice problems can be verified. Anything it cannot read with certainty gives None.
"""

from __future__ import annotations

import ast
import operator
import re
from fractions import Fraction

_CANDIDATE = re.compile(r"[\d\s+\-*/().]+")
_OPS = {ast.Add: operator.add, ast.Sub: operator.sub, ast.Mult: operator.mul, ast.Div: operator.truediv}


def arithmetic_answer(question: str) -> str | None:
    """The value of the longest readable arithmetic expression in `question`, or None."""
    best = None
    for match in _CANDIDATE.findall(question):
        text = match.strip().rstrip(".").strip()
        if not re.search(r"\d\s*[-+*/]\s*[-(]?\s*\d", text):
            continue
        value = _evaluate(text)
        if value is not None and (best is None or len(text) > len(best[0])):
            best = (text, value)
    if best is None:
        return None
    value = best[1]
    return str(value.numerator) if value.denominator == 1 else str(float(value))


def _evaluate(text: str) -> Fraction | None:
    try:
        tree = ast.parse(text, mode="eval").body
        return _value(tree)
    except (SyntaxError, ValueError, ZeroDivisionError, RecursionError):
        return None


def _value(node: ast.AST) -> Fraction:
    if isinstance(node, ast.Constant) and isinstance(node.value, (int, float)) and not isinstance(node.value, bool):
        return Fraction(node.value)
    if isinstance(node, ast.UnaryOp) and isinstance(node.op, (ast.USub, ast.UAdd)):
        inner = _value(node.operand)
        return -inner if isinstance(node.op, ast.USub) else inner
    if isinstance(node, ast.BinOp) and type(node.op) in _OPS:
        left, right = _value(node.left), _value(node.right)
        if isinstance(node.op, ast.Div):
            return left / right
        return _OPS[type(node.op)](left, right)
    raise ValueError("not plain arithmetic")
