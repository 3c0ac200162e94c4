"""A worker learning on its job: the loop around its learners that makes learning durable.

Each step, every learner of the run (RL from the job's scorer, and the learners that use
people's feedback or the worker's own practice) takes its next batch and makes one update of the
worker's adapter with its own optimizer, at its own learning rate (learners.common); the episodes
they wrote are committed to the store first. Every `checkpoint_every` steps the adapter is saved as
a new version (safetensors, atomically) with the ids of the episodes and feedback it learned from,
plus each learner's optimizer state and its position in its material. A run killed at any point
resumes from its last checkpoint; episodes recorded after it stay in the store, linked to no
adapter version, because no saved adapter learned from them.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import asdict, dataclass, field

import torch
from rich.progress import BarColumn, Progress, TextColumn, TimeElapsedColumn

from apiary.evals.givers import flagged_givers
from apiary.hive.mix import (FEEDBACK_KINDS, OPEN_ENDED, Batches, build_learners, check_learners, fill_queues, next_batch,
                             run_configs)
from apiary.hive.worker import WorkerHandle
from apiary.jobs.base import Job
from apiary.learners.common import LearnerConfig, LearnStep, StepStats
from apiary.learners.grpo import GRPOConfig
from apiary.models import adapters
from apiary.models.adapters import LoraSpec
from apiary.store.artifacts import atomic_write_json, read_json, read_tensors, write_dir, write_tensors
from apiary.store.records import AdapterVersion, Run, RunBudget, now
from apiary.store.store import Store


@dataclass
class Budget:
    """How long a run may learn. No limit: until the feedback learners have used up their queues."""

    steps: int | None = None
    minutes: float | None = None

    @property
    def unlimited(self) -> bool:
        return self.steps is None and self.minutes is None

    def done(self, steps: int, seconds: float) -> bool:
        return (self.steps is not None and steps >= self.steps) or (self.minutes is not None and seconds >= self.minutes * 60)

    def room(self, seconds: float, needed: float) -> bool:
        """Whether `needed` more seconds of learning still fit in the minutes budget (always, without one)."""
        return self.minutes is None or seconds + needed <= self.minutes * 60


@dataclass
class _Pace:
    """How long this run's steps take, so that a minutes budget is kept, not overrun by the step that crosses it:
    the next step is started only if it and a distil_back phase still fit (the phase it brings, or the closing
    one after it; a phase not yet measured is guessed to last one step)."""

    work: float = 0.0  # seconds of the learners other than distil_back, over `steps` steps
    steps: int = 0
    phase: float | None = None  # the last distil_back phase's seconds

    def add(self, done: list[tuple[str, LearnStep]]) -> None:
        for name, result in done:
            seconds = result.stats.generate_seconds + result.stats.train_seconds
            if name == "distil_back":
                self.phase = seconds
            else:
                self.work += seconds
        self.steps += 1

    def needed(self, phases: bool) -> float:
        """Seconds the next step is expected to take, with a distil_back phase's when the run has `phases`."""
        step = self.work / max(1, self.steps)
        return step + ((step if self.phase is None else self.phase) if phases else 0.0)


@dataclass
class RunSummary:
    run_id: int
    steps: int
    episodes: int
    seconds: float
    start_version: int
    version: int
    resumed: bool
    learners: list[str] = field(default_factory=list)
    feedback: int = 0  # pieces of feedback learned from (counting repeats over epochs)
    generated_tokens: int = 0
    trained_tokens: int = 0
    generate_seconds: float = 0.0
    train_seconds: float = 0.0
    rewards: list[float] = field(default_factory=list)
    stopped: str = ""  # why the run ended: "budget" or "feedback used up"
    held_back: list[dict] = field(default_factory=list)  # flagged givers whose feedback was left out, with their figures
    closing_phase: bool = False  # the last step was distil_back's closing phase (counted in `steps`)


@dataclass
class _RunState:
    run_id: int
    batches: Batches
    step: int = 0
    version: int = 0  # the adapter version the run stands on (its next version's parent)
    latest: int = 0  # the worker's newest saved version: the next one saved is latest + 1
    seconds: float = 0.0
    pace: _Pace = field(default_factory=_Pace)
    pending: list[int] = field(default_factory=list)  # episode ids since the last saved version
    pending_feedback: list[int] = field(default_factory=list)  # feedback ids since the last saved version
    held_back: list[dict] = field(default_factory=list)  # flagged givers (evals.givers) and their figures


def learn(store: Store, worker: WorkerHandle, budget: Budget, config: GRPOConfig | None = None,
          lora: LoraSpec | None = None, checkpoint_every: int = 5, seed: int = 0, show_progress: bool = True,
          on_step=None, learners: list[str] = ("rl",), configs: Mapping[str, LearnerConfig] | None = None,
          start_version: int | None = None) -> tuple[torch.nn.Module, RunSummary]:
    """Train `worker` on its job with `learners` within `budget`; returns the model (core + adapter) and a
    summary. `configs`: settings by learner name (default: each learner's defaults); `config` is the rl
    learner's. A new run starts from the worker's live adapter version, or from `start_version`; a resumed
    run continues from its last checkpoint. A new worker is stored once the run's settings are checked."""
    core, job, name = worker.core, worker.job, worker.name
    asked, names = lora, check_learners(list(learners))
    lora = lora or LoraSpec()
    settings = _settings(names, config, configs, budget)
    store.ensure_worker(name, job.name, core.name, job.describe(), worker.record.core_version,
                        prompt_format=core.prompt_format.name)
    state, resumed = _open_run(store, worker, settings, checkpoint_every, seed, budget, start_version)
    model = adapters.attach(core.model, lora, path=store.fetched(store.adapter_dir(name, state.version)) if state.version else None)
    generator = torch.Generator().manual_seed(seed)
    try:
        _check_rank(model, asked, name, state.version)
        mix = build_learners(settings, model, core, job, generator)
    except BaseException:
        adapters.detach(model)
        store.update_run(state.run_id, status="interrupted")
        raise
    if resumed:
        _load_checkpoint(store, name, mix, generator)
    summary = RunSummary(run_id=state.run_id, steps=0, episodes=0, seconds=0.0, start_version=state.version,
                         version=state.version, resumed=resumed, learners=names, held_back=state.held_back)
    try:
        with _progress(show_progress) as bar:
            task = bar.add_task(f"{name} on {job.name}", total=budget.steps or (budget.minutes or 0) * 60 or None)
            while _room(budget, summary, state, "distil_back" in names) and not state.batches.exhausted(names):
                stats = _one_step(store, job, name, mix, state)
                if stats is None:
                    break
                _account(summary, stats)
                store.update_run(state.run_id, step=state.step)  # where it is, for the pages (the checkpoint is the commit)
                bar.update(task, advance=1 if not budget.minutes else stats.generate_seconds + stats.train_seconds,
                           description=f"{name} on {job.name}  {_step_figures(state.step, stats)}")
                if on_step is not None:
                    on_step(state.step, stats, model)
                if state.step % checkpoint_every == 0 and _room(budget, summary, state, "distil_back" in names):
                    _checkpoint(store, name, model, mix, generator, state, final=False)
        summary.stopped = "budget" if not _room(budget, summary, state, "distil_back" in names) else "feedback used up"
        closing = _closing_phase(store, job, name, mix, state) if summary.steps else None
        if closing is not None:
            _account(summary, closing)
            summary.closing_phase = True
        if state.pending or state.pending_feedback or closing is not None:
            _checkpoint(store, name, model, mix, generator, state, final=True)
        store.update_run(state.run_id, status="finished", step=state.step, finished_at=now())
    except BaseException:
        store.update_run(state.run_id, status="interrupted", step=state.step)
        adapters.detach(model)  # give the core back untouched
        raise
    summary.version = state.version
    return model, summary


def _settings(names: list[str], config: GRPOConfig | None, configs: Mapping[str, LearnerConfig] | None,
              budget: Budget) -> dict:
    """Each learner's settings (`config` is the rl learner's, given once), checked; an open-ended learner needs a budget."""
    if config is not None and configs and "rl" in configs:
        raise ValueError("give the rl learner's settings once: as `config` or as configs['rl']")
    settings = run_configs(names, {**({"rl": config} if config is not None else {}), **(configs or {})})
    if budget.unlimited and OPEN_ENDED & set(names):
        raise ValueError(f"give a budget (steps or minutes): {', '.join(sorted(OPEN_ENDED & set(names)))} never run out")
    return settings


def _check_rank(model, asked: LoraSpec | None, worker: str, version: int) -> None:
    """A rank asked for must be the rank of the adapter the run learns on: a saved adapter keeps its rank."""
    rank = model.peft_config["default"].r
    if asked is not None and rank != asked.rank:
        raise ValueError(f"worker {worker!r} learns on from adapter version {version}, of LoRA rank {rank}, not "
                         f"{asked.rank}: an adapter keeps its rank (start from version 0, or a new worker, for another)")


def _open_run(store: Store, worker: WorkerHandle, settings: Mapping[str, LearnerConfig], checkpoint_every: int,
              seed: int, budget: Budget, start_version: int | None = None) -> tuple[_RunState, bool]:
    """Resume the worker's unfinished run if there is one (from its last checkpoint, the worker's latest
    version), else start a new run from `start_version` (default: the live version). Either way the run
    records the budget it has now, counted from the step it starts at."""
    name, latest = worker.name, worker.latest_version  # the store, not the state file, is the commit point
    unfinished = store.unfinished_run(name)
    state_file = store.fetched_checkpoint(name) / "state.json"  # another node may have learned it last
    saved = read_json(state_file) if state_file.is_file() else {}
    saved.setdefault("batches", {"cursor": saved.get("cursor", 0)})  # state files of apiary < 0.2 kept only the cursor
    if unfinished is not None and saved.get("run_id") == unfinished.id:
        store.update_run(unfinished.id, status="running", step=saved["step"],
                         budget=RunBudget(steps=budget.steps, minutes=budget.minutes, from_step=saved["step"]))
        batches = Batches(**saved["batches"])
        return _RunState(run_id=unfinished.id, batches=batches, step=saved["step"], version=latest, latest=latest,
                         seconds=saved["seconds"], held_back=unfinished.config.get("held_back", [])), True
    if unfinished is not None:  # killed before its first checkpoint: nothing to resume from
        store.update_run(unfinished.id, status="interrupted")
    held_back = _held_back(store, worker, settings)
    run = Run(worker=name, job=worker.job.name, learner="+".join(settings),
              config={"learners": {learner: asdict(c) for learner, c in settings.items()},
                      "checkpoint_every": checkpoint_every, "seed": seed, "held_back": held_back},
              budget=RunBudget(steps=budget.steps, minutes=budget.minutes))
    batches = fill_queues(store, name, settings, seed, {g["by"] for g in held_back})
    batches.cursor = saved["batches"].get("cursor", 0)  # a new run continues the task stream
    batches.practice = saved["batches"].get("practice", 0)
    batches.doc_questions = saved["batches"].get("doc_questions", 0)
    batches.doc_texts = saved["batches"].get("doc_texts", 0)
    batches.doc_study = saved["batches"].get("doc_study", 0)
    if start_version is not None and start_version not in {v.version for v in store.adapter_versions(name)} | {0}:
        raise ValueError(f"worker {name!r} has no adapter version {start_version} to start from")
    return _RunState(run_id=store.start_run(run), batches=batches, version=worker.version(start_version), latest=latest,
                     held_back=held_back), False


def _held_back(store: Store, worker: WorkerHandle, settings: Mapping[str, LearnerConfig]) -> list[dict]:
    """The figures of the givers whose feedback this run leaves out: those flagged (evals.givers) against the
    job's verifier (its scorer; none for a multi-turn job) and the other givers, if a feedback learner skips them."""
    if not any(name in FEEDBACK_KINDS and config.skip_flagged for name, config in settings.items()):
        return []
    check = None if worker.job.multi_turn else worker.job.scorer
    return [g.figures() for g in flagged_givers(store, name=worker.name, check=check)]


def _room(budget: Budget, summary: RunSummary, state: _RunState, phases: bool) -> bool:
    """Whether the run takes another step: within the step budget, and a minutes budget has room for the
    step and a distil_back phase (`phases`: the run has them) at this run's pace; the first step always runs."""
    if budget.done(summary.steps, summary.seconds):
        return False
    return summary.steps == 0 or budget.room(summary.seconds, state.pace.needed(phases))


def _closing_phase(store: Store, job: Job, worker: str, mix, state: _RunState) -> StepStats | None:
    """A run that learns with distil_back ends with one of its phases, unless its last step was one: the
    version the gate measures has just been pulled back toward the core, whatever step the budget or the
    feedback ran out at (a run of 12 feedback steps with a phase every 5 would otherwise end 2 steps after one)."""
    learner = dict(mix).get("distil_back")
    if learner is None or state.batches.distil_back % learner.config.every == 0:
        return None
    state.batches.distil_back += learner.config.every - 1 - state.batches.distil_back % learner.config.every
    return _one_step(store, job, worker, [("distil_back", learner)], state)


def _one_step(store: Store, job: Job, worker: str, mix, state: _RunState) -> StepStats | None:
    """One update by each learner that has material left; None if none had any."""
    done: list[tuple[str, LearnStep]] = []
    for name, learner in mix:
        batch = next_batch(name, learner.config, store, job, worker, state.batches)
        if batch is None:
            continue
        result = learner.learn(batch)
        for episode in result.episodes:
            episode.worker, episode.adapter_version, episode.run_id, episode.step = worker, state.version, state.run_id, state.step
            episode.origin = episode.origin or name
        state.pending += store.add_episodes(result.episodes)
        state.pending_feedback += result.feedback_ids
        done.append((name, result))
    if not done:
        return None
    state.pace.add(done)
    state.step += 1
    stats = _combine([result for _, result in done])
    state.seconds += stats.generate_seconds + stats.train_seconds
    return stats


def _combine(steps: list[LearnStep]) -> StepStats:
    """One step's figures over its learners; the reward shown is the first learner's. Each learner's own
    figures (`extra`: e.g. rl's anchor_kl, practice's verified) are kept, later learners' winning a clash."""
    first = steps[0].stats
    combined = StepStats(reward_mean=first.reward_mean, trained_samples=0, generated_tokens=0, trained_tokens=0,
                         generate_seconds=0.0, train_seconds=0.0, loss=first.loss)
    for step in steps:
        for key in ("trained_samples", "generated_tokens", "trained_tokens", "generate_seconds", "train_seconds"):
            setattr(combined, key, getattr(combined, key) + getattr(step.stats, key))
    own = {key: value for step in steps for key, value in step.stats.extra.items()}
    combined.extra = own | {"episodes": sum(len(s.episodes) for s in steps), "feedback": sum(len(s.feedback_ids) for s in steps)}
    return combined


def _step_figures(step: int, stats: StepStats) -> str:
    """What a step did, for the progress bar: the reward of its rollouts (if it sampled any), the
    feedback items it learned from, the anchor's KL to the core (if rl has one), the int8 sampler's KL to
    the trained policy (if rl samples in int8), and its loss."""
    figures = [f"step {step}"]
    if stats.extra["episodes"]:
        figures.append(f"reward {stats.reward_mean:.2f}")
    if stats.extra["feedback"]:
        figures.append(f"feedback {stats.extra['feedback']}")
    if "anchor_kl" in stats.extra:  # rl's distance from its core on general prompts (GRPOConfig.anchor_weight)
        figures.append(f"anchor KL {stats.extra['anchor_kl']:.4f}")
    if "sampler_kl" in stats.extra:  # rl sampling in int8: how far the sampler was off the trained policy
        figures.append(f"sampler KL {stats.extra['sampler_kl']:.4f}")
    if "distil_back_kl" in stats.extra:  # a distillation phase toward the core ran this step (learners.distil_back)
        figures.append(f"distilled back: KL {stats.extra['distil_back_kl']:.4f} -> {stats.extra['distil_back_kl_after']:.4f}")
    return "  ".join(figures + [f"loss {stats.loss:.3f}"])


def _account(summary: RunSummary, stats: StepStats) -> None:
    summary.steps += 1
    summary.episodes += stats.extra["episodes"]
    summary.feedback += stats.extra["feedback"]
    summary.seconds += stats.generate_seconds + stats.train_seconds
    summary.generated_tokens += stats.generated_tokens
    summary.trained_tokens += stats.trained_tokens
    summary.generate_seconds += stats.generate_seconds
    summary.train_seconds += stats.train_seconds
    summary.rewards.append(stats.reward_mean)


def _checkpoint(store: Store, worker: str, model, mix, generator, state: _RunState, final: bool) -> None:
    """Save the next adapter version (its parent: the version this run stands on), then every learner's
    optimizer + the run state, then the store record (the commit point)."""
    version = state.latest + 1
    write_dir(store.adapter_dir(worker, version), lambda staging: adapters.save(model, staging))
    store.publish(store.adapter_dir(worker, version))  # before its row: any node that reads the row can fetch it
    directory = store.checkpoint_dir(worker)
    write_tensors(directory / "optimizer.pt", {"optimizers": {name: learner.optimizer.state_dict() for name, learner in mix},
                                              "generator": generator.get_state()})
    record = AdapterVersion(worker=worker, version=version, parent=state.version, path=str(store.adapter_dir(worker, version)),
                            run_id=state.run_id, step=state.step, final=final)
    store.add_adapter_version(record, state.pending, state.pending_feedback)
    state.version, state.latest, state.pending, state.pending_feedback = version, version, [], []
    atomic_write_json(directory / "state.json", {"run_id": state.run_id, "step": state.step, "version": version,
                                                "seconds": state.seconds, "batches": state.batches.__dict__})
    store.publish(directory)
    store.update_run(state.run_id, step=state.step)


def _load_checkpoint(store: Store, worker: str, mix, generator) -> None:
    """Each learner's optimizer and the random generator as the last checkpoint left them (a learner the run
    did not have then starts afresh). A checkpoint from before learners owned their optimizers holds the
    one optimizer they shared: each learner continues from it."""
    path = store.checkpoint_dir(worker) / "optimizer.pt"
    if path.is_file():
        saved = read_tensors(path)  # weights_only: a planted file is refused, never run
        states = saved.get("optimizers") or {name: saved["optimizer"] for name, _ in mix}
        for name, learner in mix:
            if name in states:
                learner.optimizer.load_state_dict(states[name])
        generator.set_state(saved["generator"])


def _progress(show: bool) -> Progress:
    return Progress(TextColumn("{task.description}"), BarColumn(), TimeElapsedColumn(), disable=not show, transient=False)
