"""The hive: the store, the core, and the workers learning on jobs. The Python API's engine."""

from __future__ import annotations

import os
from dataclasses import replace
from pathlib import Path

from apiary.evals import simulated_people
from apiary.evals.gate import GateConfig
from apiary.hive.consolidate import ConsolidateConfig, ConsolidateResult
from apiary.hive.document_learning import Added, add
from apiary.hive.cluster import HiveAddress, LearnPlan, learn_on_cluster, ray_address
from apiary.hive.cluster_tasks import ConsolidatePlan, EvalPlan, consolidate_on_cluster, eval_on_cluster
from apiary.hive.cores import Cores
from apiary.hive.evaluator import Evaluator
from apiary.hive.mix import DEFAULT_LEARNERS
from apiary.hive.learning import LearnResult, learn_worker
from apiary.hive.status import status
from apiary.hive.training import Budget
from apiary.hive.worker import WorkerHandle, new_worker
from apiary.hive.worker_gate import Release, WorkerGateResult, gate_worker
from apiary.jobs.base import Job
from apiary.jobs.documents import with_added
from apiary.jobs.spec import load_job
from apiary.learners.common import LearnerConfig
from apiary.learners.grpo import GRPOConfig, GRPOLearner
from apiary.learners.play import transcript_episode
from apiary.models import adapters
from apiary.models.adapters import LoraSpec
from apiary.models.core import Core
from apiary.store.documents import BadDocument, pull
from apiary.store.export import export
from apiary.store.feedback import load_jsonl, make_feedback
from apiary.store.records import Episode, EvalResult, Feedback, Worker
from apiary.store.store import Store

DEFAULT_HIVE = "hive"
__all__ = ["DEFAULT_HIVE", "Hive", "LearnPlan", "LearnResult"]


class Hive:
    """A hive directory (or database URL) and the core its workers start from. It composes the store,
    the core versions (`cores`) and the held-out evaluator, and hands each worker down as a handle
    read once from the store (`worker`). The store is `db_url` (default $APIARY_STORE_URL, e.g. a
    PostgreSQL URL), else the hive directory's own SQLite file. Artifacts are written in the hive directory
    and, with `artifacts_url` (default $APIARY_ARTIFACTS_URL: a shared directory or s3://BUCKET/PREFIX),
    published there too and fetched from there by any node that lacks them (store.remote)."""

    def __init__(self, path: str | Path | None = None, core: str | None = None, db_url: str | None = None,
                 template: str | None = None, artifacts_url: str | None = None):
        self.path = Path(path or os.environ.get("APIARY_HIVE", DEFAULT_HIVE))
        self.store = Store(self.path, url=db_url or os.environ.get("APIARY_STORE_URL") or None,
                           artifacts=artifacts_url or os.environ.get("APIARY_ARTIFACTS_URL") or None)
        self.core_source, self.template = core, template  # template: the prompt format (models.prompt_format)
        self.cores = Cores(self.store, core, template)
        self.evaluator = Evaluator(self.store, self.cores)

    @property
    def core(self) -> Core:
        """The current core: the latest released core version (the base core until one is released).
        New workers start from it."""
        return self.cores.current

    def core_at(self, version: int) -> Core:
        """Core version `version`: the base core with the core adapters of its lineage folded in."""
        return self.cores.at(version)

    def worker(self, name: str | Worker, job: Job | str | None = None, overrides: list[str] | None = None) -> WorkerHandle:
        """The worker, read once from the store, with its job (`job`, or the one it was made with, rebuilt
        from its spec; a documents job with the documents added to the worker) and the core version its
        adapters sit on."""
        record = name if isinstance(name, Worker) else self.store.worker(name)
        if record is None:
            raise ValueError(f"no worker named {name!r} in hive {self.path}")
        if job is None and record.origin is None:
            raise ValueError(f"worker {record.name!r} learned a job defined in Python; pass the job")
        job = self.job(job, overrides) if job is not None else load_job(*record.origin)
        return WorkerHandle(record, self.worker_job(record.name, job), self.cores.at(record.core_version))

    def worker_job(self, worker: str, job: Job) -> Job:
        """`job` as the worker does it: a documents job reads the documents added to the worker too (store.documents)."""
        return with_added(job, pull(self.store.root, worker, self.store.shared))

    def add_documents(self, worker: str, documents: list[tuple[str, str]]) -> list[Added]:
        """Add (name, text) documents to a worker whose job is a documents job (docs:PATH), all or none
        (BadDocument saying why, nothing written): from then on its job reads them, and a server learns
        them in the background (hive.document_learning). The job is rebuilt from its stored spec only when
        the spec says it is a documents job."""
        record = self.store.worker(worker)
        if record is None:
            raise ValueError(f"no worker named {worker!r} in hive {self.path}")
        if (record.job_spec.get("source") or {}).get("kind") != "documents" or record.origin is None:
            raise BadDocument(f"worker {worker!r} does not learn documents: documents are added to a worker whose job "
                              "is a documents job (docs:PATH)")
        return add(self.store, worker, self.worker_job(worker, load_job(*record.origin)), list(documents))

    def job(self, spec: Job | str | Path, overrides: list[str] | None = None) -> Job:
        return spec if isinstance(spec, Job) else load_job(spec, overrides)

    def learn(self, job: Job | str, worker: str, *, minutes: float | None = None, steps: int | None = None,
              learners: list[str] = DEFAULT_LEARNERS, config: GRPOConfig | None = None,
              configs: dict[str, LearnerConfig] | None = None,
              lora: LoraSpec | None = None, overrides: list[str] | None = None, checkpoint_every: int = 5,
              show_progress: bool = True, release: Release | str = Release.GATED, gate: GateConfig | None = None,
              start_version: int | None = None, seed: int = 0) -> LearnResult:
        """Evaluate, learn within the budget, evaluate again, and put the new version through the worker
        gate (`gate`: default, the default gate). `learners`: any of hive.mix.LEARNERS (default: rl with
        distil_back's phases toward the core, hive.mix.DEFAULT_LEARNERS; exactly those named run, so a feedback
        run distils back only if "distil_back" is among them); feedback learners alone need no budget (they stop
        when the worker's unlearned feedback is used up). A new worker starts on the current core. `configs`: settings by
        learner name (e.g. {"corrections": CorrectionsConfig(learning_rate=1e-4)}); `config`: the rl
        learner's. `start_version`: learn on from this adapter version rather than the live one (what a
        server serves). `release`: "gated" (default: live only if it passed), "ungated" (live without
        passing the gate: the user's override, recorded; retention is not measured) or "none" (measured
        and recorded, not released)."""
        job = self.job(job, overrides)
        record = self.store.worker(worker) or new_worker(worker, job, self.core)
        handle = WorkerHandle(record, self.worker_job(worker, job), self.cores.at(record.core_version))
        return learn_worker(self.store, self.evaluator, handle, Budget(steps=steps, minutes=minutes), learners=learners,
                            config=config, configs=configs, lora=lora, checkpoint_every=checkpoint_every,
                            show_progress=show_progress, release=release, gate=gate, start_version=start_version,
                            seed=seed)

    def learn_many(self, plans: list[LearnPlan], *, cluster: str | None = None, cpus_per_worker: float = 1,
                   ) -> list[LearnResult]:
        """Several workers learn (one LearnPlan each, one run per worker). With a Ray address (`cluster`, else
        $RAY_ADDRESS; "auto" finds a running cluster, "local" starts one here) each run is a Ray actor with
        `cpus_per_worker` CPUs and the runs go on at once, each opening this hive (its directory and store
        must be reachable from every node; see docs/scaling.md); without one they run one after another in
        this process and Ray is not imported. Results in the plans' order; if some runs failed while others
        finished, hive.cluster.WorkersFailed carries both (a failed worker resumes from its checkpoint)."""
        workers = [plan.worker for plan in plans]
        if len(set(workers)) != len(workers):
            raise ValueError(f"each worker learns in one run at a time: {workers} names one twice")
        address = ray_address(cluster)
        if address is None:
            return [plan.run(self) for plan in plans]
        return learn_on_cluster(self.hive_address(), plans, address, cpus_per_worker)

    def hive_address(self) -> HiveAddress:
        """What a node of a Ray cluster needs to open this hive: its directory, store URL, core, prompt format
        and artifact URL (the directory and the store must be reachable from every node)."""
        return HiveAddress(str(self.path.resolve()), self.store.url, self.core_source, self.template,
                           self.store.shared.url if self.store.shared else None)

    def attempt(self, job: Job | str, worker: str, n: int = 16, *, samples: int = 1, temperature: float | None = None,
                start: int | None = None, overrides: list[str] | None = None) -> list[Episode]:
        """The worker's live adapter (what a server answers with) answers `n` training tasks of its job,
        `samples` times each (greedy for one sample, temperature 0.7 for more); the answers are stored as episodes
        (origin "attempt") that can receive feedback. `start`: first task of the training stream
        (default: the next one this worker has not attempted)."""
        job = self.job(job, overrides)
        self.store.ensure_worker(worker, job.name, self.core.name, job.describe(), self.store.current_core(),
                                 prompt_format=self.core.prompt_format.name)
        handle = self.worker(worker, job)
        core, version = handle.core, handle.live_version
        start = self.store.count_attempted_tasks(worker) if start is None else start
        temperature = (0.0 if samples == 1 else 0.7) if temperature is None else temperature
        config = GRPOConfig(samples_per_prompt=samples, temperature=temperature)
        model = adapters.attach(core.model, LoraSpec(), path=self.store.fetched(self.store.adapter_dir(worker, version)) if version else None)
        try:  # a multi-turn job plays whole episodes
            rollouts = GRPOLearner(model, core.tokenizer, job, config, core.stop_token_ids).rollout(job.source.train(start, n))
        finally:
            adapters.detach(model)
        episodes = [transcript_episode(job, t).model_copy(update={"origin": "attempt", "worker": worker,
                                                                  "adapter_version": version}) for t in rollouts]
        for episode, episode_id in zip(episodes, self.store.add_episodes(episodes)):
            episode.id = episode_id
        return episodes

    def feedback(self, episode_id: int, *, reward: float | None = None, correction: str | None = None,
                 critique: str | None = None, prefer: int | None = None, by: str = "user") -> Feedback:
        """Record one piece of feedback on an episode (exactly one of reward, correction, critique,
        prefer: the id of another episode of the same prompt that this one is better than).
        Refused with FeedbackError, and nothing written, if it is invalid."""
        item = make_feedback(episode_id, reward=reward, correction=correction, critique=critique, prefer=prefer, by=by)
        return self.store.add_feedback([item])[0]

    def add_feedback(self, items: list[Feedback] | str | Path) -> list[Feedback]:
        """Record many pieces of feedback, all or nothing: records, or a JSONL file with one object
        per line ({"episode_id": 12, "correction": "42"}, ...; errors name the line)."""
        if isinstance(items, (str, Path)):
            return self.store.add_feedback(*load_jsonl(Path(items)))
        return self.store.add_feedback(list(items))

    def simulate_feedback(self, worker: str, kind: str, n: int = 64, seed: int = 0, episodes: list[Episode] | None = None,
                          ) -> list[Feedback]:
        """Feedback from a simulated person (see evals.simulated_people) on the worker's attempts."""
        episodes = episodes if episodes is not None else [e for e in self.store.episodes(worker) if e.origin == "attempt"]
        return self.store.add_feedback(simulated_people.simulate(episodes, kind, n, seed))

    def feedback_log(self, worker: str) -> list[dict]:
        """Every piece of feedback on the worker's episodes and the adapter version that learned from it."""
        if self.store.worker(worker) is None:
            raise ValueError(f"no worker named {worker!r} in hive {self.path}")
        return self.store.feedback_log(worker)

    def eval(self, worker: str | None = None, jobs: list[Job | str] | None = None, version: int | None = None, *,
             workers: list[str] | None = None, cluster: str | None = None, cpus_per_worker: float = 1,
             ) -> list[EvalResult]:
        """Held-out scores, measured afresh: a worker's live adapter version (or `version`) on its job (or
        the first of `jobs`); several `workers`' live versions the same way; the current core on `jobs`; or,
        with none of these, every worker's live version. With a Ray address (`cluster`, else $RAY_ADDRESS,
        as learn_many) each eval is a Ray task of `cpus_per_worker` CPUs and they run at once, each opening
        this hive; results in the order asked, the same as here. If some failed while others finished,
        hive.cluster_tasks.TasksFailed carries both."""
        plans = self._eval_plans(worker, workers, jobs, version)
        address = ray_address(cluster)
        if address is None:
            return [plan.run(self) for plan in plans]
        return eval_on_cluster(self.hive_address(), plans, address, cpus_per_worker)

    def _eval_plans(self, worker: str | None, workers: list[str] | None, jobs: list[Job | str] | None,
                    version: int | None) -> list[EvalPlan]:
        if worker is not None and workers:
            raise ValueError("name one worker (--worker) or several (--workers), not both")
        names = [worker] if worker is not None else list(workers or [])
        if version is not None and len(names) != 1:
            raise ValueError("--version names an adapter version of a worker: give the worker too")
        if names:
            job = self.job(jobs[0]) if jobs else None
            return [EvalPlan(name, job, version) for name in names]
        if jobs:
            return [EvalPlan(None, self.job(j)) for j in jobs]
        return [EvalPlan(record.name) for record in self.store.workers()]

    def eval_core(self, job: Job, version: int) -> EvalResult:
        """Held-out eval of core version `version` on job (a stored result is reused)."""
        return self.evaluator.core(job, version)

    def eval_worker(self, worker: str, job: Job | None = None, version: int | None = None) -> EvalResult:
        """Held-out eval of the worker's live adapter version (or `version`) on `job` (default: its own;
        a stored result is reused)."""
        return self.evaluator.worker(self.worker(worker, job), version, job=job)

    def consolidate(self, method: str = "distill", *, config: ConsolidateConfig | None = None,
                    workers: list[str] | None = None, jobs: dict[str, Job] | None = None,
                    show_progress: bool = True, cluster: str | None = None, cpus: float = 1) -> ConsolidateResult:
        """Build a candidate core from the workers on the current core, each at its live adapter version
        (`method`: distill, linear, ties, dare_linear), measure it on every job of the hive, and release it
        if it passes the gate (see hive.consolidate). `jobs`: worker -> job, for jobs defined in Python.
        With a Ray address (`cluster`, else $RAY_ADDRESS, as learn_many) all of it runs as one Ray task of
        `cpus` CPUs that opens this hive on whichever node has them; without one it runs here and Ray is
        not imported."""
        plan = ConsolidatePlan(config or ConsolidateConfig(method=method), tuple(workers) if workers else None, jobs,
                               show_progress)
        address = ray_address(cluster)
        if address is None:
            return plan.run(self)
        return consolidate_on_cluster(self.hive_address(), replace(plan, show_progress=False), address, cpus)

    def gate(self, worker: str, version: int, config: GateConfig | None = None,
             release: Release | str = Release.GATED) -> WorkerGateResult:
        """The worker gate, as `learn` and a server run it: adapter `version` of the worker against its live
        version; the decision is stored, and the version released as `release` says (see Hive.learn)."""
        return gate_worker(self.store, self.evaluator, self.core_at(0), self.worker(worker), version, config or GateConfig(),
                           release)

    def rollback(self, version: int, worker: str | None = None) -> int:
        """Make an earlier released core version (0: the base core) current again, or, with `worker`,
        an adapter version of that worker that was live before (0: the core alone); returns it.
        A running server switches to it within a second."""
        if worker is not None:
            if self.store.worker(worker) is None:
                raise ValueError(f"no worker named {worker!r} in hive {self.path}")
            self.store.release_worker(worker, version, reason="rollback")
            return version
        self.store.release(version, reason="rollback")
        return self.store.current_core()

    def deploy(self, job: Job | str, worker: str, tenant: str | None = None, overrides: list[str] | None = None) -> Worker:
        """Create a worker on a job (on the current core, no adapter yet), reachable by `tenant`
        through a server (None: the local tenant). Returns its record."""
        job = self.job(job, overrides)
        self.store.ensure_worker(worker, job.name, self.core.name, job.describe(), self.store.current_core(),
                                 tenant, prompt_format=self.core.prompt_format.name)
        return self.store.worker(worker)

    def status(self) -> dict:
        """Core versions (released or refused, and why), workers and their held-out scores."""
        return status(self.store)

    def export(self, out: str | Path | None = None, fmt: str = "parquet") -> dict:
        return export(self.store, Path(out) if out else self.path / "export", fmt)
