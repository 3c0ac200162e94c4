"""Reading episodes for people: filtered pages of them, and the next answer waiting for a review.

Everything here is scoped to what one tenant may see (`Scope`): the episodes of its own workers, and
the replies served to it that name no worker. The browser pages (apiary.web) read through these, so
that no page can show another tenant's episode by forgetting a filter.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime

from sqlalchemy import and_, exists, func, or_, select

from apiary.store import schema
from apiary.store.records import Episode
from apiary.store.store import LOCAL_TENANT, Store

REVIEWED_ORIGINS = ("serve", "attempt")  # what the feedback inbox offers: served replies and attempts at the job


@dataclass(frozen=True)
class Scope:
    """What one tenant may see: its workers' episodes, and its served replies to the core."""

    tenant: str
    workers: frozenset[str]

    @classmethod
    def of(cls, store: Store, tenant: str) -> "Scope":
        return cls(tenant, frozenset(w.name for w in store.workers() if (w.tenant or LOCAL_TENANT) == tenant))

    def owns_worker(self, name: str | None) -> bool:
        return name in self.workers

    def owns(self, episode: Episode | None) -> bool:
        if episode is None:
            return False
        if episode.worker is not None:
            return episode.worker in self.workers
        return (episode.tenant or LOCAL_TENANT) == self.tenant

    def clause(self):
        ep = schema.episodes
        own_tenant = ep.c.tenant == self.tenant
        if self.tenant == LOCAL_TENANT:
            own_tenant = or_(own_tenant, ep.c.tenant.is_(None))
        return or_(ep.c.worker.in_(sorted(self.workers)), and_(ep.c.worker.is_(None), own_tenant))


@dataclass
class EpisodeFilter:
    """The filters of the Episodes page; None: any."""

    worker: str | None = None
    job: str | None = None
    origin: str | None = None
    min_score: float | None = None
    max_score: float | None = None
    since: datetime | None = None
    until: datetime | None = None
    limit: int = 50
    offset: int = 0


def find_episodes(store: Store, scope: Scope, wanted: EpisodeFilter) -> tuple[list[Episode], int]:
    """The page of episodes matching `wanted`, newest first, and how many match in all."""
    ep = schema.episodes
    where = [scope.clause()]
    for column, value in ((ep.c.worker, wanted.worker), (ep.c.job, wanted.job), (ep.c.origin, wanted.origin)):
        if value:
            where.append(column == value)
    if wanted.min_score is not None:
        where.append(ep.c.score >= wanted.min_score)
    if wanted.max_score is not None:
        where.append(ep.c.score <= wanted.max_score)
    if wanted.since is not None:
        where.append(ep.c.created_at >= wanted.since)
    if wanted.until is not None:
        where.append(ep.c.created_at <= wanted.until)
    query = select(ep).where(*where).order_by(ep.c.id.desc()).limit(wanted.limit).offset(wanted.offset)
    with store.engine.connect() as db:
        total = db.execute(select(func.count()).select_from(ep).where(*where)).scalar_one()
        return [Episode(**r._mapping) for r in db.execute(query)], total


def facets(store: Store, scope: Scope) -> dict[str, list[str]]:
    """The jobs and origins among the tenant's episodes (the Episodes page's choices)."""
    ep = schema.episodes
    with store.engine.connect() as db:
        jobs = db.execute(select(ep.c.job).where(scope.clause()).distinct().order_by(ep.c.job)).scalars().all()
        origins = db.execute(select(ep.c.origin).where(scope.clause(), ep.c.origin.is_not(None)).distinct()
                             .order_by(ep.c.origin)).scalars().all()
    return {"workers": sorted(scope.workers), "jobs": list(jobs), "origins": list(origins)}


def next_to_review(store: Store, scope: Scope, after: int = 0, worker: str | None = None) -> Episode | None:
    """The oldest answer after episode `after` that nobody has given feedback on yet: a served reply
    or an attempt at the job, with its text written."""
    ep, fb = schema.episodes, schema.feedback
    reviewed = exists().where(or_(fb.c.episode_id == ep.c.id, fb.c.other_episode_id == ep.c.id))
    where = [scope.clause(), ep.c.id > after, ep.c.origin.in_(REVIEWED_ORIGINS), ep.c.completion != "", ~reviewed]
    if worker:
        where.append(ep.c.worker == worker)
    with store.engine.connect() as db:
        row = db.execute(select(ep).where(*where).order_by(ep.c.id).limit(1)).first()
    return Episode(**row._mapping) if row else None


def same_prompt(store: Store, scope: Scope, episode: Episode, limit: int = 20) -> list[Episode]:
    """Other answers of the tenant to exactly the same prompt (the candidates for a preference)."""
    ep = schema.episodes
    query = (select(ep).where(scope.clause(), ep.c.task_id == episode.task_id, ep.c.id != episode.id,
                              ep.c.completion != "", ep.c.job == episode.job).order_by(ep.c.id).limit(limit))
    with store.engine.connect() as db:
        found = [Episode(**r._mapping) for r in db.execute(query)]
    return [e for e in found if e.messages == episode.messages]
