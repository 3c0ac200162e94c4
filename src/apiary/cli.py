"""`apiary` command line: a thin shell over `apiary.Hive`. Every command takes --hive and --json."""

from __future__ import annotations

import json
import os
import sys
import warnings
from pathlib import Path
from typing import Annotated, Optional

import typer
from rich import box
from rich.console import Console
from rich.markup import escape
from rich.table import Table

from apiary.evals.gate import GateConfig  # a plain dataclass: cheap to import

# The model stack (torch, transformers) and the optional parts (serve, bench) are imported inside the
# command that needs them, so that `apiary --help` and `apiary status` start in well under a second.

app = typer.Typer(add_completion=False, no_args_is_help=True, help="apiary: models that learn on the job.")
console = Console(stderr=True)

HiveOpt = Annotated[Optional[Path], typer.Option("--hive", help="hive directory (default ./hive or $APIARY_HIVE)")]
JsonOpt = Annotated[bool, typer.Option("--json", help="print a machine-readable result on stdout")]
CoreOpt = Annotated[Optional[str], typer.Option("--core", help="core model: a HF directory or .gguf file (default: bundled)")]
TemplateOpt = Annotated[Optional[str], typer.Option(
    "--template", help="prompt format of the core: 'chat' (its own chat template), 'plain' (User:/Assistant: lines) or a "
                       "Jinja file (default: chat if the core has a chat template, else plain)")]
# The gate's bounds; each defaults to the one default gate (evals.gate.GateConfig).
ToleranceOpt = Annotated[float, typer.Option(help="gate: allowed held-out drop per job")]
MaxKlOpt = Annotated[float, typer.Option(help="gate: retention KL bound (nats/token)")]
MaxFlipsOpt = Annotated[float, typer.Option(help="gate: right-to-wrong flip bound (share of retention items)")]


def _fail(message: str, as_json: bool) -> None:
    if as_json:
        print(json.dumps({"error": message}))
    console.print(f"[red]error:[/red] {escape(message)}")
    raise typer.Exit(2)


def _need(extra: str, *modules: str) -> None:
    """Stop with the pip command to run when a module of an optional part (an extra) is missing."""
    from apiary.extras import MissingExtraError, require

    try:
        require(extra, *modules)
    except MissingExtraError as err:
        _fail(str(err), False)


def _hive(hive: Path | None, core: str | None = None, template: str | None = None):
    from apiary.hive.hive import Hive  # the model stack: imported when a command runs, not for --help

    return Hive(hive, core=core, template=template)


def _given(**options) -> dict:
    """The options the user gave (not None): the rest keep the config's own defaults."""
    return {name: value for name, value in options.items() if value is not None}


def _run(as_json: bool, fn):
    try:
        return fn()
    except (ValueError, FileNotFoundError, KeyError, ImportError) as err:  # ImportError: an extra not installed
        _fail(str(err).strip("'\""), as_json)


def _gate(tolerance: float, max_kl: float, max_flips: float, as_json: bool) -> GateConfig:
    return _run(as_json, lambda: GateConfig(tolerance=tolerance, max_retention_kl=max_kl, max_flip_rate=max_flips))


@app.command()
def learn(
    spec: Annotated[list[str], typer.Argument(help="a job file, or rg:TASK, ta:GAME or tools:calc+lookup, then key=value config")],
    worker: Annotated[str, typer.Option("--worker", "-w", help="worker name")],
    minutes: Annotated[Optional[float], typer.Option(help="learning-time budget")] = None,
    steps: Annotated[Optional[int], typer.Option(help="step budget")] = None,
    lr: Annotated[Optional[list[str]], typer.Option(
        help="learning rate of every learner (default 1e-3), or NAME=RATE for one learner; repeatable")] = None,
    prompts: Annotated[Optional[int], typer.Option(help="prompts per step (default: the RL config's)")] = None,
    samples: Annotated[Optional[int], typer.Option(help="samples per prompt (default: the RL config's)")] = None,
    max_new_tokens: Annotated[Optional[int], typer.Option(help="sampling length cap (default: the job's)")] = None,
    learners: Annotated[str, typer.Option(
        help="comma-separated, any of rl, rewards, corrections, critiques, preferences, practice")] = "rl",
    epochs: Annotated[Optional[int], typer.Option(help="passes over the feedback (default: the feedback config's)")] = None,
    batch: Annotated[Optional[int], typer.Option(
        help="feedback items (or practice tasks) per update (default: the feedback config's)")] = None,
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
    the new version goes live only if it passed."""
    from apiary.hive.mix import OPEN_ENDED, configs_with
    from apiary.learners.grpo import GRPOConfig

    names = [n.strip() for n in learners.split(",") if n.strip()]
    if minutes is None and steps is None and OPEN_ENDED & set(names):
        _fail("give a budget: --minutes M or --steps N (only feedback learners stop by themselves)", as_json)
    if release_ungated and no_release:
        _fail("--release-ungated and --no-release contradict each other: pick one", as_json)
    gate = _gate(tolerance, max_kl, max_flips, as_json)
    release = "ungated" if release_ungated else "none" if no_release else "gated"
    h = _hive(hive, core, template)

    def run():
        rates = _learning_rates(lr or [])
        rl = GRPOConfig(max_new_tokens=max_new_tokens, **_given(prompts_per_step=prompts, samples_per_prompt=samples))
        configs = configs_with(names, rl, rates.pop(None, None), rates, batch, epochs)
        return h.learn(spec[0], worker, minutes=minutes, steps=steps, learners=names, configs=configs,
                       overrides=spec[1:], show_progress=not as_json, start_version=from_version,
                       release=release, gate=gate)

    result = _run(as_json, run)
    if as_json:
        print(result.model_dump_json())
    else:
        _learn_table([result])


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
    h = _hive(hive, core, template)
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
    h = _hive(hive)
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
    hive: HiveOpt = None, core: CoreOpt = None, template: TemplateOpt = None, as_json: JsonOpt = False,
):
    """Held-out scores per job: a worker's live adapter version (or --version), or the core."""
    h = _hive(hive, core, template)
    jobs = [h.job(spec[0], spec[1:])] if spec else None
    results = _run(as_json, lambda: h.eval(worker=worker, jobs=jobs, version=version))
    if as_json:
        print(json.dumps([{"job": r.job, "worker": r.worker, "adapter_version": r.adapter_version, "score": r.score, "n": r.n}
                          for r in results]))
        return
    table = Table("job", "worker", "adapter", "held-out score", "items")
    for r in results:
        table.add_row(r.job, r.worker or "core", str(r.adapter_version), f"{r.score:.3f}", str(r.n))
    Console().print(table)


@app.command()
def consolidate(
    method: Annotated[str, typer.Option(help="distill, linear, ties or dare_linear")] = "distill",
    workers: Annotated[Optional[str], typer.Option(help="comma-separated workers (default: all on the current core)")] = None,
    steps: Annotated[Optional[int], typer.Option(help="distillation steps (default: the distillation config's)")] = None,
    anchor_weight: Annotated[Optional[float], typer.Option(
        help="distillation: weight of staying near the previous core (default: the distillation config's)")] = None,
    tolerance: ToleranceOpt = GateConfig.tolerance, max_kl: MaxKlOpt = GateConfig.max_retention_kl,
    max_flips: MaxFlipsOpt = GateConfig.max_flip_rate,
    release: Annotated[bool, typer.Option(help="release the candidate if it passes")] = True,
    hive: HiveOpt = None, core: CoreOpt = None, template: TemplateOpt = None, as_json: JsonOpt = False,
):
    """Build a new core version from the workers, measure it, and release it only if it passes the gate."""
    from apiary.hive.consolidate import ConsolidateConfig
    from apiary.hive.distill import DistillConfig

    distill = DistillConfig(**_given(steps=steps, anchor_weight=anchor_weight))
    config = ConsolidateConfig(method=method, distill=distill, release=release,
                               gate=_gate(tolerance, max_kl, max_flips, as_json))
    names = [w.strip() for w in workers.split(",")] if workers else None
    result = _run(as_json, lambda: _hive(hive, core, template).consolidate(config=config, workers=names, show_progress=not as_json))
    if as_json:
        print(result.model_dump_json())
        return
    table = Table("job", "worker", "released core", "worker", "candidate", "gain kept", box=box.SIMPLE_HEAD,
                  title=f"core v{result.version} ({result.method}) from v{result.parent}")
    for j in result.jobs:
        table.add_row(j.job, j.worker or "-", f"{j.released:.3f}", "-" if j.worker_score is None else f"{j.worker_score:.3f}",
                      f"[bold]{j.candidate:.3f}[/bold]", "-" if j.gain_kept is None else f"{j.gain_kept:.2f}")
    Console().print(table)
    console.print(f"retention KL {result.retention_kl:.4f}; {result.flips['right_to_wrong']} of {result.flips['items']} "
                  f"retention items flipped right to wrong; {result.contamination} contaminated held-out item(s)")
    verdict = "[green]passed[/green]" if result.passed else "[red]refused[/red]: " + "; ".join(result.reasons)
    console.print(f"gate {verdict}; current core: v{result.current_core}")


@app.command()
def status(hive: HiveOpt = None, as_json: JsonOpt = False):
    """Core versions (released or refused, and why) and workers with their held-out scores."""
    from apiary.hive.status import gate_verdict

    info = _hive(hive).status()
    if as_json:
        print(json.dumps(info, default=str))
        return
    console.print(f"hive {info['hive']}: current core [bold]v{info['current_core']}[/bold]")
    cores = Table("core", "parent", "method", "sources", "retention KL", "flips", "gate", box=box.SIMPLE_HEAD)
    base = info["base_core"]
    what = f"{base['name'] or 'the base model'} ({base['prompt_format'] or 'prompt format: on first load'})"
    cores.add_row("v0", "-", "base", escape(what),
                  "-", "-", "[green]released[/green]")
    for c in info["core_versions"]:
        gate = "[green]released[/green]" if c["released"] else ("passed" if c["passed"] else "[red]refused[/red]: "
                                                                 + "; ".join(c["reasons"]))
        flips = f"{c['flips']['right_to_wrong']}/{c['flips']['items']}" if c["flips"] else "-"
        cores.add_row(f"v{c['version']}", f"v{c['parent']}", c["method"],
                      ", ".join(f"{s['worker']} v{s['adapter_version']}" for s in c["sources"]),
                      f"{c['retention_kl']:.4f}", flips, gate)
    workers = Table("worker", "job", "on core", "live", "released by", "latest", "held-out (live)", "episodes",
                    box=box.SIMPLE_HEAD)
    for w in info["workers"]:
        workers.add_row(w["name"], w["job"], f"v{w['core_version']}", f"v{w['live_version']}", w["released_by"] or "-",
                        f"v{w['latest_version']}", "-" if w["heldout"] is None else f"{w['heldout']:.3f}", str(w["episodes"]))
    Console().print(cores, workers)
    for w in info["workers"]:
        if w["last_gate"] is not None:
            console.print(f"{w['name']}: last gate on v{w['last_gate']['version']}: {gate_verdict(w['last_gate'])}")


@app.command()
def rollback(
    version: Annotated[int, typer.Argument(help="a core version that was released before (0: the base core)")],
    worker: Annotated[Optional[str], typer.Option("--worker", "-w", help="roll back this worker's live adapter")] = None,
    hive: HiveOpt = None, as_json: JsonOpt = False,
):
    """Make an earlier released core version current again, or a worker's earlier live adapter
    version (history is kept; a running server follows within a second)."""
    current = _run(as_json, lambda: _hive(hive).rollback(version, worker))
    if as_json:
        print(json.dumps({"live_version": current, "worker": worker} if worker else {"current_core": current}))
    else:
        console.print(f"{worker}: live adapter v{current}" if worker else f"current core: v{current}")


@app.command()
def deploy(
    spec: Annotated[list[str], typer.Argument(help="a job file, or rg:TASK, ta:GAME or tools:calc+lookup, then key=value config")],
    worker: Annotated[str, typer.Option("--worker", "-w", help="worker name")],
    tenant: Annotated[Optional[str], typer.Option(help="the tenant (API key owner) it serves; default: local")] = None,
    hive: HiveOpt = None, core: CoreOpt = None, template: TemplateOpt = None, as_json: JsonOpt = False,
):
    """Create a worker on a job without training it, so a server can serve it as worker:NAME."""
    made = _run(as_json, lambda: _hive(hive, core, template).deploy(spec[0], worker, tenant, spec[1:]))
    if as_json:
        print(json.dumps({"worker": made.name, "job": made.job, "tenant": made.tenant, "core_version": made.core_version}))
    else:
        console.print(f"worker {made.name} on {made.job} (core v{made.core_version}, tenant {made.tenant or 'local'})")


@app.command()
def serve(
    host: Annotated[str, typer.Option(help="address to listen on (anything but localhost needs --keys)")] = "127.0.0.1",
    port: Annotated[int, typer.Option(help="port")] = 8000,
    keys: Annotated[Optional[Path], typer.Option(help=escape('TOML file with a [keys] table of "KEY" = "TENANT"'))] = None,
    max_batch: Annotated[Optional[int], typer.Option(help="requests decoded together (default: ServeConfig's)")] = None,
    learn: Annotated[bool, typer.Option("--learn/--no-learn", help="workers learn from feedback while serving")] = True,
    min_feedback: Annotated[Optional[int], typer.Option(
        help="new feedback items that start a learning run (default: the learning config's)")] = None,
    tolerance: ToleranceOpt = GateConfig.tolerance, max_kl: MaxKlOpt = GateConfig.max_retention_kl,
    max_flips: MaxFlipsOpt = GateConfig.max_flip_rate,
    hive: HiveOpt = None, core: CoreOpt = None, template: TemplateOpt = None,
):
    """An OpenAI-compatible server: chat with the core or a worker, send feedback, watch it learn. Needs `.[serve]`."""
    _need("serve", "fastapi", "uvicorn", "prometheus_client")
    from apiary.serve.run import run_server

    gate = _gate(tolerance, max_kl, max_flips, False)
    _run(False, lambda: run_server(hive, host, port, keys, core, template=template, max_batch=max_batch, learn=learn,
                                   **_given(min_feedback=min_feedback), gate=gate))


@app.command()
def report(
    out: Annotated[Optional[Path], typer.Option(help="output directory (default HIVE/report)")] = None,
    hive: HiveOpt = None, as_json: JsonOpt = False,
):
    """Write report.md with plots: learning curves, forgetting matrix, retention over core versions,
    the reward-hacking check and every gate decision."""
    from apiary.hive.report import write_report

    h = _hive(hive)
    figures = _run(as_json, lambda: write_report(h.store, out or h.path / "report"))
    if as_json:
        print(json.dumps(figures, default=str))
        return
    for path in figures["files"]:
        console.print(path)
    for w in figures["hacking"]:
        if w["flag"]:
            console.print(f"[yellow]flag[/yellow] {w['worker']}: training reward and held-out score are drifting apart")


@app.command()
def export(
    out: Annotated[Optional[Path], typer.Option(help="output directory (default HIVE/export)")] = None,
    fmt: Annotated[str, typer.Option("--format", help="parquet or jsonl")] = "parquet",
    hive: HiveOpt = None, as_json: JsonOpt = False,
):
    """Write every table of the store (episodes, runs, adapters, evals, provenance) to open formats."""
    written = _run(as_json, lambda: _hive(hive).export(out, fmt))
    if as_json:
        print(json.dumps(written))
    else:
        for name, info in written.items():
            console.print(f"{name:18s} {info['rows']:7d} rows  {info['path']}")


@app.command()
def bench(
    parts: Annotated[Optional[str], typer.Option(help="comma-separated: trl, continual, generation (default: all)")] = None,
    docs: Annotated[Optional[Path], typer.Option(help="where benchmarks.md, peers.json and the plots go (default: docs/)")] = None,
    quick: Annotated[bool, typer.Option(help="tiny budgets: checks the suite runs; the figures mean nothing")] = False,
    minutes: Annotated[Optional[float], typer.Option(help="continual: RL minutes per job (default: the setup's)")] = None,
    steps: Annotated[Optional[int], typer.Option(help="continual: RL steps per job instead of minutes")] = None,
    distill_steps: Annotated[Optional[int], typer.Option(help="continual: distillation steps (default: the setup's)")] = None,
    race_steps: Annotated[Optional[int], typer.Option(help="trl: optimizer steps for each side (default: the race's)")] = None,
    render: Annotated[bool, typer.Option(help="rewrite the docs from docs/peers.json; run nothing")] = False,
    core: CoreOpt = None, as_json: JsonOpt = False,
):
    """apiary side by side with its peers (TRL, PEFT merges, naive fine-tuning, transformers generate),
    each comparison in one run; writes docs/benchmarks.md, docs/peers.json and plots. Needs `.[bench]`."""
    if not render:
        _need("bench", "trl", "datasets")
    from apiary.bench.continual import ContinualSetup
    from apiary.bench.report import DOCS
    from apiary.bench.suite import PARTS, BenchPlan
    from apiary.bench.suite import render as render_bench
    from apiary.bench.suite import run as run_bench
    from apiary.bench.trl_race import Race

    docs = docs or DOCS
    names = tuple(p.strip() for p in parts.split(",") if p.strip()) if parts else PARTS
    plan = _run(as_json, lambda: BenchPlan(
        parts=names, docs=docs, core=core, quick=quick,
        race=Race(**_given(steps=race_steps)),
        continual=ContinualSetup(**_given(minutes=minutes, steps=steps, distill_steps=distill_steps))))
    figures = _run(as_json, lambda: (render_bench if render else run_bench)(plan))
    if as_json:
        print(json.dumps({part: figures.get(part) for part in plan.parts} | {"time_ratio_vs_trl": figures.get("time_ratio_vs_trl")}))
    else:
        console.print(f"figures in {docs / 'peers.json'}, tables in {docs / 'benchmarks.md'}")


@app.command()
def demo(
    minutes: Annotated[Optional[float], typer.Option(help="learning minutes per job (default: the demo recipe's)")] = None,
    hive: HiveOpt = None, as_json: JsonOpt = False,
):
    """The bundled core learns two reasoning-gym jobs where it starts weak; before/after table."""
    from apiary.hive.demo import run_demo

    results = _run(as_json, lambda: run_demo(_hive(hive or Path("hive-demo")), **_given(minutes=minutes),
                                             show_progress=not as_json))
    if as_json:
        print(json.dumps([r.model_dump() for r in results]))
    else:
        _learn_table(results)


def _learn_table(results) -> None:
    table = Table("job", "worker", "before", "after", "items", "episodes", "steps", "learn", "total",
                  title="held-out accuracy before and after learning", box=box.SIMPLE_HEAD, pad_edge=False)
    for r in results:
        table.add_row(r.job, r.worker, f"{r.before:.3f}", f"[bold]{r.after:.3f}[/bold]", str(r.heldout_items), str(r.episodes),
                      str(r.steps), f"{r.learn_seconds:.0f} s", f"{r.wall_seconds:.0f} s")
    Console().print(table)
    for r in results:
        if r.stopped == "feedback used up":
            console.print(f"{r.worker}: stopped after {r.steps} step(s), the feedback is used up ({r.feedback} item(s) learned)")
        _gate_lines(r)
    turns = [r for r in results if r.long_horizon]
    if turns:  # multi-turn jobs: "before" and "after" above are success rates
        table = Table("job", "worker", "", "success", "mean score", "invalid moves", "turns", "turns to success",
                      title="multi-turn episodes (held-out, greedy)", box=box.SIMPLE_HEAD, pad_edge=False)
        for r in turns:
            for when, m in r.long_horizon.items():
                to_success = "-" if m["turns_to_success"] is None else f"{m['turns_to_success']:.1f}"
                table.add_row(r.job, r.worker, when, f"{m['success_rate']:.3f}", f"{m['mean_score']:.3f}",
                              f"{m['invalid_rate']:.1%}", f"{m['mean_turns']:.1f}", to_success)
        Console().print(table)


def _gate_lines(r) -> None:
    """The worker gate's decision on the version a learn run made, with its numbers and what is live now."""
    g = r.gate
    if g is None:
        console.print(f"{r.worker}: nothing new learned; live adapter v{r.live_version}")
        return
    kept = ("retention not measured" if g.retention_kl is None else
            f"retention KL {g.retention_kl:.4f}, {g.flips['right_to_wrong']} of {g.flips['items']} retention items "
            f"flipped right to wrong")
    verdict = "[green]passed[/green]" if g.passed else ("[yellow]overridden[/yellow]" if g.override else "[red]refused[/red]")
    console.print(f"{r.worker} v{g.version}: gate {verdict} (held-out {g.candidate:.3f} vs live v{g.live} {g.released:.3f}; "
                  f"{kept}; {g.contamination} contaminated held-out item(s); {g.seconds:.0f} s)")
    for reason in g.reasons:
        console.print(f"  - {reason}")
    state = "released" if g.released_now else "kept, not released"
    console.print(f"  v{g.version} {state}; live adapter: v{r.live_version}")


def main() -> None:
    # read by transformers and huggingface_hub when a command imports them (quiet unless the user says otherwise)
    os.environ.setdefault("TRANSFORMERS_VERBOSITY", "error")
    os.environ.setdefault("HF_HUB_DISABLE_PROGRESS_BARS", "1")
    warnings.filterwarnings("ignore", category=FutureWarning)
    app()


if __name__ == "__main__":
    sys.exit(main())
