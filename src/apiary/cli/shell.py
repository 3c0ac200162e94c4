"""What every command shares: the Typer app, the common options, errors, and the tables that show a
learning run. Cheap to import: the model stack is imported inside the command that needs it."""

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

from apiary.evals.gate import GateConfig  # a plain dataclass: cheap to import
from apiary.store.names import BadName, check_name  # a regular expression: cheap to import

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


STORE_ENV, ARTIFACTS_ENV = "APIARY_STORE_URL", "APIARY_ARTIFACTS_URL"


@app.callback()
def _options(store: Annotated[Optional[str], typer.Option(
        "--store", help="the store's database URL, e.g. postgresql+psycopg://USER:PASSWORD@HOST/DB (needs the "
                        "postgres extra); default $APIARY_STORE_URL, else the hive's own SQLite file")] = None,
             artifacts: Annotated[Optional[str], typer.Option(
        "--artifacts", help="a URL every node publishes adapters, core versions and checkpoints to and fetches them "
                            "from: file:///SHARED/DIR or s3://BUCKET/PREFIX (s3 extra); default $APIARY_ARTIFACTS_URL, "
                            "else the hive directory only")] = None):
    """Options before the command, for every command: `apiary --store URL --artifacts URL status`."""
    if store:  # through the environment, so that what a command starts (serve's learning) opens the same store
        os.environ[STORE_ENV] = store
    if artifacts:
        os.environ[ARTIFACTS_ENV] = artifacts


def _store_url() -> str | None:
    """The store's database URL the user gave (--store or $APIARY_STORE_URL), None for the hive's SQLite file."""
    return os.environ.get(STORE_ENV) or None


def _artifacts_url() -> str | None:
    """The artifact URL the user gave (--artifacts or $APIARY_ARTIFACTS_URL), None for the hive directory only."""
    return os.environ.get(ARTIFACTS_ENV) or None


def _fail(message: str, as_json: bool) -> None:
    if as_json:
        print(json.dumps({"error": message}))
    console.print(f"[red]error:[/red] {escape(message)}")
    raise typer.Exit(2)


def _named(option: str, value: str | None, what: str, as_json: bool) -> None:
    """Stop (exit 2, naming the option) before anything is loaded or written if a worker or tenant
    name breaks the name rule (store.names)."""
    if value is not None:
        try:
            check_name(value, what)
        except BadName as err:
            _fail(f"{option}: {err}", as_json)


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


def _hive_dir(hive: Path | None) -> Path:
    """The hive directory a command names, for commands that must not open (and so migrate) the store:
    --hive, else $APIARY_HIVE, else ./hive (as `Hive` decides)."""
    return Path(hive or os.environ.get("APIARY_HIVE", "hive"))


def _given(**options) -> dict:
    """The options the user gave (not None): the rest keep the config's own defaults."""
    return {name: value for name, value in options.items() if value is not None}


def _run(as_json: bool, fn):
    try:
        return fn()
    except (ValueError, FileNotFoundError, KeyError, ImportError, ConnectionError) as err:  # ImportError: an extra not installed
        _fail(str(err).strip("'\""), as_json)


def _gate(tolerance: float, max_kl: float, max_flips: float, as_json: bool) -> GateConfig:
    return _run(as_json, lambda: GateConfig(tolerance=tolerance, max_retention_kl=max_kl, max_flip_rate=max_flips))



def _learn_table(results) -> None:
    table = Table("job", "worker", "learners", "before", "after", "items", "episodes", "steps", "learn", "total",
                  title="held-out accuracy before and after learning", box=box.SIMPLE_HEAD, pad_edge=False)
    for r in results:
        steps = f"{r.steps - 1} + closing" if r.closing_phase else str(r.steps)  # distil_back's last phase toward the core
        table.add_row(r.job, r.worker, "+".join(r.learners), f"{r.before:.3f}", f"[bold]{r.after:.3f}[/bold]",
                      str(r.heldout_items), str(r.episodes), steps, f"{r.learn_seconds:.0f} s", f"{r.wall_seconds:.0f} s")
    Console().print(table)
    for r in results:
        if r.stopped == "feedback used up":
            console.print(f"{r.worker}: stopped after {r.steps} step(s), the feedback is used up ({r.feedback} item(s) learned)")
        for g in r.held_back:
            console.print(f"[yellow]{r.worker}: held back the feedback of {g['by']}[/yellow]: {g['reason']}")
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


def _consolidation_lines(result) -> None:
    """A consolidation's table (held-out per job: released core, worker, candidate, gain kept) and the
    core gate's decision with its numbers and reasons."""
    table = Table("job", "worker", "released core", "worker", "candidate", "gain kept", box=box.SIMPLE_HEAD,
                  title=f"core v{result.version} ({result.method}) from v{result.parent}")
    for j in result.jobs:
        table.add_row(j.job, j.worker or "-", f"{j.released:.3f}", "-" if j.worker_score is None else f"{j.worker_score:.3f}",
                      f"[bold]{j.candidate:.3f}[/bold]", "-" if j.gain_kept is None else f"{j.gain_kept:.2f}")
    Console().print(table)
    test, bounds = result.flip_test, result.gate
    floor = (f" (noise floor {test['floor']:.1f} at this KL, {test['allowed']:.1f} allowed)" if test else "")
    kl_bound = f" (bound {bounds['max_retention_kl']:g})" if bounds else ""
    console.print(f"retention KL {result.retention_kl:.4f}{kl_bound}; {result.flips['right_to_wrong']} of "
                  f"{result.flips['items']} retention items flipped right to wrong{floor}; {result.contamination} "
                  f"contaminated held-out item(s); {result.seconds:.0f} s")
    verdict = "[green]passed[/green]" if result.passed else "[red]refused[/red]"
    state = "released" if result.released else "kept, not released"
    console.print(f"core gate {verdict}: core v{result.version} {state}; current core: v{result.current_core}")
    for reason in result.reasons:
        console.print(f"  - {escape(reason)}")
