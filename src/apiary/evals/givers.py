"""Who gives feedback that can be trusted: per-giver agreement with the job's verifier and with the other givers.

Feedback carries who gave it (`Feedback.by`). A giver who is wrong, or hostile, more often than the
others is found by two checks, both computed from the store alone:

- the job's verifier, where there is one: the job's scorer (rebuilt by name from the worker's job
  description) and the episode's stored score. A correction agrees when the scorer gives it full marks
  against the episode's reference answer; a reward agrees when it is on the same side of 0.5 as the
  verifier's score of the episode's completion (a reward of exactly 0.5 takes no side and is not
  checked); a preference agrees when the preferred episode scores at least as well as the other one.
  Critiques are words: the verifier cannot check them. An episode with no reference answer and no score
  (a served reply to a question nobody knows the answer of) has no verifier.
- the other givers, where several gave feedback on one episode (or one pair, for preferences): an item
  is checked by its peers when other givers said something comparable about the same episode (two
  rewards, two corrections, a reward and a correction, two preferences over one pair) and most of them
  agree or most disagree; it disagrees when most of them disagree. A tie (one peer each way) checks
  nothing. Two givers alone who contradict each other both count the disagreement, so neither is far
  beyond the other: nobody can tell which of the two is right.

Where a job has no verifier, only the second check applies.

The flag (`FlagRule`): a giver is flagged when, on either check, they have at least `min_items` checked
items and their disagreement rate is far beyond the pooled rate of every other giver on that check:
at least `margin` above it, and a one-sided binomial test of their disagreements against it (floored
at `floor`, so a few slips against flawless peers are not "infinitely" unlikely) is below `alpha`. A
sole giver, or one whose peers have fewer than `min_items` checked items between them, is never flagged:
there is nobody to be far beyond. Feedback learners leave a flagged giver's feedback out
(`FeedbackConfig.skip_flagged`), and `apiary report` lists every giver with these figures.
"""

from __future__ import annotations

from collections import defaultdict
from dataclasses import dataclass

from apiary.evals.gate import binomial_tail
from apiary.jobs.scoring import SCORERS, Scorer, scorer
from apiary.store.feedback import feedback_batches
from apiary.store.records import Episode, Feedback, Worker
from apiary.store.store import Store

SIDE = 0.5  # a reward or score at or above it says "right", below it "wrong"


@dataclass(frozen=True)
class FlagRule:
    """When a giver's disagreement rate is far beyond the others' (see the module's docstring)."""

    min_items: int = 20  # checked items a giver needs before they can be flagged (and their peers need, pooled)
    margin: float = 0.10  # how far above the others' pooled rate a giver's rate must be
    floor: float = 0.05  # the others' rate assumed at least this in the binomial test
    alpha: float = 0.01  # the binomial test's one-sided significance level

    def flags(self, checked: int, disagreed: int, others_checked: int, others_disagreed: int) -> bool:
        if checked < self.min_items or others_checked < self.min_items:
            return False
        baseline = others_disagreed / others_checked
        if disagreed / checked < baseline + self.margin:
            return False
        return binomial_tail(disagreed, checked, max(baseline, self.floor)) < self.alpha


@dataclass
class GiverAgreement:
    """One giver's feedback on one worker: how much of it the verifier and the other givers could check,
    how much of that disagreed, and whether the giver is flagged (and why)."""

    by: str
    feedback: int = 0  # pieces of feedback given
    checked: int = 0  # checked by the job's verifier
    disagreed: int = 0  # ... and found wrong by it
    peer_checked: int = 0  # checked by other givers on the same episode
    peer_disagreed: int = 0  # ... and most of them said otherwise
    flagged: bool = False
    reason: str = ""

    @property
    def disagreement(self) -> float | None:
        return self.disagreed / self.checked if self.checked else None

    @property
    def peer_disagreement(self) -> float | None:
        return self.peer_disagreed / self.peer_checked if self.peer_checked else None

    def figures(self) -> dict:
        return {"by": self.by, "feedback": self.feedback, "checked": self.checked, "disagreed": self.disagreed,
                "disagreement": self.disagreement, "peer_checked": self.peer_checked,
                "peer_disagreed": self.peer_disagreed, "peer_disagreement": self.peer_disagreement,
                "flagged": self.flagged, "reason": self.reason}


def verifier(worker: Worker) -> Scorer | None:
    """The worker's job's scorer, rebuilt by the name its job description records; None for a scorer
    defined in Python or a multi-turn job (a correction is one reply, not a whole episode)."""
    name = worker.job_spec.get("scorer")
    if name not in SCORERS or worker.job_spec.get("max_turns", 1) > 1:
        return None
    return scorer(name)


def verifier_agrees(item: Feedback, episode: Episode, other: Episode | None, check: Scorer | None) -> bool | None:
    """Whether the job's verifier agrees with one piece of feedback; None where it cannot tell."""
    if item.kind == "correction":
        if check is None or episode.answer is None:
            return None
        return check(item.text, episode.answer) >= 1.0
    if item.kind == "reward":
        score = _score(episode, check)
        if score is None or item.reward == SIDE:
            return None
        return (item.reward > SIDE) == (score >= SIDE)
    if item.kind == "preference" and other is not None:
        preferred, rejected = _score(episode, check), _score(other, check)
        if preferred is None or rejected is None:
            return None
        return preferred >= rejected
    return None


def giver_agreement(feedback: list[Feedback], episodes: dict[int, Episode], check: Scorer | None,
                    rule: FlagRule = FlagRule()) -> list[GiverAgreement]:
    """Every giver's agreement figures and flag over `feedback` (with the episodes it names), by giver name."""
    givers: dict[str, GiverAgreement] = {}
    _tally(givers, feedback, episodes, check)
    return _flag(givers, rule)


def worker_givers(store: Store, name: str, check: Scorer | None, rule: FlagRule = FlagRule(),
                  batch_rows: int = 5000) -> list[GiverAgreement]:
    """`giver_agreement` over all of a worker's feedback (learned from or not), read `batch_rows` at a time
    with the episodes it names, each episode's (and pair's) feedback in one batch, so memory stays flat;
    `check`: its job's scorer (`verifier(worker)` rebuilds it from the store), None where it has none."""
    givers: dict[str, GiverAgreement] = {}
    for feedback in feedback_batches(store.engine, name, batch_rows):
        ids = {f.episode_id for f in feedback} | {f.other_episode_id for f in feedback if f.other_episode_id is not None}
        _tally(givers, feedback, store.episodes_by_id(sorted(ids)), check)
    return _flag(givers, rule)


def _tally(givers: dict[str, GiverAgreement], feedback: list[Feedback], episodes: dict[int, Episode],
           check: Scorer | None) -> None:
    """Add `feedback`'s counts to `givers`; every comparable item of an episode or pair must be in one call."""
    for item in feedback:
        giver = givers.setdefault(item.by, GiverAgreement(by=item.by))
        giver.feedback += 1
        episode = episodes.get(item.episode_id)
        verdict = None if episode is None else verifier_agrees(item, episode, episodes.get(item.other_episode_id), check)
        if verdict is not None:
            giver.checked += 1
            giver.disagreed += not verdict
    for by, verdict in _peer_verdicts(feedback, episodes):
        givers[by].peer_checked += 1
        givers[by].peer_disagreed += not verdict


def _flag(givers: dict[str, GiverAgreement], rule: FlagRule) -> list[GiverAgreement]:
    for giver in givers.values():
        giver.reason = _reason(giver, list(givers.values()), rule)
        giver.flagged = bool(giver.reason)
    return sorted(givers.values(), key=lambda g: g.by)


def flagged_givers(store: Store, name: str, check: Scorer | None, rule: FlagRule = FlagRule()) -> list[GiverAgreement]:
    """The givers whose feedback on worker `name` a learner leaves out (`FeedbackConfig.skip_flagged`)."""
    return [g for g in worker_givers(store, name, check, rule) if g.flagged]


def hive_givers(store: Store, rule: FlagRule = FlagRule()) -> dict[str, list[GiverAgreement]]:
    """Every worker's givers (workers with feedback only), each checked by its job's scorer as the store records it."""
    found = {w.name: worker_givers(store, w.name, verifier(w), rule) for w in store.workers()}
    return {name: givers for name, givers in found.items() if givers}


def _score(episode: Episode, check: Scorer | None) -> float | None:
    """The verifier's score of an episode's completion: its stored score, else the scorer's if the answer is known."""
    if episode.score is not None:
        return episode.score
    if check is None or episode.answer is None:
        return None
    return check(episode.completion, episode.answer)


def _reason(giver: GiverAgreement, everyone: list[GiverAgreement], rule: FlagRule) -> str:
    others = [g for g in everyone if g.by != giver.by]
    checks = [("the job's verifier disagrees", (giver.checked, giver.disagreed),
               (sum(g.checked for g in others), sum(g.disagreed for g in others))),
              ("other givers disagree", (giver.peer_checked, giver.peer_disagreed),
               (sum(g.peer_checked for g in others), sum(g.peer_disagreed for g in others)))]
    return "; ".join(f"{who} with {k} of {n} ({k / n:.0%}; the other givers: {ok} of {on}, {ok / on:.0%})"
                     for who, (n, k), (on, ok) in checks if rule.flags(n, k, on, ok))


def _peer_verdicts(feedback: list[Feedback], episodes: dict[int, Episode]) -> list[tuple[str, bool]]:
    """(giver, agrees with most of the other givers) for every item other givers said something comparable about."""
    groups: dict[tuple, list[Feedback]] = defaultdict(list)
    for item in feedback:
        if item.kind in ("reward", "correction"):
            groups[("episode", item.episode_id)].append(item)
        elif item.kind == "preference" and item.other_episode_id is not None:
            groups[("pair", frozenset((item.episode_id, item.other_episode_id)))].append(item)
    verdicts = []
    for group in groups.values():
        for item in group:
            votes = [_peers_agree(item, peer, episodes.get(item.episode_id)) for peer in group if peer.by != item.by]
            agree, disagree = sum(v is True for v in votes), sum(v is False for v in votes)
            if agree != disagree:
                verdicts.append((item.by, agree > disagree))
    return verdicts


def _peers_agree(a: Feedback, b: Feedback, episode: Episode | None) -> bool | None:
    """Whether two givers' feedback on one episode (or one pair) says the same thing; None if not comparable."""
    kinds = {a.kind, b.kind}
    if kinds == {"reward"}:
        return None if SIDE in (a.reward, b.reward) else (a.reward > SIDE) == (b.reward > SIDE)
    if kinds == {"correction"}:
        return _same_text(a.text, b.text)
    if kinds == {"reward", "correction"}:
        reward, corrected = (a, b) if a.kind == "reward" else (b, a)
        if episode is None or reward.reward == SIDE:
            return None
        return (reward.reward > SIDE) == _same_text(corrected.text, episode.completion)
    if kinds == {"preference"}:
        return a.episode_id == b.episode_id
    return None


def _same_text(a: str, b: str) -> bool:
    return a.strip().casefold().rstrip(".") == b.strip().casefold().rstrip(".")
