"""The feedback inbox: one answer at a time, and what a person says about it.

Feedback from a page goes through the same door as `apiary feedback` and POST /v1/feedback:
`make_feedback` checks the one piece (a reward in [0, 1], a non-empty correction or critique) and
`Store.add_feedback` refuses feedback on an unknown episode or a preference across prompts, and flags
contradictions with earlier feedback. A refusal is shown on the card with its reason; nothing is written.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

from fastapi import FastAPI, Request
from starlette.concurrency import run_in_threadpool

from apiary.store.browse import Scope, next_to_review, same_prompt
from apiary.store.feedback import FeedbackError, make_feedback
from apiary.store.records import Feedback
from apiary.web.ui import PREFIX, PageRefused, Ui, is_htmx

KINDS = ("reward", "correction", "critique", "preference")


@dataclass
class Outcome:
    """What became of a piece of feedback from the page: recorded (maybe flagged) or refused, and why."""

    recorded: Feedback | None = None
    refused: str | None = None


def card(ui: Ui, scope: Scope, after: int, worker: str | None, episode_id: int | None = None) -> dict:
    """The inbox card: the episode under review (a named one, else the next unreviewed one after `after`),
    and the other answers to its prompt (for a preference)."""
    episode = ui.store.episode(episode_id) if episode_id is not None else next_to_review(ui.store, scope, after, worker)
    if episode is not None and not scope.owns(episode):
        episode = None
    others = same_prompt(ui.store, scope, episode) if episode else []
    return {"episode": episode, "others": others, "after": after, "worker_filter": worker or "",
            "workers": sorted(scope.workers)}


def give(ui: Ui, scope: Scope, fields: dict[str, str]) -> Outcome:
    """Validate and store one piece of feedback from the inbox's forms."""
    kind, by = fields.get("kind", ""), (fields.get("by") or "").strip() or "ui"
    episode_id, other = _episode_id(fields.get("episode_id")), _episode_id(fields.get("other"))
    if episode_id is None:
        return Outcome(refused="the form names no episode")
    if kind not in KINDS:
        return Outcome(refused=f"unknown kind of feedback {kind!r}: one of {', '.join(KINDS)}")
    for named in (episode_id, other):
        if named is not None and not scope.owns(ui.store.episode(named)):
            return Outcome(refused=f"no episode {named}")
    value = fields.get("value")
    try:
        if kind == "preference":
            if other is None:
                raise FeedbackError("pick one of the two answers")
            item = make_feedback(episode_id, prefer=other, by=by)
        else:
            item = make_feedback(episode_id, by=by, **{kind: value if value is not None else ""})
        (stored,) = ui.store.add_feedback([item])
    except FeedbackError as err:
        return Outcome(refused=str(err))
    if ui.service.learning is not None:
        ui.service.learning.wake()
    return Outcome(recorded=stored)


def add_inbox(app: FastAPI, ui: Ui) -> None:
    @app.get(PREFIX + "/inbox", include_in_schema=False)
    async def inbox(request: Request):
        session = ui.visitor(request)
        query = request.query_params
        after = _int(query.get("after"), 0)
        shown = await run_in_threadpool(card, ui, ui.scope(session), after, query.get("worker"),
                                        _int(query.get("episode"), None))
        return ui.render(request, session, "inbox_card.html" if is_htmx(request) else "inbox.html", outcome=None, **shown)

    @app.post(PREFIX + "/inbox", include_in_schema=False)
    async def feedback(request: Request):
        session = ui.visitor(request)
        fields = await ui.form(request, session)
        scope = ui.scope(session)
        outcome = await run_in_threadpool(give, ui, scope, fields)
        episode_id = _int(fields.get("episode_id"), 0)
        after = episode_id if outcome.recorded else _int(fields.get("after"), 0)
        shown = await run_in_threadpool(card, ui, scope, after, fields.get("worker") or None,
                                        None if outcome.recorded else episode_id)
        status = 200 if outcome.recorded or is_htmx(request) else 400
        return ui.render(request, session, "inbox_card.html" if is_htmx(request) else "inbox.html", status=status,
                         outcome=outcome, **shown)


def _episode_id(text: str | None) -> int | None:
    """An episode id from a form field (ASCII digits only: "²" is a digit to str.isdigit), else None."""
    text = (text or "").strip()
    return int(text) if re.fullmatch(r"[0-9]{1,18}", text) else None


def _int(text: str | None, default):
    try:
        return int(text) if text not in (None, "") else default
    except ValueError:
        raise PageRefused(400, f"expected a whole number, got {text!r}") from None

