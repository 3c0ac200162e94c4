"""The hive: the store, the core, and the workers learning on jobs. The Python API's engine."""

from __future__ import annotations

import os
import time
from pathlib import Path

from pydantic import BaseModel

from apiary.evals import simulated_people
from apiary.evals.heldout import evaluate
from apiary.hive.consolidate import ConsolidateConfig, ConsolidateResult, consolidate
from apiary.hive.status import status
from apiary.hive.training import Budget, learn
from apiary.jobs.base import Job
from apiary.jobs.spec import load_job
from apiary.learners.common import LearnerConfig
from apiary.learners.grpo import GRPOConfig, GRPOLearner
from apiary.learners.play import transcript_episode
from apiary.models import adapters
from apiary.models.adapters import LoraSpec
from apiary.models.core import Core, load_core, with_core_adapters
from apiary.store.export import export
from apiary.store.feedback import load_jsonl, make_feedback
from apiary.store.records import Episode, EvalResult, Feedback
from apiary.store.store import Store

DEFAULT_HIVE = "hive"


class LearnResult(BaseModel):
    worker: str
    job: str
    before: float
    after: float
    heldout_items: int
    episodes: int
    steps: int
    learn_seconds: float  # sampling + updates, evals excluded
    wall_seconds: float  # everything, evals included
    adapter_version: int
    run_id: int
    resumed: bool
    generate_tokens_per_s: float
    train_tokens_per_s: float
    learners: list[str] = ["rl"]
    feedback: int = 0  # pieces of feedback learned from, counting each epoch
    long_horizon: dict | None = None  # multi-turn jobs: {"before": metrics, "after": metrics} (evals.long_horizon)


class Hive:
    """A hive directory (or database URL) and the core its workers start from."""

    def __init__(self, path: str | Path | None = None, core: str | None = None, db_url: str | None = None):
        self.path = Path(path or os.environ.get("APIARY_HIVE", DEFAULT_HIVE))
        self.store = Store(self.path, url=db_url)
        self.core_source = core
        self._cores: dict[int, Core] = {}

    @property
    def core(self) -> Core:
        """The current core: the latest released core version (the base core until one is released).
        New workers start from it."""
        return self.core_at(self.store.current_core())

    def core_at(self, version: int) -> Core:
        """Core version `version`: the base core with the core adapters of its lineage folded in."""
        if version not in self._cores:
            chain, known = [], {c.version: c for c in self.store.core_versions()}
            v = version
            while v != 0:
                if v not in known:
                    raise ValueError(f"no core version {v} in hive {self.path}")
                chain.append(Path(known[v].path))
                v = known[v].parent
            base = load_core(self.core_source)
            self._cores[version] = with_core_adapters(base, chain[::-1], version) if chain else base
        return self._cores[version]

    def worker_core(self, worker: str) -> Core:
        """The core a worker's adapters sit on (the current core for a worker not yet created)."""
        row = self.store.worker(worker)
        return self.core_at(row["core_version"]) if row else self.core

    def job(self, spec: Job | str | Path, overrides: list[str] | None = None) -> Job:
        return spec if isinstance(spec, Job) else load_job(spec, overrides)

    def learn(self, job: Job | str, worker: str, *, minutes: float | None = None, steps: int | None = None,
              learners: list[str] = ("rl",), config: GRPOConfig | None = None,
              configs: dict[str, LearnerConfig] | None = None,
              lora: LoraSpec | None = None, overrides: list[str] | None = None, checkpoint_every: int = 5,
              show_progress: bool = True, release: bool = True, start_version: int | None = None) -> LearnResult:
        """Evaluate, learn within the budget, evaluate again. `learners`: any of rl, rewards,
        corrections, critiques, preferences, practice; feedback learners alone need no budget
        (they stop when the worker's unlearned feedback is used up). `configs`: settings by learner
        name (e.g. {"corrections": CorrectionsConfig(learning_rate=1e-4)}); `config`: the rl learner's. `release`: make the version it
        ends with the live one (what a server serves); the server's own learning passes False and
        releases only past the gate. `start_version`: learn on from this adapter version rather than
        the latest (the server passes the live one, so a refused version is never built on)."""
        started = time.perf_counter()
        job = self.job(job, overrides)
        core = self.worker_core(worker)
        latest = self.store.latest_adapter(worker)
        start = start_version if start_version is not None else latest.version if latest else 0
        before = self._eval_version(job, worker if start else None, start, core=core)
        model, run = learn(self.store, core, job, worker, Budget(steps=steps, minutes=minutes), config, lora,
                           checkpoint_every=checkpoint_every, show_progress=show_progress, learners=learners,
                           configs=configs, start_version=start_version)
        try:
            after = self._record(evaluate(model, core.tokenizer, job, core.stop_token_ids, worker=worker,
                                          adapter_version=run.version, core_version=core.version))
        finally:
            adapters.detach(model)
        if release and run.version != run.start_version:
            self.store.release_worker(worker, run.version, "learn")
        return LearnResult(
            worker=worker, job=job.name, before=before.score, after=after.score, heldout_items=after.n,
            episodes=run.episodes, steps=run.steps, learn_seconds=run.seconds,
            wall_seconds=time.perf_counter() - started, adapter_version=run.version, run_id=run.run_id,
            resumed=run.resumed,
            long_horizon={"before": before.details["long_horizon"], "after": after.details["long_horizon"]}
            if "long_horizon" in after.details else None,
            generate_tokens_per_s=run.generated_tokens / max(run.generate_seconds, 1e-9),
            train_tokens_per_s=run.trained_tokens / max(run.train_seconds, 1e-9),
            learners=run.learners, feedback=run.feedback,
        )

    def attempt(self, job: Job | str, worker: str, n: int = 16, *, samples: int = 1, temperature: float | None = None,
                start: int | None = None, overrides: list[str] | None = None) -> list[Episode]:
        """The worker's live adapter (what a server answers with) answers `n` training tasks of its job,
        `samples` times each (greedy for one sample, temperature 0.7 for more); the answers are stored as episodes
        (origin "attempt") that can receive feedback. `start`: first task of the training stream
        (default: the next one this worker has not attempted)."""
        job = self.job(job, overrides)
        self.store.ensure_worker(worker, job.name, self.core.name, job.describe(), self.store.current_core())
        core = self.worker_core(worker)
        version = self.store.live_adapter(worker)
        start = self.store.count_attempted_tasks(worker) if start is None else start
        temperature = (0.0 if samples == 1 else 0.7) if temperature is None else temperature
        config = GRPOConfig(samples_per_prompt=samples, temperature=temperature)
        model = adapters.attach(core.model, LoraSpec(), path=self.store.adapter_dir(worker, version) if version else None)
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
        return self.store.feedback_log(worker)

    def eval(self, worker: str | None = None, jobs: list[Job | str] | None = None) -> list[EvalResult]:
        """Held-out scores: a worker's latest adapter on its job, or the core on the given jobs."""
        if worker is not None:
            latest = self.store.latest_adapter(worker)
            job = self.job(*self._worker_job(worker)) if not jobs else self.job(jobs[0])
            return [self._eval_version(job, worker if latest else None, latest.version if latest else 0, reuse=False)]
        if jobs:
            return [self._eval_version(self.job(j), None, 0, reuse=False) for j in jobs]  # the current core
        results = []
        for row in self.store.workers():
            results += self.eval(worker=row["name"])
        return results

    def consolidate(self, method: str = "distill", *, config: ConsolidateConfig | None = None,
                    workers: list[str] | None = None, jobs: dict[str, Job] | None = None,
                    show_progress: bool = True) -> ConsolidateResult:
        """Build a candidate core from the workers on the current core (`method`: distill, linear,
        ties, dare_linear), measure it, and release it if it passes the gate (see hive.consolidate)."""
        config = config or ConsolidateConfig(method=method)
        return consolidate(self, config, workers, jobs, show_progress)

    def rollback(self, version: int, worker: str | None = None) -> int:
        """Make an earlier released core version (0: the base core) current again, or, with `worker`,
        an adapter version of that worker that was live before (0: the core alone); returns it.
        A running server switches to it within a second."""
        if worker is not None:
            if self.store.worker(worker) is None:
                raise ValueError(f"no worker named {worker!r} in hive {self.path}")
            self.store.release_worker(worker, version, reason="rollback")
            return self.store.live_adapter(worker)
        self.store.release(version, reason="rollback")
        return self.store.current_core()

    def deploy(self, job: Job | str, worker: str, tenant: str | None = None, overrides: list[str] | None = None) -> dict:
        """Create a worker on a job (on the current core, no adapter yet), reachable by `tenant`
        through a server (None: the local tenant). Returns its row."""
        job = self.job(job, overrides)
        self.store.ensure_worker(worker, job.name, self.core.name, job.describe(), self.store.current_core(), tenant)
        return self.store.worker(worker)

    def status(self) -> dict:
        """Core versions (released or refused, and why), workers and their held-out scores."""
        return status(self.store)

    def export(self, out: str | Path | None = None, fmt: str = "parquet") -> dict:
        return export(self.store, Path(out) if out else self.path / "export", fmt)

    def _worker_job(self, worker: str) -> tuple[str, list[str]]:
        for row in self.store.workers():
            if row["name"] == worker:
                origin = row["job_spec"].get("origin")
                if not origin:
                    raise ValueError(f"worker {worker!r} was trained on a job defined in Python; pass the job to eval")
                return origin["spec"], origin["overrides"]
        raise ValueError(f"no worker named {worker!r} in hive {self.path}")

    def eval_core(self, job: Job, version: int) -> EvalResult:
        """Held-out eval of core version `version` on job (a stored result is reused)."""
        return self._eval_version(job, None, 0, core=self.core_at(version))

    def latest_eval(self, worker: str, job: Job) -> EvalResult:
        """Held-out eval of the worker's latest adapter version on job (a stored result is reused)."""
        latest = self.store.latest_adapter(worker)
        return self._eval_version(job, worker if latest else None, latest.version if latest else 0,
                                  core=self.worker_core(worker))

    def _eval_version(self, job: Job, worker: str | None, version: int, reuse: bool = True,
                      core: Core | None = None) -> EvalResult:
        """Held-out eval of (worker, version) on job; reuses a stored result on the same held-out items."""
        core = core or (self.worker_core(worker) if worker else self.core)
        task_ids = [t.id for t in job.source.heldout()]
        if reuse:
            for old in reversed(self.store.evals(worker)):
                if (old.job == job.name and old.adapter_version == version and old.worker == worker
                        and old.core_version == core.version and old.details.get("task_ids") == task_ids):
                    return old
        model = core.model
        if version:
            model = adapters.attach(model, LoraSpec(), path=self.store.adapter_dir(worker, version))
        try:
            result = evaluate(model, core.tokenizer, job, core.stop_token_ids, worker=worker, adapter_version=version,
                              core_version=core.version)
        finally:
            if version:
                adapters.detach(model)
        return self._record(result)

    def _record(self, result: EvalResult) -> EvalResult:
        result.id = self.store.add_eval(result)
        return result
