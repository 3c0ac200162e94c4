"""Rules for feedback: what is refused outright, and what is kept but flagged as contradictory.

Refused (nothing is written): feedback on an unknown episode, a reward outside [0, 1], an empty
correction or critique, a preference naming an unknown episode, the episode itself, or an episode
of a different prompt. Contradictions (two rewards far apart, two different corrections, A over B
and later B over A, a high reward for an answer someone corrected) are kept, with the reason in
`conflict`, so nobody's word is silently overwritten and a learner can choose to skip them.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Iterator

from sqlalchemy import case, or_, select
from sqlalchemy.engine import Engine

from apiary.store import schema
from apiary.store.records import Episode, Feedback

REWARD_GAP = 0.5  # two rewards of one episode further apart than this contradict each other


class FeedbackError(ValueError):
    """Feedback that cannot be accepted; the message says why."""


def make_feedback(episode_id: int, *, reward: float | None = None, correction: str | None = None,
                  critique: str | None = None, prefer: int | None = None, by: str = "user") -> Feedback:
    """One feedback record from exactly one of reward / correction / critique / prefer."""
    given = {k: v for k, v in {"reward": reward, "correction": correction, "critique": critique, "prefer": prefer}.items()
             if v is not None}
    if len(given) != 1:
        raise FeedbackError(f"give exactly one of reward, correction, critique, prefer (got {sorted(given) or 'none'})")
    if reward is not None:
        try:
            reward = float(reward)
        except (TypeError, ValueError):
            raise FeedbackError(f"reward must be a number in [0, 1], got {reward!r}") from None
        if not 0.0 <= reward <= 1.0:
            _bad_reward(reward)
        return Feedback(episode_id=episode_id, kind="reward", reward=reward, by=by)
    if correction is not None:
        return Feedback(episode_id=episode_id, kind="correction", text=_text("correction", correction), by=by)
    if critique is not None:
        return Feedback(episode_id=episode_id, kind="critique", text=_text("critique", critique), by=by)
    return Feedback(episode_id=episode_id, kind="preference", other_episode_id=int(prefer), by=by)


FIELDS = {"episode_id", "id", "reward", "correction", "critique", "prefer", "by"}


def from_dict(data: dict) -> Feedback:
    """One record from {"episode_id" (or "id"): 12, one of reward/correction/critique/prefer, "by"?}."""
    if not isinstance(data, dict):
        raise FeedbackError(f"expected a JSON object, got {type(data).__name__}")
    unknown = sorted(set(data) - FIELDS)
    if unknown:
        raise FeedbackError(f"unknown field(s) {', '.join(unknown)}; expected episode_id and one of reward, correction, "
                            "critique, prefer (and optionally by)")
    episode_id = data.get("episode_id", data.get("id"))
    if not isinstance(episode_id, int) or isinstance(episode_id, bool):
        raise FeedbackError(f"episode_id must be an integer episode id, got {episode_id!r}")
    prefer = data.get("prefer")
    if prefer is not None and (not isinstance(prefer, int) or isinstance(prefer, bool)):
        raise FeedbackError(f"prefer must be an integer episode id, got {prefer!r}")
    reward = data.get("reward")
    if reward is not None and (not isinstance(reward, (int, float)) or isinstance(reward, bool)):
        raise FeedbackError(f"reward must be a number in [0, 1], got {reward!r}")
    for key in ("correction", "critique", "by"):  # text, never a list or an object written out as text
        if data.get(key) is not None and not isinstance(data[key], str):
            raise FeedbackError(f"{key} must be a string, got {type(data[key]).__name__}")
    return make_feedback(episode_id, reward=reward, correction=data.get("correction"),
                         critique=data.get("critique"), prefer=prefer, by=data.get("by") or "user")


def load_jsonl(path: Path) -> tuple[list[Feedback], list[str]]:
    """Feedback records of a JSONL file and where each came from ("FILE line N"); the first bad
    line raises FeedbackError naming it."""
    items, where = [], []
    for number, line in enumerate(path.read_text().splitlines(), start=1):
        if not line.strip():
            continue
        label = f"{path} line {number}"
        try:
            items.append(from_dict(json.loads(line)))
        except json.JSONDecodeError as err:
            raise FeedbackError(f"{label}: not valid JSON ({err.msg}); nothing was recorded") from None
        except FeedbackError as err:
            raise FeedbackError(f"{label}: {err}; nothing was recorded") from None
        where.append(label)
    if not items:
        raise FeedbackError(f"{path}: no feedback in it (one JSON object per line); nothing was recorded")
    return items, where


def check(feedback: Feedback, episode: Episode | None, other: Episode | None) -> None:
    """Raise FeedbackError if `feedback` must be refused (`other`: the preference's other episode)."""
    if episode is None:
        raise FeedbackError(f"no episode {feedback.episode_id} in this hive")
    if feedback.kind == "reward" and (feedback.reward is None or not 0.0 <= feedback.reward <= 1.0):
        _bad_reward(feedback.reward)
    if feedback.kind in ("correction", "critique"):
        _text(feedback.kind, feedback.text)
    if feedback.kind == "preference":
        if feedback.other_episode_id is None or other is None:
            raise FeedbackError(f"preference names no known other episode ({feedback.other_episode_id})")
        if other.id == episode.id:
            raise FeedbackError("a preference needs two different episodes")
        if other.messages != episode.messages:
            raise FeedbackError(f"episodes {episode.id} and {other.id} answer different prompts; a preference compares "
                                "two answers to the same prompt")


def conflict(feedback: Feedback, episode: Episode, earlier: list[Feedback]) -> str | None:
    """Why `feedback` contradicts earlier feedback on the same episode(s), or None."""
    for old in earlier:
        reason = _contradiction(feedback, old, episode)
        if reason:
            return f"{reason} (feedback {old.id})" if old.id is not None else reason
    return None


def _contradiction(new: Feedback, old: Feedback, episode: Episode) -> str | None:
    kinds = {new.kind, old.kind}
    same_episode = new.episode_id == old.episode_id
    if kinds == {"reward"} and same_episode and abs(new.reward - old.reward) > REWARD_GAP:
        return f"reward {new.reward:g} contradicts reward {old.reward:g}"
    if kinds == {"correction"} and same_episode and new.text.strip() != old.text.strip():
        return "a different correction was given"
    if kinds == {"reward", "correction"} and same_episode:
        reward = new.reward if new.kind == "reward" else old.reward
        corrected = new.text if new.kind == "correction" else old.text
        if reward > REWARD_GAP and corrected.strip() != episode.completion.strip():
            return f"reward {reward:g} for an answer that was corrected"
    if kinds == {"preference"} and (new.episode_id, new.other_episode_id) == (old.other_episode_id, old.episode_id):
        return "the opposite preference was given"
    return None


def _text(kind: str, text: str | None) -> str:
    if text is None or not str(text).strip():
        raise FeedbackError(f"empty {kind}: say what the right output is" if kind == "correction"
                            else f"empty {kind}: say what was wrong")
    return str(text)


def _bad_reward(reward) -> None:
    raise FeedbackError(f"reward must be a number in [0, 1], got {reward}")


def feedback_query(query, worker: str | None, kind: str | None, episode_ids: list[int] | None, unconsumed: bool):
    """`query` over the feedback table narrowed to a worker's, a kind, some episodes', or what no adapter learned yet."""
    fb, ep = schema.feedback, schema.episodes
    if worker is not None:
        query = query.select_from(fb).join(ep, ep.c.id == fb.c.episode_id).where(ep.c.worker == worker)
    if kind is not None:
        query = query.where(fb.c.kind == kind)
    if episode_ids is not None:
        query = query.where(or_(fb.c.episode_id.in_(episode_ids), fb.c.other_episode_id.in_(episode_ids)))
    if unconsumed:
        query = query.where(fb.c.id.not_in(select(schema.adapter_feedback.c.feedback_id)))
    return query


def group_key(item: Feedback) -> int:
    """The episode a piece of feedback is grouped by: its own, or for a preference the lower of its pair's,
    so all feedback on one episode and all preferences over one pair share a key."""
    return item.episode_id if item.other_episode_id is None else min(item.episode_id, item.other_episode_id)


def feedback_batches(engine: Engine, worker: str, batch_rows: int = 5000) -> Iterator[list[Feedback]]:
    """A worker's feedback about `batch_rows` at a time, ordered by `group_key` and never split within one
    key: whatever compares feedback on one episode or one pair sees it all in one batch, and memory stays flat."""
    fb = schema.feedback
    key = case((fb.c.other_episode_id < fb.c.episode_id, fb.c.other_episode_id), else_=fb.c.episode_id)
    query = feedback_query(select(fb), worker, None, None, False).order_by(key, fb.c.id)
    held: list[Feedback] = []
    with engine.connect() as db:
        for part in db.execution_options(yield_per=batch_rows).execute(query).partitions():
            rows = held + [Feedback(**r._mapping) for r in part]
            cut = len(rows)
            while cut and group_key(rows[cut - 1]) == group_key(rows[-1]):  # the last key may go on in the next part
                cut -= 1
            held = rows[cut:]
            if cut:
                yield rows[:cut]
    if held:
        yield held
