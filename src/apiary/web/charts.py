"""The pages' charts: small SVG images drawn on the server with matplotlib (already a dependency of
`apiary report`), so the browser needs no chart library. Each page shows them as <img>, and an SVG
loaded as an image runs no script, whatever text it holds.

Figures are made with matplotlib's object API (no pyplot), which keeps no global state, so requests
in different threads can draw at once.
"""

from __future__ import annotations

import io

from matplotlib.backends.backend_svg import FigureCanvasSVG
from matplotlib.figure import Figure

from apiary.web.views import VersionScore

SIZE = (6.0, 2.8)


def _svg(figure: Figure) -> bytes:
    figure.tight_layout()
    out = io.BytesIO()
    FigureCanvasSVG(figure).print_svg(out)
    return out.getvalue()


def _empty(axis, words: str) -> None:
    axis.text(0.5, 0.5, words, ha="center", va="center", transform=axis.transAxes, color="0.4")
    axis.set_xticks([])
    axis.set_yticks([])


def heldout_chart(scores: list[VersionScore]) -> bytes:
    """Held-out score against adapter version (v0: the core alone)."""
    figure = Figure(figsize=SIZE)
    axis = figure.add_subplot()
    if not scores:
        _empty(axis, "not evaluated yet")
    else:
        axis.plot([s.version for s in scores], [s.score for s in scores], "o-", color="C0")
        axis.set_xticks([s.version for s in scores], [f"v{s.version}" for s in scores])
        axis.set_ylim(0, 1)
        axis.set_ylabel("held-out score")
        axis.set_xlabel("adapter version")
    return _svg(figure)


def curve_chart(curve: dict | None) -> bytes:
    """Mean training reward per step over the worker's runs, with its held-out scores."""
    figure = Figure(figsize=SIZE)
    axis = figure.add_subplot()
    if not curve or not (curve["steps"] or curve["heldout"]):
        _empty(axis, "no learning runs yet")
        return _svg(figure)
    axis.plot(curve["steps"], curve["reward"], color="C0", alpha=0.7, label="training reward")
    if curve["heldout"]:
        xs, ys = zip(*sorted(curve["heldout"]))
        axis.plot(xs, ys, "o--", color="C1", label="held-out")
    axis.set_ylim(0, 1)
    axis.set_xlabel("step")
    axis.set_ylabel("score")
    axis.legend(fontsize=7)
    return _svg(figure)


def retention_chart(gates: list[dict]) -> bytes:
    """Per gated adapter version: retention items flipped right to wrong (%) and retention KL."""
    figure = Figure(figsize=SIZE)
    left = figure.add_subplot()
    measured = sorted((g for g in gates if g["flips"] or g["retention_kl"] is not None), key=lambda g: g["version"])
    if not measured:
        _empty(left, "no retention measured yet")
        return _svg(figure)
    versions = [g["version"] for g in measured]
    flips = [100 * g["flips"]["right_to_wrong"] / max(1, g["flips"]["items"]) if g["flips"] else 0.0 for g in measured]
    left.bar(versions, flips, color="C3", alpha=0.6)
    left.set_ylabel("flipped right to wrong (%)", color="C3")
    left.set_xticks(versions, [f"v{v}" for v in versions])
    left.set_xlabel("adapter version")
    right = left.twinx()
    right.plot(versions, [g["retention_kl"] or 0.0 for g in measured], "o-", color="C0")
    right.set_ylabel("retention KL", color="C0")
    return _svg(figure)
