"""The experience store: one database (SQLite file in the hive by default) plus artifact folders."""

from __future__ import annotations

from pathlib import Path

from sqlalchemy import create_engine, event, func, insert, select, update

from apiary.store import schema
from apiary.store.records import AdapterVersion, Episode, EvalResult, Run, now


class Store:
    """Every episode, run, adapter version and eval of a hive, with provenance."""

    def __init__(self, hive: str | Path, url: str | None = None):
        self.root = Path(hive)
        self.root.mkdir(parents=True, exist_ok=True)
        self.url = url or f"sqlite:///{self.root / 'hive.db'}"
        self.engine = create_engine(self.url)
        if self.url.startswith("sqlite"):
            event.listen(self.engine, "connect", _sqlite_pragmas)
        schema.metadata.create_all(self.engine)

    # -- paths -------------------------------------------------------------------------------
    def adapter_dir(self, worker: str, version: int) -> Path:
        return self.root / "adapters" / worker / f"v{version}"

    def checkpoint_dir(self, worker: str) -> Path:
        return self.root / "checkpoints" / worker

    # -- workers -----------------------------------------------------------------------------
    def ensure_worker(self, name: str, job: str, core: str, job_spec: dict) -> None:
        with self.engine.begin() as db:
            row = db.execute(select(schema.workers).where(schema.workers.c.name == name)).first()
            if row is None:
                db.execute(insert(schema.workers).values(name=name, job=job, core=core, job_spec=job_spec, created_at=now()))
            elif row.job != job:
                raise ValueError(f"worker {name!r} already works on job {row.job!r}, not {job!r}; pick another name")

    def workers(self) -> list[dict]:
        with self.engine.connect() as db:
            return [dict(r._mapping) for r in db.execute(select(schema.workers).order_by(schema.workers.c.name))]

    # -- runs --------------------------------------------------------------------------------
    def start_run(self, run: Run) -> int:
        with self.engine.begin() as db:
            return db.execute(insert(schema.runs).values(**run.model_dump(exclude={"id"}))).inserted_primary_key[0]

    def update_run(self, run_id: int, **values) -> None:
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
        with self.engine.begin() as db:
            return [
                db.execute(insert(schema.episodes).values(**e.model_dump(exclude={"id"}))).inserted_primary_key[0]
                for e in items
            ]

    def episodes(self, worker: str | None = None, run_id: int | None = None) -> list[Episode]:
        query = select(schema.episodes).order_by(schema.episodes.c.id)
        if worker is not None:
            query = query.where(schema.episodes.c.worker == worker)
        if run_id is not None:
            query = query.where(schema.episodes.c.run_id == run_id)
        with self.engine.connect() as db:
            return [Episode(**r._mapping) for r in db.execute(query)]

    def count_episodes(self, worker: str | None = None) -> int:
        query = select(func.count()).select_from(schema.episodes)
        if worker is not None:
            query = query.where(schema.episodes.c.worker == worker)
        with self.engine.connect() as db:
            return db.execute(query).scalar_one()

    # -- adapters ----------------------------------------------------------------------------
    def add_adapter_version(self, version: AdapterVersion, episode_ids: list[int]) -> int:
        with self.engine.begin() as db:
            vid = db.execute(insert(schema.adapter_versions).values(**version.model_dump(exclude={"id"}))).inserted_primary_key[0]
            if episode_ids:
                db.execute(insert(schema.adapter_episodes), [{"adapter_version_id": vid, "episode_id": e} for e in episode_ids])
            return vid

    def adapter_versions(self, worker: str) -> list[AdapterVersion]:
        with self.engine.connect() as db:
            rows = db.execute(
                select(schema.adapter_versions).where(schema.adapter_versions.c.worker == worker)
                .order_by(schema.adapter_versions.c.version)
            )
            return [AdapterVersion(**r._mapping) for r in rows]

    def latest_adapter(self, worker: str) -> AdapterVersion | None:
        versions = self.adapter_versions(worker)
        return versions[-1] if versions else None

    def trained_on(self, worker: str, version: int) -> list[int]:
        """Episode ids that trained `version` of `worker`, including those of its ancestors."""
        by_version = {v.version: v for v in self.adapter_versions(worker)}
        ids: list[int] = []
        with self.engine.connect() as db:
            while version in by_version:
                row = by_version[version]
                ids += db.execute(
                    select(schema.adapter_episodes.c.episode_id).where(schema.adapter_episodes.c.adapter_version_id == row.id)
                ).scalars().all()
                version = row.parent
        return sorted(ids)

    # -- evals -------------------------------------------------------------------------------
    def add_eval(self, result: EvalResult) -> int:
        with self.engine.begin() as db:
            return db.execute(insert(schema.evals).values(**result.model_dump(exclude={"id"}))).inserted_primary_key[0]

    def evals(self, worker: str | None = None) -> list[EvalResult]:
        query = select(schema.evals).order_by(schema.evals.c.id)
        if worker is not None:
            query = query.where(schema.evals.c.worker == worker)
        with self.engine.connect() as db:
            return [EvalResult(**r._mapping) for r in db.execute(query)]

    def table_rows(self, name: str) -> list[dict]:
        with self.engine.connect() as db:
            return [dict(r._mapping) for r in db.execute(select(schema.metadata.tables[name]))]


def _sqlite_pragmas(connection, _record) -> None:
    cursor = connection.cursor()
    cursor.execute("PRAGMA journal_mode=WAL")
    cursor.execute("PRAGMA foreign_keys=ON")
    cursor.close()
