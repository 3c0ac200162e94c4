"""The experience store: one database (SQLite file in the hive by default, PostgreSQL by URL) plus artifact folders."""

from __future__ import annotations

from pathlib import Path

from sqlalchemy import func, insert, select, update

from apiary.store import schema
from apiary.store.database import open_database
from apiary.store.feedback import FeedbackError, check, conflict, feedback_query
from apiary.store.keyfile import read_or_make_secret
from apiary.store.names import check_name, inside
from apiary.store.records import (AdapterVersion, CoreVersion, Episode, EvalResult, Feedback, GateDecision, Run, RunBudget,
                                  Worker, now)
from apiary.store.swap import finish_interrupted

LOCAL_TENANT = "local"  # the tenant of a server started without API keys, and of workers made without one


class Store:
    """Every episode, run, adapter version and eval of a hive, with provenance."""

    def __init__(self, hive: str | Path, url: str | None = None, artifacts: str | None = None):
        """The store of the hive directory `hive` (its artifacts live there): its own SQLite file, or the
        database at `url` (e.g. postgresql+psycopg://USER:PASSWORD@HOST/DB), migrated to this apiary's schema.
        `artifacts`: a URL every artifact is also published to and fetched from (store.remote), checked first."""
        self.shared = None
        if artifacts:  # before anything is written: an unusable URL is one error, and no hive is made
            from apiary.store.remote import open_shared  # fsspec only for a hive that shares its artifacts

            self.shared = open_shared(artifacts)
        self.root = Path(hive)
        self.root.mkdir(parents=True, exist_ok=True)
        finish_interrupted(self.root)  # a restore killed mid-swap is finished before anything reads the hive
        self.url = url or f"sqlite:///{self.root / 'hive.db'}"
        self.engine = open_database(self.url)

    # -- paths (each checked to stay inside the hive) ---------------------------------------
    def adapter_dir(self, worker: str, version: int) -> Path:
        return inside(self.root, self.root / "adapters" / worker / f"v{int(version)}")

    def checkpoint_dir(self, worker: str) -> Path:
        return inside(self.root, self.root / "checkpoints" / worker)

    def core_dir(self, version: int) -> Path:
        return inside(self.root, self.root / "cores" / f"v{int(version)}")

    def publish(self, directory: Path) -> None:
        """Share an artifact directory just written in this hive (write, then publish); nothing without a URL."""
        if self.shared is not None:
            self.shared.publish(directory, directory.relative_to(self.root).as_posix())

    def fetched(self, directory: Path) -> Path:
        """`directory` (a recorded adapter or core version of this hive), fetched and verified from the artifact
        URL first if this hive does not have it yet (ArtifactUntrusted if its publish was cut off)."""
        if self.shared is not None and not directory.is_dir():
            self.shared.fetch(directory.relative_to(self.root).as_posix(), directory)
        return directory

    def fetched_checkpoint(self, worker: str) -> Path:
        """The worker's checkpoint directory, refreshed from the artifact URL if another node published a newer one."""
        directory = self.checkpoint_dir(worker)
        if self.shared is not None:
            self.shared.refresh(directory.relative_to(self.root).as_posix(), directory)
        return directory

    def session_secret(self) -> bytes:
        """The key the browser pages sign sessions with (hive/session.key, 0600, made on first use): every server
        on this hive, and the next one after a restart, reads the same key, so nobody is signed out. Not backed up."""
        return read_or_make_secret(inside(self.root, self.root / "session.key"))

    # -- workers -----------------------------------------------------------------------------
    def ensure_worker(self, name: str, job: str, core: str, job_spec: dict, core_version: int = 0,
                      tenant: str | None = None, prompt_format: str = "chat") -> None:
        """Create a worker (once): its job, the core it stands on and the core's prompt format. A new
        worker's name and tenant must follow the name rule (store.names); BadName, nothing written, if not."""
        with self.engine.begin() as db:
            row = db.execute(select(schema.workers).where(schema.workers.c.name == name)).first()
            if row is None:
                check_name(name, "worker")
                if tenant is not None:
                    check_name(tenant, "tenant")
                db.execute(insert(schema.workers).values(name=name, job=job, core=core, job_spec=job_spec, created_at=now(),
                                                         core_version=core_version, tenant=tenant, prompt_format=prompt_format))
            elif row.job != job:
                raise ValueError(f"worker {name!r} already works on job {row.job!r}, not {job!r}; pick another name")
            elif tenant is not None and (row.tenant or LOCAL_TENANT) != tenant:
                raise ValueError(f"worker {name!r} belongs to another tenant; pick another name")

    def workers(self, name: str | None = None) -> list[Worker]:
        """Every worker (or the one named), with its live and latest adapter versions."""
        w, av, wr = schema.workers, schema.adapter_versions, schema.worker_releases
        rows = select(w).order_by(w.c.name)
        latest = select(av.c.worker, func.max(av.c.version)).group_by(av.c.worker)
        last_release = select(func.max(wr.c.id)).group_by(wr.c.worker)
        if name is not None:
            rows, latest, last_release = (rows.where(w.c.name == name), latest.where(av.c.worker == name),
                                          last_release.where(wr.c.worker == name))
        with self.engine.connect() as db:
            found = [dict(r._mapping) for r in db.execute(rows)]
            latest_of = dict(db.execute(latest).all())
            live_of = dict(db.execute(select(wr.c.worker, wr.c.adapter_version).where(wr.c.id.in_(last_release))).all())
        return [Worker(**r | {"core_version": r["core_version"] or 0, "prompt_format": r["prompt_format"] or "chat",
                              "latest_version": latest_of.get(r["name"], 0),
                              "live_version": live_of.get(r["name"], latest_of.get(r["name"], 0)),
                              "has_release": r["name"] in live_of}) for r in found]

    def worker(self, name: str) -> Worker | None:
        found = self.workers(name)
        return found[0] if found else None

    # -- runs --------------------------------------------------------------------------------
    def start_run(self, run: Run) -> int:
        values = run.model_dump(exclude={"id", "budget"}) | {"budget": run.budget and run.budget.model_dump(mode="json")}
        with self.engine.begin() as db:
            return db.execute(insert(schema.runs).values(**values)).inserted_primary_key[0]

    def update_run(self, run_id: int, budget: RunBudget | None = None, **values) -> None:
        """Change a run's status, step or finish time; a resumed run records its new `budget`."""
        if budget is not None:
            values["budget"] = budget.model_dump(mode="json")  # its time as ISO text
        with self.engine.begin() as db:
            db.execute(update(schema.runs).where(schema.runs.c.id == run_id).values(**values))

    def unfinished_run(self, worker: str) -> Run | None:
        with self.engine.connect() as db:
            row = db.execute(
                select(schema.runs).where(schema.runs.c.worker == worker, schema.runs.c.status != "finished")
                .order_by(schema.runs.c.id.desc())
            ).first()
        return Run(**row._mapping) if row else None

    # -- episodes ----------------------------------------------------------------------------
    def add_episodes(self, items: list[Episode]) -> list[int]:
        """Insert episodes in one transaction; returns their ids in order."""
        if not items:
            return []
        ep = schema.episodes
        with self.engine.begin() as db:
            rows = db.execute(insert(ep).returning(ep.c.id, sort_by_parameter_order=True),
                              [e.model_dump(exclude={"id"}) for e in items])
            return list(rows.scalars())

    def episodes(self, worker: str | None = None, run_id: int | None = None) -> list[Episode]:
        query = select(schema.episodes).order_by(schema.episodes.c.id)
        if worker is not None:
            query = query.where(schema.episodes.c.worker == worker)
        if run_id is not None:
            query = query.where(schema.episodes.c.run_id == run_id)
        with self.engine.connect() as db:
            return [Episode(**r._mapping) for r in db.execute(query)]

    def episode(self, episode_id: int) -> Episode | None:
        if not _storable(episode_id):
            return None
        with self.engine.connect() as db:
            row = db.execute(select(schema.episodes).where(schema.episodes.c.id == episode_id)).first()
        return Episode(**row._mapping) if row else None

    def episodes_by_id(self, ids: list[int]) -> dict[int, Episode]:
        with self.engine.connect() as db:
            rows = db.execute(select(schema.episodes).where(schema.episodes.c.id.in_({i for i in ids if _storable(i)})))
            return {r.id: Episode(**r._mapping) for r in rows}

    def finish_episode(self, episode_id: int, completion: str) -> None:
        """Set the completion of an episode recorded before its reply was written (a served request)."""
        with self.engine.begin() as db:
            db.execute(update(schema.episodes).where(schema.episodes.c.id == episode_id).values(completion=completion))

    def failed_episodes(self, worker: str, offset: int, limit: int, origins=("rl", "attempt")) -> list[Episode]:
        """A worker's failed attempts at its job's own tasks (score < 1), oldest first."""
        ep = schema.episodes
        query = (select(ep).where(ep.c.worker == worker, ep.c.score < 1.0, ep.c.origin.in_(origins))
                 .order_by(ep.c.id).offset(offset).limit(limit))
        with self.engine.connect() as db:
            return [Episode(**r._mapping) for r in db.execute(query)]

    def count_attempted_tasks(self, worker: str) -> int:
        ep = schema.episodes
        query = select(func.count(ep.c.task_id.distinct())).where(ep.c.worker == worker, ep.c.origin == "attempt")
        with self.engine.connect() as db:
            return db.execute(query).scalar_one()

    def count_episodes(self, worker: str | None = None) -> int:
        query = select(func.count()).select_from(schema.episodes)
        if worker is not None:
            query = query.where(schema.episodes.c.worker == worker)
        with self.engine.connect() as db:
            return db.execute(query).scalar_one()

    def rl_reward_by_step(self, worker: str) -> list[tuple[int | None, int | None, float]]:
        """(run id, step, mean score) of a worker's RL rollouts per run and step, computed by the database
        (a report reads one row per step, not every episode)."""
        ep = schema.episodes
        query = (select(ep.c.run_id, ep.c.step, func.avg(ep.c.score)).where(ep.c.worker == worker, ep.c.origin == "rl")
                 .group_by(ep.c.run_id, ep.c.step))
        with self.engine.connect() as db:
            return [(r[0], r[1], float(r[2])) for r in db.execute(query) if r[2] is not None]

    def sampled_reward(self, worker: str, version: AdapterVersion) -> float | None:
        """Mean score of the RL rollouts that adapter version `version.parent` sampled and that trained
        `version` or its ancestors (None if none), computed by the database."""
        versions = {v.version: v for v in self.adapter_versions(worker)}
        lineage, at = [], version.version
        while at in versions and versions[at].id not in lineage:
            lineage.append(versions[at].id)
            at = versions[at].parent
        ep, ae = schema.episodes, schema.adapter_episodes
        trained = select(ae.c.episode_id).where(ae.c.adapter_version_id.in_(lineage))
        query = select(func.avg(ep.c.score)).where(ep.c.id.in_(trained), ep.c.adapter_version == version.parent,
                                                   ep.c.origin == "rl")
        with self.engine.connect() as db:
            mean = db.execute(query).scalar_one()
        return None if mean is None else float(mean)

    # -- feedback ----------------------------------------------------------------------------
    def add_feedback(self, items: list[Feedback], where: list[str] | None = None) -> list[Feedback]:
        """Validate and insert feedback, all or nothing: if any item is refused, FeedbackError says
        which (`where[i]`, default "item i+1") and why, and nothing is written. Contradictions are
        kept, flagged in `conflict`."""
        episodes = self.episodes_by_id([f.episode_id for f in items] + [f.other_episode_id for f in items if f.other_episode_id])
        earlier = self.feedback(episode_ids=list(episodes))
        accepted = []
        for n, item in enumerate(items):
            try:
                check(item, episodes.get(item.episode_id), episodes.get(item.other_episode_id))
            except FeedbackError as err:
                label = where[n] if where else f"item {n + 1}" if len(items) > 1 else ""
                raise FeedbackError(f"{label + ': ' if label else ''}{err}; nothing was recorded") from None
            related = [f for f in earlier + accepted
                       if {f.episode_id, f.other_episode_id} & {item.episode_id, item.other_episode_id} - {None}]
            accepted.append(item.model_copy(update={"conflict": conflict(item, episodes[item.episode_id], related)}))
        with self.engine.begin() as db:
            for item in accepted:
                item.id = db.execute(insert(schema.feedback).values(**item.model_dump(exclude={"id"}))).inserted_primary_key[0]
        return accepted

    def feedback(self, worker: str | None = None, kind: str | None = None, episode_ids: list[int] | None = None,
                 unconsumed: bool = False) -> list[Feedback]:
        """Feedback, oldest first: on a worker's episodes, of one kind, on given episodes, or not yet
        learned from by any adapter version of the worker."""
        query = feedback_query(select(schema.feedback), worker, kind, episode_ids, unconsumed).order_by(schema.feedback.c.id)
        with self.engine.connect() as db:
            return [Feedback(**r._mapping) for r in db.execute(query)]

    def count_feedback(self, worker: str | None = None, unconsumed: bool = False) -> int:
        """How many pieces of feedback `feedback(worker, unconsumed=...)` would return, counted by the database."""
        query = feedback_query(select(func.count(schema.feedback.c.id)), worker, None, None, unconsumed)
        with self.engine.connect() as db:
            return db.execute(query).scalar_one()

    def feedback_by_id(self, ids: list[int]) -> dict[int, Feedback]:
        with self.engine.connect() as db:
            rows = db.execute(select(schema.feedback).where(schema.feedback.c.id.in_(set(ids))))
            return {r.id: Feedback(**r._mapping) for r in rows}

    def feedback_log(self, worker: str) -> list[dict]:
        """Each piece of feedback on a worker's episodes, with the adapter version that learned from it."""
        fb, af, av = schema.feedback, schema.adapter_feedback, schema.adapter_versions
        query = (select(fb, av.c.version.label("learned_by_version"))
                 .join(schema.episodes, schema.episodes.c.id == fb.c.episode_id)
                 .outerjoin(af, af.c.feedback_id == fb.c.id).outerjoin(av, av.c.id == af.c.adapter_version_id)
                 .where(schema.episodes.c.worker == worker).order_by(fb.c.id))
        with self.engine.connect() as db:
            return [dict(r._mapping) for r in db.execute(query)]

    # -- adapters ----------------------------------------------------------------------------
    def add_adapter_version(self, version: AdapterVersion, episode_ids: list[int], feedback_ids: list[int] = ()) -> int:
        """Record an adapter version with what it learned from: episodes and feedback."""
        with self.engine.begin() as db:
            vid = db.execute(insert(schema.adapter_versions).values(**version.model_dump(exclude={"id"}))).inserted_primary_key[0]
            if episode_ids:
                db.execute(insert(schema.adapter_episodes), [{"adapter_version_id": vid, "episode_id": e} for e in episode_ids])
            if feedback_ids:
                db.execute(insert(schema.adapter_feedback), [{"adapter_version_id": vid, "feedback_id": f} for f in set(feedback_ids)])
            return vid

    def adapter_versions(self, worker: str) -> list[AdapterVersion]:
        with self.engine.connect() as db:
            rows = db.execute(
                select(schema.adapter_versions).where(schema.adapter_versions.c.worker == worker)
                .order_by(schema.adapter_versions.c.version)
            )
            return [AdapterVersion(**r._mapping) for r in rows]

    def trained_on(self, worker: str, version: int) -> list[int]:
        """Episode ids that trained `version` of `worker`, including those of its ancestors."""
        return self._lineage(worker, version, schema.adapter_episodes.c.episode_id)

    def feedback_learned(self, worker: str, version: int) -> list[int]:
        """Feedback ids that `version` of `worker` learned from, including those of its ancestors."""
        return self._lineage(worker, version, schema.adapter_feedback.c.feedback_id)

    def _lineage(self, worker: str, version: int, column) -> list[int]:
        by_version = {v.version: v for v in self.adapter_versions(worker)}
        ids: list[int] = []
        with self.engine.connect() as db:
            while version in by_version:
                row = by_version[version]
                ids += db.execute(select(column).where(column.table.c.adapter_version_id == row.id)).scalars().all()
                version = row.parent
        return sorted(ids)

    # -- live worker adapters -----------------------------------------------------------------
    def release_worker(self, worker: str, version: int, reason: str) -> None:
        """Make adapter `version` of `worker` the live one (0: the core alone); a rollback may only
        name a version that was live before."""
        known = {v.version for v in self.adapter_versions(worker)} | {0}
        if version not in known:
            raise ValueError(f"worker {worker!r} has no adapter version {version}; versions: "
                             f"{', '.join(map(str, sorted(known)))}")
        if reason == "rollback" and version not in self.released_worker_versions(worker):
            raise ValueError(f"adapter version {version} of {worker!r} was never live, so it cannot be rolled back to")
        with self.engine.begin() as db:
            db.execute(insert(schema.worker_releases).values(worker=worker, adapter_version=version, reason=reason,
                                                             created_at=now()))

    def released_worker_versions(self, worker: str) -> set[int]:
        wr = schema.worker_releases
        with self.engine.connect() as db:
            return {0} | set(db.execute(select(wr.c.adapter_version).where(wr.c.worker == worker)).scalars())

    # -- evals -------------------------------------------------------------------------------
    def add_eval(self, result: EvalResult) -> int:
        with self.engine.begin() as db:
            return db.execute(insert(schema.evals).values(**result.model_dump(exclude={"id"}))).inserted_primary_key[0]

    def evals(self, worker: str | None = None) -> list[EvalResult]:
        query = select(schema.evals).order_by(schema.evals.c.id)
        if worker is not None:
            query = query.where(schema.evals.c.worker == worker)
        with self.engine.connect() as db:
            return [EvalResult(**(dict(r._mapping) | {"core_version": r.core_version or 0})) for r in db.execute(query)]

    # -- core versions, releases, gate decisions ----------------------------------------------
    def add_core_version(self, core: CoreVersion) -> int:
        with self.engine.begin() as db:
            db.execute(insert(schema.core_versions).values(**core.model_dump()))
        return core.version

    def next_core_version(self) -> int:
        with self.engine.connect() as db:
            return (db.execute(select(func.max(schema.core_versions.c.version))).scalar_one() or 0) + 1

    def core_versions(self) -> list[CoreVersion]:
        with self.engine.connect() as db:
            rows = db.execute(select(schema.core_versions).order_by(schema.core_versions.c.version))
            return [CoreVersion(**r._mapping) for r in rows]

    def release(self, version: int, reason: str = "release") -> None:
        """Make core `version` current (0: the base core); a rollback may only name a version that was released."""
        known = {c.version for c in self.core_versions()} | {0}
        if version not in known:
            raise ValueError(f"no core version {version}; versions: {', '.join(map(str, sorted(known)))}")
        if reason == "rollback" and version not in self.released_versions():
            raise ValueError(f"core version {version} was never released (refused by its gate), so it cannot be rolled back to")
        with self.engine.begin() as db:
            db.execute(insert(schema.releases).values(core_version=version, reason=reason, created_at=now()))

    def released_versions(self) -> set[int]:
        with self.engine.connect() as db:
            return {0} | {r.core_version for r in db.execute(select(schema.releases.c.core_version))}

    def current_core(self) -> int:
        """The current core version: the latest release or rollback (0, the base core, if none)."""
        with self.engine.connect() as db:
            row = db.execute(select(schema.releases.c.core_version).order_by(schema.releases.c.id.desc())).first()
        return row.core_version if row else 0

    def add_decision(self, decision: GateDecision) -> int:
        with self.engine.begin() as db:
            values = decision.model_dump(exclude={"id"}, mode="json") | {"created_at": decision.created_at}
            return db.execute(insert(schema.gate_decisions).values(**values)).inserted_primary_key[0]

    def decisions(self, candidate: str | None = None) -> list[GateDecision]:
        query = select(schema.gate_decisions).order_by(schema.gate_decisions.c.id)
        if candidate is not None:
            query = query.where(schema.gate_decisions.c.candidate == candidate)
        with self.engine.connect() as db:
            return [GateDecision(**r._mapping) for r in db.execute(query)]

    def decisions_like(self, prefix: str) -> list[GateDecision]:
        """Gate decisions whose candidate starts with `prefix` (e.g. "worker:arith:"), oldest first."""
        gd = schema.gate_decisions
        query = select(gd).where(gd.c.candidate.startswith(prefix, autoescape=True)).order_by(gd.c.id)
        with self.engine.connect() as db:
            return [GateDecision(**r._mapping) for r in db.execute(query)]

    def table_rows(self, name: str) -> list[dict]:
        """Every row of a small table (releases, worker releases); `export.table_batches` for the large ones."""
        with self.engine.connect() as db:
            return [dict(r._mapping) for r in db.execute(select(schema.metadata.tables[name]))]


def _storable(row_id: int) -> bool:
    """Whether a row id fits a 64-bit integer column; one that does not names no row (and would make the
    database driver raise OverflowError instead of finding nothing)."""
    return -(1 << 63) <= row_id < (1 << 63)

