"""A worker handle: the worker's stored record, read once, with the job it works on and the core its
adapters sit on. Code below the Hive takes the handle and never looks the worker up again."""

from __future__ import annotations

from dataclasses import dataclass

from apiary.jobs.base import Job
from apiary.models.core import Core
from apiary.store.names import check_name
from apiary.store.records import Worker
from apiary.store.store import Store


@dataclass(frozen=True)
class WorkerHandle:
    """A worker (`record`: name, job, core version, tenant, live and latest adapter versions) with its
    job and core loaded. The record is a snapshot: read a new handle after the worker changed."""

    record: Worker
    job: Job
    core: Core

    @property
    def name(self) -> str:
        return self.record.name

    @property
    def live_version(self) -> int:
        return self.record.live_version

    @property
    def latest_version(self) -> int:
        return self.record.latest_version

    def version(self, named: int | None = None) -> int:
        """The adapter version to use: the one the user named (0: the core alone), else the live one."""
        if named is not None and not 0 <= named <= self.latest_version:
            raise ValueError(f"worker {self.name!r} has no adapter version {named}; versions: 0..{self.latest_version}")
        return self.live_version if named is None else named


def new_worker(name: str, job: Job, core: Core, tenant: str | None = None) -> Worker:
    """The record of a worker not yet in the store: on `core`, with no adapter version. Its name (and
    tenant) must follow the name rule: BadName before anything is measured or written."""
    check_name(name, "worker")
    if tenant is not None:
        check_name(tenant, "tenant")
    return Worker(name=name, job=job.name, core=core.name, job_spec=job.describe(), core_version=core.version,
                  tenant=tenant)


def worker_on(store: Store, name: str, job: Job, core: Core) -> WorkerHandle:
    """The worker `name` doing `job` with its adapters on `core`: its stored record, or a new record
    (stored by the worker's first learning run)."""
    return WorkerHandle(store.worker(name) or new_worker(name, job, core), job, core)

