"""A worker learning on its job: the loop around a learner that makes it durable.

Every step's episodes are committed to the store before the adapter is updated. Every
`checkpoint_every` steps the adapter is saved as a new version (safetensors, atomically) with
the ids of the episodes that trained it, plus the optimizer state. A run killed at any point
resumes from its last checkpoint; episodes recorded after it stay in the store, linked to no
adapter version, because no saved adapter learned from them.
"""

from __future__ import annotations

import io
import time
from dataclasses import dataclass, field

import torch
from rich.progress import BarColumn, Progress, TextColumn, TimeElapsedColumn

from apiary.jobs.base import Job
from apiary.learners.grpo import GRPOConfig, GRPOLearner, StepStats
from apiary.models import adapters
from apiary.models.adapters import LoraSpec
from apiary.models.core import Core
from apiary.store.artifacts import atomic_write_bytes, atomic_write_json, read_json
from apiary.store.records import AdapterVersion, Episode, Run, now
from apiary.store.store import Store


@dataclass
class Budget:
    steps: int | None = None
    minutes: float | None = None

    def done(self, steps: int, seconds: float) -> bool:
        if self.steps is None and self.minutes is None:
            raise ValueError("give a budget: steps or minutes")
        return (self.steps is not None and steps >= self.steps) or (self.minutes is not None and seconds >= self.minutes * 60)


@dataclass
class RunSummary:
    run_id: int
    steps: int
    episodes: int
    seconds: float
    start_version: int
    version: int
    resumed: bool
    generated_tokens: int = 0
    trained_tokens: int = 0
    generate_seconds: float = 0.0
    train_seconds: float = 0.0
    rewards: list[float] = field(default_factory=list)


@dataclass
class _RunState:
    run_id: int
    step: int = 0
    cursor: int = 0
    version: int = 0
    seconds: float = 0.0
    pending: list[int] = field(default_factory=list)  # episode ids since the last saved version


def learn(store: Store, core: Core, job: Job, worker: str, budget: Budget, config: GRPOConfig | None = None,
          lora: LoraSpec | None = None, checkpoint_every: int = 5, seed: int = 0, show_progress: bool = True,
          on_step=None) -> tuple[torch.nn.Module, RunSummary]:
    """Train `worker` on `job` within `budget`; returns the model (core + adapter) and a summary."""
    config, lora = config or GRPOConfig(), lora or LoraSpec()
    store.ensure_worker(worker, job.name, core.name, job.describe())
    state, resumed = _open_run(store, worker, job, config, checkpoint_every)
    latest = store.latest_adapter(worker)
    model = adapters.attach(core.model, lora, path=store.adapter_dir(worker, latest.version) if latest else None)
    learner = GRPOLearner(model, core.tokenizer, job, config, core.stop_token_ids, seed=seed)
    if resumed:
        _load_checkpoint(store, worker, learner)
    summary = RunSummary(run_id=state.run_id, steps=0, episodes=0, seconds=0.0, start_version=state.version,
                         version=state.version, resumed=resumed)
    try:
        with _progress(show_progress) as bar:
            task = bar.add_task(f"{worker} on {job.name}", total=budget.steps or int((budget.minutes or 0) * 60))
            while not budget.done(summary.steps, summary.seconds):
                stats = _one_step(store, job, worker, learner, state)
                _account(summary, stats)
                bar.update(task, advance=1 if budget.steps else stats.generate_seconds + stats.train_seconds,
                           description=f"{worker} on {job.name}  step {state.step}  reward {stats.reward_mean:.2f}")
                if on_step is not None:
                    on_step(state.step, stats, model)
                if state.step % checkpoint_every == 0 and not budget.done(summary.steps, summary.seconds):
                    _checkpoint(store, worker, model, learner, state, final=False)
        if state.pending:
            _checkpoint(store, worker, model, learner, state, final=True)
        store.update_run(state.run_id, status="finished", step=state.step, finished_at=now())
    except BaseException:
        store.update_run(state.run_id, status="interrupted", step=state.step)
        adapters.detach(model)  # give the core back untouched
        raise
    summary.version = state.version
    return model, summary


def _open_run(store: Store, worker: str, job: Job, config: GRPOConfig, checkpoint_every: int) -> tuple[_RunState, bool]:
    """Resume the worker's unfinished run if there is one, else start a new run."""
    unfinished = store.unfinished_run(worker)
    state_file = store.checkpoint_dir(worker) / "state.json"
    if unfinished is not None and state_file.is_file():
        saved = read_json(state_file)
        if saved["run_id"] == unfinished.id:
            store.update_run(unfinished.id, status="running")
            latest = store.latest_adapter(worker)  # the store, not the state file, is the commit point
            return _RunState(run_id=unfinished.id, step=saved["step"], cursor=saved["cursor"],
                             version=latest.version if latest else 0, seconds=saved["seconds"]), True
    if unfinished is not None:  # killed before its first checkpoint: nothing to resume from
        store.update_run(unfinished.id, status="interrupted")
    latest = store.latest_adapter(worker)
    previous = read_json(state_file) if state_file.is_file() else {}
    run = Run(worker=worker, job=job.name, learner=GRPOLearner.name,
              config={**config.__dict__, "checkpoint_every": checkpoint_every})
    return _RunState(run_id=store.start_run(run), cursor=previous.get("cursor", 0),
                     version=latest.version if latest else 0), False


def _one_step(store: Store, job: Job, worker: str, learner: GRPOLearner, state: _RunState) -> StepStats:
    tasks = job.source.train(state.cursor, learner.config.prompts_per_step)
    samples, stats = learner.step(tasks)
    episodes = [
        Episode(job=job.name, task_id=s.task.id, messages=job.messages(s.task), completion=s.completion, score=s.reward,
                worker=worker, adapter_version=state.version, run_id=state.run_id, step=state.step)
        for s in samples
    ]
    state.pending += store.add_episodes(episodes)
    state.cursor += len(tasks)
    state.step += 1
    state.seconds += stats.generate_seconds + stats.train_seconds
    stats.extra["episodes"] = len(episodes)
    return stats


def _account(summary: RunSummary, stats: StepStats) -> None:
    summary.steps += 1
    summary.episodes += stats.extra["episodes"]
    summary.seconds += stats.generate_seconds + stats.train_seconds
    summary.generated_tokens += stats.generated_tokens
    summary.trained_tokens += stats.trained_tokens
    summary.generate_seconds += stats.generate_seconds
    summary.train_seconds += stats.train_seconds
    summary.rewards.append(stats.reward_mean)


def _checkpoint(store: Store, worker: str, model, learner: GRPOLearner, state: _RunState, final: bool) -> None:
    """Save adapter version N+1, then optimizer + run state, then the store record (the commit point)."""
    version = state.version + 1
    adapters.save(model, store.adapter_dir(worker, version))
    directory = store.checkpoint_dir(worker)
    buffer = io.BytesIO()
    torch.save({"optimizer": learner.optimizer.state_dict(), "generator": learner.generator.get_state()}, buffer)
    atomic_write_bytes(directory / "optimizer.pt", buffer.getvalue())
    record = AdapterVersion(worker=worker, version=version, parent=state.version, path=str(store.adapter_dir(worker, version)),
                            run_id=state.run_id, step=state.step, final=final)
    store.add_adapter_version(record, state.pending)
    state.version, state.pending = version, []
    atomic_write_json(directory / "state.json", {"run_id": state.run_id, "step": state.step, "cursor": state.cursor,
                                                "version": version, "seconds": state.seconds})
    store.update_run(state.run_id, step=state.step)


def _load_checkpoint(store: Store, worker: str, learner: GRPOLearner) -> None:
    path = store.checkpoint_dir(worker) / "optimizer.pt"
    if path.is_file():
        saved = torch.load(path, weights_only=False)
        learner.optimizer.load_state_dict(saved["optimizer"])
        learner.generator.set_state(saved["generator"])


def _progress(show: bool) -> Progress:
    return Progress(TextColumn("{task.description}"), BarColumn(), TimeElapsedColumn(), disable=not show, transient=False)
