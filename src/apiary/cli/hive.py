"""Commands of the hive: consolidate, status, rollback, deploy, serve, report, export, bench, check, backup, restore."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Annotated, Optional

import typer
from rich import box
from rich.console import Console
from rich.markup import escape
from rich.table import Table

from apiary.cli.shell import (CoreOpt, HiveOpt, JsonOpt, MaxFlipsOpt, MaxKlOpt, TemplateOpt, ToleranceOpt, _fail, _gate,
                              _given, _consolidation_lines, _hive, _hive_dir, _named, _need, _run, _store_url, _artifacts_url, app,
                              console)
from apiary.evals.gate import GateConfig

@app.command()
def consolidate(
    method: Annotated[str, typer.Option(
        help="distill (into a core adapter), full (distillation into every weight at a small learning rate), "
             "linear, ties or dare_linear")] = "distill",
    workers: Annotated[Optional[str], typer.Option(help="comma-separated workers (default: all on the current core)")] = None,
    steps: Annotated[Optional[int], typer.Option(help="distillation steps (default: the distillation config's)")] = None,
    anchor_weight: Annotated[Optional[float], typer.Option(
        help="distillation: weight of staying near the previous core (default: the distillation config's)")] = None,
    full_lr: Annotated[Optional[float], typer.Option(help="full: the learning rate (default 1e-5)")] = None,
    tolerance: ToleranceOpt = GateConfig.tolerance, max_kl: MaxKlOpt = GateConfig.max_retention_kl,
    max_flips: MaxFlipsOpt = GateConfig.max_flip_rate,
    release: Annotated[bool, typer.Option(help="release the candidate if it passes")] = True,
    cluster: Annotated[Optional[str], typer.Option(
        help="a Ray cluster's address (host:port, ray://host:port, auto; default $RAY_ADDRESS): the consolidation "
             "runs there as one task; the hive and its store must be reachable from every node")] = None,
    cpus: Annotated[float, typer.Option(help="CPUs the consolidation's task asks for (with --cluster)")] = 1,
    hive: HiveOpt = None, core: CoreOpt = None, template: TemplateOpt = None, as_json: JsonOpt = False,
):
    """Build a new core version from the workers, measure it, and release it only if it passes the gate;
    on a Ray cluster (--cluster or RAY_ADDRESS) as one task there."""
    from apiary.hive.cluster_tasks import TasksFailed
    from apiary.hive.consolidate import ConsolidateConfig
    from apiary.hive.distill import DistillConfig

    distill = DistillConfig(**_given(steps=steps, anchor_weight=anchor_weight))
    config = ConsolidateConfig(method=method, distill=distill, release=release, **_given(full_learning_rate=full_lr),
                               gate=_gate(tolerance, max_kl, max_flips, as_json))
    names = [w.strip() for w in workers.split(",")] if workers else None
    try:
        result = _run(as_json, lambda: _hive(hive, core, template).consolidate(
            config=config, workers=names, show_progress=not as_json, cluster=cluster, cpus=cpus))
    except TasksFailed as failed:
        _fail(str(failed), as_json)
    if as_json:
        print(result.model_dump_json())
        return
    _consolidation_lines(result)


@app.command()
def status(hive: HiveOpt = None, as_json: JsonOpt = False):
    """Core versions (released or refused, and why) and workers with their held-out scores."""
    from apiary.hive.status import gate_verdict

    info = _run(as_json, lambda: _hive(hive).status())
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
    _named("--worker", worker, "worker", as_json)
    _named("--tenant", tenant, "tenant", as_json)
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
    prefill_chunk: Annotated[Optional[int], typer.Option(
        help="prompt tokens a joining request is read by between the running replies' decoding steps, so they "
             "keep streaming (default 64; 0: whole prompts, the running replies waiting)")] = None,
    precision: Annotated[str, typer.Option(
        help="float32; bf16: answer from bfloat16 copies of the cores (faster where the CPU has AVX512-BF16 or "
             "AMX; elsewhere float32 with a warning); int8: bf16 with int8 weights while fewer than 4 requests "
             "decode together (faster at a few). Learning and evaluation stay float32")] = "float32",
    learn: Annotated[bool, typer.Option("--learn/--no-learn", help="workers learn from feedback while serving")] = True,
    min_feedback: Annotated[Optional[int], typer.Option(
        help="new feedback items that start a learning run (default: the learning config's)")] = None,
    text_learner: Annotated[str, typer.Option(
        help="how corrections and critiques are learned: mixed (corrections by on-policy self-distillation from "
             "context, critiques by revision), separate (SFT on corrections, revisions from critiques) or "
             "self_distill (self-distillation from context, both)")] = "mixed",
    document_steps: Annotated[Optional[int], typer.Option(
        help="context distillation steps of a background run on documents added with POST /v1/documents "
             "(default 4)")] = None,
    distil_back: Annotated[bool, typer.Option(
        "--distil-back/--no-distil-back",
        help="background runs on feedback also distil back toward the core: a phase after every 5 steps and one "
             "at the end (learners.distil_back)")] = True,
    lr: Annotated[Optional[list[str]], typer.Option(
        help="NAME=RATE: a learner's learning rate in background runs (repeatable; default: each learner's own, "
             "e.g. corrections 5e-4)")] = None,
    rate_limit: Annotated[Optional[int], typer.Option(
        help="requests a minute each tenant may send, answered 429 with Retry-After past it (default 0: no limit)")] = None,
    generation_timeout: Annotated[Optional[float], typer.Option(
        help="seconds one reply may take, queue included; past it the request gets 504 and the server goes on "
             "(default 120)")] = None,
    body_timeout: Annotated[Optional[float], typer.Option(
        help="seconds a request's body may take to arrive; past it the request gets 408 and its connection is "
             "closed (default 30)")] = None,
    tolerance: ToleranceOpt = GateConfig.tolerance, max_kl: MaxKlOpt = GateConfig.max_retention_kl,
    max_flips: MaxFlipsOpt = GateConfig.max_flip_rate,
    hive: HiveOpt = None, core: CoreOpt = None, template: TemplateOpt = None,
):
    """An OpenAI-compatible server: chat with the core or a worker, send feedback, watch it learn. Needs `.[serve]`."""
    _need("serve", "fastapi", "uvicorn", "prometheus_client", "jinja2")
    from apiary.serve.run import run_server

    gate = _gate(tolerance, max_kl, max_flips, False)
    _run(False, lambda: run_server(hive, host, port, keys, core, template=template, max_batch=max_batch, learn=learn,
                                   **_given(min_feedback=min_feedback, requests_per_minute=rate_limit,
                                            document_steps=document_steps,
                                            generation_timeout=generation_timeout, body_timeout=body_timeout,
                                            prefill_chunk=prefill_chunk), gate=gate,
                                   text_learner=text_learner, distil_back=distil_back,
                                   learning_rates=_serve_rates(lr or []), precision=precision))


def _serve_rates(values: list[str]) -> dict[str, float]:
    """`apiary serve --lr NAME=RATE` values: each for one learner (which learners a run uses depends on its feedback)."""
    from apiary.cli.learning import _learning_rates

    rates = _learning_rates(values)
    if None in rates:
        raise ValueError("apiary serve --lr takes NAME=RATE for one learner, e.g. corrections=2e-4")
    return rates


@app.command()
def report(
    out: Annotated[Optional[Path], typer.Option(help="output directory (default HIVE/report)")] = None,
    hive: HiveOpt = None, as_json: JsonOpt = False,
):
    """Write report.md with plots: learning curves, forgetting matrix, retention over core versions,
    the reward-hacking check and every gate decision."""
    from apiary.hive.report import write_report

    h = _run(as_json, lambda: _hive(hive))
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
    methods: Annotated[Optional[str], typer.Option(help="continual: comma-separated consolidation methods (default: all)")] = None,
    naive: Annotated[Optional[str], typer.Option(help="continual: comma-separated naive peers, lora and/or full (default: both)")] = None,
    seed: Annotated[Optional[int], typer.Option(help="continual: the sampling seed of the workers and peers (default 0)")] = None,
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
        continual=ContinualSetup(**_given(minutes=minutes, steps=steps, distill_steps=distill_steps, seed=seed,
                                          methods=methods and [m.strip() for m in methods.split(",") if m.strip()],
                                          naive=naive and [m.strip() for m in naive.split(",") if m.strip()]))))
    figures = _run(as_json, lambda: (render_bench if render else run_bench)(plan))
    if as_json:
        print(json.dumps({part: figures.get(part) for part in plan.parts} | {"time_ratio_vs_trl": figures.get("time_ratio_vs_trl")}))
    else:
        console.print(f"figures in {docs / 'peers.json'}, tables in {docs / 'benchmarks.md'}")



@app.command()
def check(
    repair: Annotated[bool, typer.Option(help="do the safe repairs: remove leftovers no row points at (staging "
                                              "directories of a kill, versions never recorded); run it while nothing "
                                              "else writes to the hive")] = False,
    hive: HiveOpt = None, as_json: JsonOpt = False,
):
    """Check the hive's integrity: store rows against artifacts (present, inside the hive, matching the
    checksums recorded when written), leftovers no row points at, checkpoints, the schema. Says how to
    repair each finding; exit 1 if anything is damaged or left over."""
    from apiary.store.check import DAMAGE, LEFTOVER, check_hive, report_json

    report = _run(as_json, lambda: check_hive(_hive_dir(hive), repair=repair, url=_store_url(), artifacts=_artifacts_url()))
    if as_json:
        print(report_json(report))
    else:
        colours = {DAMAGE: "red", LEFTOVER: "yellow"}
        for f in report.findings:
            colour = colours.get(f.level, "dim")
            console.print(f"[{colour}]{f.level}[/{colour}] {escape(f.what)}")
            if f.repair:
                console.print(f"  repair: {escape(f.repair)}")
        for path in report.repaired:
            console.print(f"[green]removed[/green] {escape(path)}")
        verdict = "[green]clean[/green]" if report.clean else "[red]needs repair[/red]"
        console.print(f"hive {escape(report.hive)}: {report.artifacts} artifact(s) checked; {verdict}")
    if not report.clean:
        raise typer.Exit(1)


@app.command()
def backup(
    out: Annotated[Path, typer.Argument(help="the backup file to write (.tar.gz)")],
    hive: HiveOpt = None, as_json: JsonOpt = False,
):
    """Back up the hive to one .tar.gz: a consistent snapshot of the store (SQLite's online backup, safe
    while a server or a learn runs) and the artifacts its rows point at, with the checkpoints."""
    from apiary.store.backup import backup as write_backup

    result = _run(as_json, lambda: write_backup(_hive_dir(hive), out, url=_store_url()))
    if as_json:
        print(json.dumps(result.__dict__))
    else:
        console.print(f"{result.path}: the store, {result.adapters} adapter version(s), {result.cores} core version(s) "
                      f"({result.bytes / 1e6:.1f} MB)")


@app.command()
def restore(
    archive: Annotated[Path, typer.Argument(help="a file written by `apiary backup`")],
    force: Annotated[bool, typer.Option(help="replace the store and artifacts of a hive that is not empty")] = False,
    hive: HiveOpt = None, as_json: JsonOpt = False,
):
    """Restore a hive from a backup into --hive (refused if that hive is not empty, unless --force)."""
    from apiary.store.backup import restore as read_backup

    root = _hive_dir(hive)
    _run(as_json, lambda: read_backup(archive, root, force))
    if as_json:
        print(json.dumps({"hive": str(root), "restored_from": str(archive)}))
    else:
        console.print(f"restored {archive} into {root}; `apiary check --hive {root}` verifies it")
