"""Commands of a worker's learning: learn, attempt, feedback, simulate-feedback, eval, demo."""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Annotated, Optional

import typer
from rich import box
from rich.console import Console
from rich.markup import escape
from rich.table import Table

from apiary.cli.shell import (CoreOpt, HiveOpt, JsonOpt, MaxFlipsOpt, MaxKlOpt, TemplateOpt, ToleranceOpt, _fail, _gate,
                              _consolidation_lines, _given, _hive, _learn_table, _named, _run, app, console)
from apiary.evals.gate import GateConfig

WorkersOpt = Annotated[Optional[str], typer.Option(
    help="several workers learning the job, comma-separated: at once on a Ray cluster (--cluster), else one after another")]
ClusterOpt = Annotated[Optional[str], typer.Option(
    help="a Ray cluster's address (host:port, ray://host:port, auto; default $RAY_ADDRESS): each worker learns there "
         "as an actor; the hive and its store must be reachable from every node")]
CpusOpt = Annotated[float, typer.Option("--cpus-per-worker", help="CPUs each worker's actor asks for")]
EvalWorkersOpt = Annotated[Optional[str], typer.Option(
    "--workers", help="several workers' live versions, comma-separated (default: every worker's)")]
EvalClusterOpt = Annotated[Optional[str], typer.Option(
    "--cluster", help="a Ray cluster's address (host:port, ray://host:port, auto; default $RAY_ADDRESS): each eval "
                      "runs there as a task, all at once; the hive and its store must be reachable from every node")]
EvalCpusOpt = Annotated[float, typer.Option("--cpus-per-worker", help="CPUs each eval's task asks for")]


SamplerOpt = Annotated[Optional[str], typer.Option(
    "--sampler", help="rl: float32 (default), int8 (rollouts from int8 weights with the adapter's update merged in) "
                      "or bf16 (from bfloat16 copies, where the CPU has AVX512-BF16 or AMX), the loss corrected by "
                      "truncated importance sampling")]

LrOpt = Annotated[Optional[list[str]], typer.Option(
    help="learning rate of every learner named in --learners (defaults: rl and corrections 5e-4, distil_back "
         "and self_distill 2e-4, the others 1e-3), or NAME=RATE "
         "for one learner; repeatable")]

KlOpt = Annotated[Optional[float], typer.Option(
    "--kl", help="rl: weight of the KL to the worker's core on its own samples of the job (kl_coef; default 0: off)")]

AnchorOpt = Annotated[Optional[float], typer.Option(
    "--anchor", help="rl: weight of on-policy distillation toward the core on general prompts "
                     "(anchor_weight; default 0: off, distil_back's phases do it)")]

PrecisionOpt = Annotated[Optional[str], typer.Option(
    help="rl: float32 (default) or bf16: sample rollouts from bfloat16 copies (unless --sampler says otherwise) "
         "and run the update under bfloat16 autocast, where the CPU has AVX512-BF16 or AMX (else float32, with "
         "a warning); distil_back, the evals and the gate stay float32")]

RankOpt = Annotated[Optional[int], typer.Option(
    help="LoRA rank of a new worker's adapter (alpha = 2 x rank; default 16); a worker keeps its adapter's rank")]

LearnersOpt = Annotated[Optional[str], typer.Option(
    help="comma-separated, any of rl, rewards, corrections, critiques, preferences, practice, self_distill, "
         "distil_back; for a documents job (docs:PATH) context_distill, recall, self_study or doc_pretrain (default: "
         "rl, or context_distill for a documents job)")]

DistilBackOpt = Annotated[bool, typer.Option(
    "--distil-back/--no-distil-back", help="learn, then distil back: add distil_back's phases toward the core to the run, "
                                           "as the server does (learners.distil_back; not to a documents run)")]


@app.command()
def learn(
    spec: Annotated[list[str], typer.Argument(help="a job file, or rg:TASK, ta:GAME, tools:calc+lookup or docs:PATH, then key=value config")],
    worker: Annotated[Optional[str], typer.Option("--worker", "-w", help="worker name")] = None,
    workers: WorkersOpt = None, cluster: ClusterOpt = None, cpus_per_worker: CpusOpt = 1,
    minutes: Annotated[Optional[float], typer.Option(help="learning-time budget: no step starts that would end past it at the run's pace, distil_back's closing phase included; the evals and the gate come on top")] = None,
    steps: Annotated[Optional[int], typer.Option(help="step budget")] = None,
    lr: LrOpt = None,
    prompts: Annotated[Optional[int], typer.Option(help="prompts per step (default: the RL config's)")] = None,
    samples: Annotated[Optional[int], typer.Option(help="samples per prompt (default: the RL config's)")] = None,
    max_new_tokens: Annotated[Optional[int], typer.Option(help="sampling length cap (default: the job's)")] = None,
    kl: KlOpt = None, anchor: AnchorOpt = None, sampler: SamplerOpt = None, precision: PrecisionOpt = None,
    rank: RankOpt = None, learners: LearnersOpt = None, distil_back: DistilBackOpt = True,
    epochs: Annotated[Optional[int], typer.Option(help="passes over the feedback (default: the feedback config's)")] = None,
    batch: Annotated[Optional[int], typer.Option(
        help="feedback items (or practice tasks; a documents job's questions or documents) per update (default: the learner's config)")] = None,
    from_version: Annotated[Optional[int], typer.Option("--from-version", help="adapter version to learn on from "
                                                         "(default: the live one; 0: the core alone)")] = None,
    tolerance: ToleranceOpt = GateConfig.tolerance, max_kl: MaxKlOpt = GateConfig.max_retention_kl,
    max_flips: MaxFlipsOpt = GateConfig.max_flip_rate,
    release_ungated: Annotated[bool, typer.Option("--release-ungated", help="release the new version without passing "
                                                  "the gate (recorded as your override; retention not measured)")] = False,
    no_release: Annotated[bool, typer.Option("--no-release", help="measure the new version and record the gate's "
                                             "decision, release nothing")] = False,
    hive: HiveOpt = None, core: CoreOpt = None, template: TemplateOpt = None, as_json: JsonOpt = False,
):
    """A worker learns a job (from rewards by default, or from people's feedback and its own practice),
    on from its live adapter version; prints held-out accuracy before and after, and the gate's decision:
    the new version goes live only if it passed. With --workers several workers learn it, at once on a
    Ray cluster (--cluster or RAY_ADDRESS)."""
    from apiary.hive.cluster import LearnPlan
    from apiary.hive.mix import OPEN_ENDED, with_distil_back
    from apiary.jobs.spec import load_job
    from apiary.learners.grpo import MULTI_TURN
    from apiary.models.adapters import LoraSpec

    names = _worker_names(worker, workers, as_json)
    job = _run(as_json, lambda: load_job(spec[0], list(spec[1:])))
    named = [n.strip() for n in learners.split(",") if n.strip()] if learners is not None else _default_learners(job)
    learner_names = with_distil_back(named) if distil_back else named
    if minutes is None and steps is None and OPEN_ENDED & set(learner_names):
        _fail("give a budget: --minutes M or --steps N (only feedback learners stop by themselves)", as_json)
    release, gate = _release(release_ungated, no_release, as_json), _gate(tolerance, max_kl, max_flips, as_json)
    h = _run(as_json, lambda: _hive(hive, core, template))

    def plans():
        given = _given(prompts_per_step=prompts, samples_per_prompt=samples, kl_coef=kl, anchor_weight=anchor,
                       sampler=sampler or (precision if precision == "bf16" else None), update_precision=precision)
        rl = {"max_new_tokens": max_new_tokens, **(MULTI_TURN if job.multi_turn else {}), **given}  # a game: 4 x 8
        settings = dict(overrides=tuple(spec[1:]), minutes=minutes, steps=steps, learners=tuple(learner_names),
                        configs=_learner_configs(learner_names, named, rl, lr or [], batch, epochs),
                        lora=LoraSpec(rank=rank, alpha=2 * rank) if rank is not None else None,
                        show_progress=not as_json, start_version=from_version, release=release, gate=gate)
        return [LearnPlan(spec[0], name, **settings) for name in names]

    _learn_many(h, _run(as_json, plans), cluster, cpus_per_worker, workers is not None, as_json)


def _learn_many(h, plans: list, cluster: str | None, cpus_per_worker: float, several: bool, as_json: bool) -> None:
    """Run the plans (on the cluster, if an address is given) and print what came back: one worker's result
    as before (a JSON object), several workers' as a JSON list or one table; a failed worker after the others."""
    from apiary.hive.cluster import WorkersFailed

    try:
        results = _run(as_json, lambda: h.learn_many(plans, cluster=cluster, cpus_per_worker=cpus_per_worker))
    except WorkersFailed as failed:
        _print_results(failed.results, several, as_json)
        _fail(str(failed), as_json)
    _print_results(results, several, as_json)


def _default_learners(job) -> list[str]:
    """What a job learns when --learners is not given: a documents job its documents by context distillation
    (reinforcement on questions it cannot answer closed-book would get no reward), any other job by rl."""
    from apiary.jobs.documents import DocumentSource

    return ["context_distill"] if isinstance(job.source, DocumentSource) else ["rl"]


def _release(ungated: bool, none: bool, as_json: bool) -> str:
    if ungated and none:
        _fail("--release-ungated and --no-release contradict each other: pick one", as_json)
    return "ungated" if ungated else "none" if none else "gated"


def _worker_names(worker: str | None, workers: str | None, as_json: bool) -> list[str]:
    """The workers that learn: --worker NAME, or --workers A,B,... (exactly one of the two), each name checked."""
    if (worker is None) == (workers is None):
        _fail("name the worker (--worker NAME) or the workers (--workers A,B): one of the two", as_json)
    names = [worker] if worker is not None else [n.strip() for n in workers.split(",") if n.strip()]
    for name in names:
        _named("--workers" if workers is not None else "--worker", name, "worker", as_json)
    return names


def _print_results(results: list, several: bool, as_json: bool) -> None:
    """One worker's result as before (a JSON object); several workers' as a JSON list or one table."""
    if as_json and several:
        print(json.dumps([r.model_dump(mode="json") for r in results]))
    elif as_json and results:
        print(results[0].model_dump_json())
    elif results:
        _learn_table(results)


def _learner_configs(names: list[str], named: list[str], rl: dict, lr: list[str], batch: int | None,
                     epochs: int | None) -> dict:
    """Each learner's config from the options: `rl` (GRPOConfig's fields given), `--lr`, `--batch`, `--epochs`.
    A bare `--lr RATE` is the rate of the learners the user `named`; distil_back added by default keeps its own
    (measured) rate unless `--lr distil_back=RATE` sets it."""
    from apiary.hive.mix import configs_with
    from apiary.learners.grpo import GRPOConfig

    rates = _learning_rates(lr)
    every = rates.pop(None, None)
    rates = ({name: every for name in named} if every is not None else {}) | rates
    return configs_with(names, GRPOConfig(**rl), None, rates, batch, epochs)


def _learning_rates(values: list[str]) -> dict[str | None, float]:
    """`--lr` values: "1e-4" for every learner (key None), "corrections=1e-4" for one."""
    rates: dict[str | None, float] = {}
    for value in values:
        name, _, rate = value.rpartition("=")
        try:
            rates[name.strip() or None] = float(rate)
        except ValueError:
            raise ValueError(f"--lr {value}: give a number, or NAME=NUMBER for one learner") from None
    return rates


@app.command()
def attempt(
    spec: Annotated[list[str], typer.Argument(help="a job file, or rg:TASK, ta:GAME or tools:calc+lookup, then key=value config")],
    worker: Annotated[str, typer.Option("--worker", "-w", help="worker name")],
    n: Annotated[int, typer.Option("--n", help="how many training tasks")] = 8,
    samples: Annotated[int, typer.Option(help="answers per task (more than one: sampled at temperature 0.7)")] = 1,
    hive: HiveOpt = None, core: CoreOpt = None, template: TemplateOpt = None, as_json: JsonOpt = False,
):
    """The worker answers training tasks of its job; answers are stored as episodes for feedback."""
    _named("--worker", worker, "worker", as_json)
    h = _run(as_json, lambda: _hive(hive, core, template))
    episodes = _run(as_json, lambda: h.attempt(spec[0], worker, n, samples=samples, overrides=spec[1:]))
    if as_json:
        print(json.dumps([e.model_dump(mode="json", include={"id", "task_id", "messages", "completion", "score", "answer"})
                          for e in episodes]))
        return
    table = Table("episode", "task", "expected", "answer given", "score", box=box.SIMPLE_HEAD)
    tasks = task_parts([e.messages[-1]["content"] for e in episodes])
    for e, task in zip(episodes, tasks):
        table.add_row(str(e.id), escape(task), escape(e.answer or "-"), escape(e.completion.strip()[:40]), f"{e.score:.2f}")
    Console().print(table)


def task_parts(questions: list[str], width: int = 60) -> list[str]:
    """What tells the questions apart, for a person deciding what to correct: the start and end they
    share (a reasoning-gym job's preamble and instruction) are cut, whole words only, and a part longer
    than `width` keeps its end, where a task's specifics usually are."""
    if len(set(questions)) > 1:
        head = os.path.commonprefix(questions)
        head = head[:head.rfind(" ") + 1]
        tail = os.path.commonprefix([q[len(head):][::-1] for q in questions])[::-1]
        tail = tail[tail.find(" "):] if " " in tail else ""
        questions = [q[len(head):len(q) - len(tail)].strip() for q in questions]
    return [q if len(q) <= width else "..." + q[-width:] for q in questions]


@app.command()
def feedback(
    episode: Annotated[Optional[int], typer.Argument(help="the episode (response) id the feedback is about")] = None,
    reward: Annotated[Optional[float], typer.Option(help="a number in [0, 1]")] = None,
    correction: Annotated[Optional[str], typer.Option(help="the right output")] = None,
    critique: Annotated[Optional[str], typer.Option(help="what was wrong, in words")] = None,
    prefer: Annotated[Optional[int], typer.Option(help="this episode is better than episode OTHER (same prompt)")] = None,
    by: Annotated[str, typer.Option(help="who gives it")] = "user",
    file: Annotated[Optional[Path], typer.Option("--file", help="JSONL, one object per line: all or nothing")] = None,
    list_worker: Annotated[Optional[str], typer.Option("--list", help="show a worker's feedback and what learned from it")] = None,
    hive: HiveOpt = None, as_json: JsonOpt = False,
):
    """Give feedback on an episode (one of --reward, --correction, --critique, --prefer), load a file
    of it, or --list a worker's feedback with the adapter version that learned from each."""
    h = _run(as_json, lambda: _hive(hive))
    if list_worker is not None:
        return _feedback_log(h, list_worker, as_json)
    if file is not None:
        records = _run(as_json, lambda: h.add_feedback(file))
    elif episode is None:
        return _fail("give an EPISODE id (or --file, or --list WORKER)", as_json)
    else:
        records = _run(as_json, lambda: [h.feedback(episode, reward=reward, correction=correction, critique=critique,
                                                    prefer=prefer, by=by)])
    if as_json:
        print(json.dumps([r.model_dump(mode="json") for r in records]))
        return
    flagged = [r for r in records if r.conflict]
    console.print(f"recorded {len(records)} piece(s) of feedback, ids {records[0].id}..{records[-1].id}"
                  if len(records) > 1 else f"recorded feedback {records[0].id} ({records[0].kind})")
    for r in flagged:
        console.print(f"[yellow]flagged[/yellow] feedback {r.id} on episode {r.episode_id}: {r.conflict}")


@app.command(name="simulate-feedback")
def simulate_feedback(
    worker: Annotated[str, typer.Option("--worker", "-w")],
    kind: Annotated[str, typer.Option(help="reward, correction, critique, hint (a critique that hides the answer), preference")],
    n: Annotated[int, typer.Option("--n")] = 64,
    seed: int = 0,
    hive: HiveOpt = None, as_json: JsonOpt = False,
):
    """For experiments: a simulated person gives feedback on the worker's attempts (known answers)."""
    records = _run(as_json, lambda: _hive(hive).simulate_feedback(worker, kind, n, seed))
    if as_json:
        print(json.dumps([r.model_dump(mode="json") for r in records]))
    else:
        console.print(f"recorded {len(records)} piece(s) of simulated {kind} feedback for {worker}")


def _feedback_log(h, worker: str, as_json: bool) -> None:
    rows = _run(as_json, lambda: h.feedback_log(worker))
    if as_json:
        print(json.dumps(rows, default=str))
        return
    table = Table("id", "episode", "kind", "feedback", "by", "learned by version", "conflict", box=box.SIMPLE_HEAD)
    for r in rows:
        said = f"{r['reward']:g}" if r["kind"] == "reward" else (f"over {r['other_episode_id']}" if r["kind"] == "preference"
                                                                  else r["text"][:50])
        table.add_row(str(r["id"]), str(r["episode_id"]), r["kind"], said, r["by"], str(r["learned_by_version"] or "-"),
                      r["conflict"] or "")
    Console().print(table)


@app.command(name="eval")
def eval_cmd(
    spec: Annotated[Optional[list[str]], typer.Argument(help="a job file or rg:TASK key=value ... (default: workers' jobs)")] = None,
    worker: Annotated[Optional[str], typer.Option("--worker", "-w")] = None,
    version: Annotated[Optional[int], typer.Option("--version", help="the worker's adapter version (default: the live one)")] = None,
    workers: EvalWorkersOpt = None, cluster: EvalClusterOpt = None, cpus_per_worker: EvalCpusOpt = 1,
    hive: HiveOpt = None, core: CoreOpt = None, template: TemplateOpt = None, as_json: JsonOpt = False,
):
    """Held-out scores per job: a worker's live adapter version (or --version), several workers', or the core.
    With a Ray cluster (--cluster or RAY_ADDRESS) each eval runs there as a task, all at once."""
    names = [n.strip() for n in workers.split(",") if n.strip()] if workers is not None else None
    for name in names or []:
        _named("--workers", name, "worker", as_json)
    if worker is not None and names is not None:  # before the hive is opened (or made): nothing written
        _fail("name one worker (--worker) or several (--workers), not both", as_json)
    from apiary.hive.cluster_tasks import TasksFailed  # the model stack: after the names are checked

    h = _run(as_json, lambda: _hive(hive, core, template))
    jobs = [h.job(spec[0], spec[1:])] if spec else None
    try:
        results = _run(as_json, lambda: h.eval(worker=worker, jobs=jobs, version=version, workers=names,
                                                cluster=cluster, cpus_per_worker=cpus_per_worker))
    except TasksFailed as failed:
        _print_evals(failed.results, as_json)
        _fail(str(failed), as_json)
    _print_evals(results, as_json)


def _print_evals(results: list, as_json: bool) -> None:
    if as_json:
        print(json.dumps([{"job": r.job, "worker": r.worker, "adapter_version": r.adapter_version, "score": r.score, "n": r.n}
                          for r in results]))
        return
    table = Table("job", "worker", "adapter", "held-out score", "items")
    for r in results:
        table.add_row(r.job, r.worker or "core", str(r.adapter_version), f"{r.score:.3f}", str(r.n))
    Console().print(table)


@app.command()
def demo(
    minutes: Annotated[Optional[float], typer.Option(help="learning minutes per job (default: the demo recipe's)")] = None,
    hive: HiveOpt = None, as_json: JsonOpt = False,
):
    """The whole loop on the bundled core: two workers learn reasoning-gym jobs where it starts weak (before/after
    table, each worker gate's decision), the hive consolidates the workers that passed into a new core, and the
    core gate releases it or refuses it with its reasons."""
    from apiary.hive.demo import run_demo

    result = _run(as_json, lambda: run_demo(_hive(hive or Path("hive-demo")), **_given(minutes=minutes),
                                            show_progress=not as_json))
    if as_json:
        print(result.model_dump_json())
        return
    _learn_table(result.workers)
    if result.consolidation is not None:
        _consolidation_lines(result.consolidation)
    else:
        console.print(f"[yellow]{escape(result.skipped)}[/yellow]")
    console.print(f"demo: {result.seconds / 60:.1f} min")
