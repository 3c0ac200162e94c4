"""`apiary bench`: apiary side by side with its peers, each comparison in one run.

Parts: `trl` (learning speed against TRL's GRPOTrainer), `continual` (forgetting against naive
sequential LoRA and full fine-tuning, and consolidation by distillation against linear / TIES /
DARE merges), `generation` (sampling against `transformers.generate` and the machine's bound).
Each part writes its section of docs/benchmarks.md and a PNG; all figures go to docs/peers.json,
one top-level key per part (a part run alone replaces only its own key), plus `time_ratio_vs_trl`.
`quick` runs every part with tiny budgets (the test suite uses it so that this code cannot rot);
its figures say nothing about speed.
"""

from __future__ import annotations

import json
import tempfile
import time
from dataclasses import dataclass, field, replace
from pathlib import Path

from apiary.bench import continual, continual_report, generation, peers_report, trl_race
from apiary.bench.report import DOCS, machine, merge_json, versions, write_section
from apiary.hive.recipes import CONTINUAL, DEMO, WorkerPlan
from apiary.learners.distil_back import DistilBackConfig
from apiary.jobs.spec import load_job
from apiary.models.core import load_core

PARTS = ("trl", "continual", "generation")
TITLES = {
    "trl": "Side by side: learning speed against TRL",
    "continual": "Continual learning: the hive against merges and naive fine-tuning",
    "generation": "Side by side: generation against transformers and the machine's limit",
}
QUICK_HELDOUT = "heldout_size=8"
SUMMARY = "Side by side with the peers: summary"


@dataclass
class BenchPlan:
    parts: tuple[str, ...] = PARTS
    docs: Path = DOCS
    core: str | None = None  # default: the bundled core
    quick: bool = False
    race: trl_race.Race = field(default_factory=trl_race.Race)
    continual: continual.ContinualSetup = field(default_factory=continual.ContinualSetup)
    batches: tuple[int, ...] = (1, 8, 32)
    new_tokens: int = 64
    stop_new_tokens: int = 256

    def __post_init__(self):
        unknown = set(self.parts) - set(PARTS)
        if unknown:
            raise ValueError(f"unknown bench part(s) {sorted(unknown)}; choose from {', '.join(PARTS)}")
        if self.quick:
            self.race = trl_race.Race(steps=2, eval_every=1)
            self.continual = continual.ContinualSetup(
                minutes=None, steps=1, distill_steps=1, config=replace(CONTINUAL.rl, prompts_per_step=2, samples_per_prompt=2,
                                                                       max_new_tokens=4),
                distil_back=DistilBackConfig(every=1, updates=1, prompts_per_update=2, new_tokens=4),
                jobs=[WorkerPlan(w, s, o + [QUICK_HELDOUT]) for w, s, o in CONTINUAL.workers[:2]],
                methods=self.continual.methods, naive=self.continual.naive, seed=self.continual.seed)
            self.batches, self.new_tokens, self.stop_new_tokens = (1, 4), 4, 8

    def command(self, part: str) -> str:
        flags = " --quick" if self.quick else ""
        if part == "continual" and not self.quick:
            setup = self.continual
            flags += f" --minutes {setup.minutes:g}" if setup.steps is None else f" --steps {setup.steps}"
            flags += f" --distill-steps {setup.distill_steps}"
            flags += f" --methods {','.join(setup.methods)}" if setup.methods != continual.METHODS else ""
            flags += f" --naive {','.join(setup.naive)}" if setup.naive != continual.NAIVE else ""
            flags += f" --seed {setup.seed}" if setup.seed else ""
        if part == "trl" and not self.quick:
            flags += f" --race-steps {self.race.steps}"
        return f"apiary bench --parts {part}{flags}"


def run_trl(plan: BenchPlan, core) -> dict:
    _, spec, overrides = DEMO.workers[0]
    job = load_job(spec, overrides + ([QUICK_HELDOUT] if plan.quick else []))
    plain = replace(DEMO.rl, anchor_weight=0.0)  # the race is plain GRPO on both sides: TRL has no anchor term
    config = replace(plain, prompts_per_step=2, samples_per_prompt=4, max_new_tokens=4) if plan.quick else plain
    return write_trl(plan, trl_race.run(core, job, config, plan.race) | {"machine": machine(), "versions": versions()},
                     plan.command("trl"))


def write_trl(plan: BenchPlan, fig: dict, command: str) -> dict:
    peers_report.race_plot(fig, plan.docs / "trl_race.png")
    write_section(TITLES["trl"], peers_report.race_markdown(fig, TITLES["trl"], command, "trl_race.png"), plan.docs)
    return fig


def run_continual(plan: BenchPlan, _core) -> dict:
    with tempfile.TemporaryDirectory(prefix="apiary-continual-") as hive:
        fig = continual.run(Path(hive), plan.core, plan.continual) | {"machine": machine(), "versions": versions()}
    return write_continual(plan, fig, plan.command("continual"))


def write_continual(plan: BenchPlan, fig: dict, command: str) -> dict:
    fig["headline"] = continual_report.headline(fig)
    continual_report.plot(fig, plan.docs / "continual.png")
    write_section(TITLES["continual"], continual_report.markdown(fig, TITLES["continual"], command, "continual.png"),
                  plan.docs)
    return fig


def run_generation(plan: BenchPlan, core) -> dict:
    # llama.cpp runs the bundled GGUF, so only beside the bundled core
    fig = generation.run(core, plan.batches, plan.new_tokens, llama_cpp=plan.core is None and not plan.quick,
                         stop_new_tokens=plan.stop_new_tokens)
    return write_generation(plan, fig | {"machine": machine(), "versions": versions()}, plan.command("generation"))


def write_generation(plan: BenchPlan, fig: dict, command: str) -> dict:
    peers_report.generation_plot(fig, plan.docs / "generation.png")
    write_section(TITLES["generation"], peers_report.generation_markdown(fig, TITLES["generation"], command,
                                                                         "generation.png"), plan.docs)
    return fig


def render(plan: BenchPlan) -> dict:
    """Rewrite the sections and plots of the plan's parts from docs/peers.json, running nothing (for a
    report change); derived figures (comparisons, headlines) are recomputed from the stored raw ones."""
    path = plan.docs / "peers.json"
    if not path.exists():
        raise FileNotFoundError(f"no figures to render: {path} does not exist (run `apiary bench` first)")
    figures = json.loads(path.read_text())
    writers = {"trl": write_trl, "continual": write_continual, "generation": write_generation}
    for part in (p for p in plan.parts if p in figures):
        fig = figures[part]
        if part == "trl":
            fig |= trl_race.compare(fig["apiary"], fig["trl"], fig["race"]["target"], fig["heldout_items"])
            figures["time_ratio_vs_trl"] = fig["time_ratio_vs_trl"]
        figures[part] = writers[part](plan, fig, fig["command"])
    merged = merge_json(path, figures)
    write_section(SUMMARY, summary_markdown(merged), plan.docs)
    return merged


RUNNERS = {"trl": run_trl, "continual": run_continual, "generation": run_generation}


def run(plan: BenchPlan) -> dict:
    """Run the plan's parts in order; returns everything now in docs/peers.json."""
    plan.docs.mkdir(parents=True, exist_ok=True)
    core = load_core(plan.core)
    merged = {}
    for part in plan.parts:  # each part's figures are saved as soon as it ends
        began = time.perf_counter()
        print(f"== {part}", flush=True)
        figures = {part: RUNNERS[part](plan, core) | {"quick": plan.quick, "command": plan.command(part)}}
        if part == "trl":
            figures["time_ratio_vs_trl"] = figures["trl"]["time_ratio_vs_trl"]
        merged = merge_json(plan.docs / "peers.json", figures)
        write_section(SUMMARY, summary_markdown(merged), plan.docs)
        print(f"== {part}: {time.perf_counter() - began:.0f} s", flush=True)
    return merged


def _verdict(value, ok: bool | None) -> str:
    return f"{value} ({'met' if ok else 'missed'})" if ok is not None else f"{value} (no figure: see its section)"


def summary_markdown(figures: dict) -> str:
    """The four targets of the side-by-side suite, from docs/peers.json."""
    rows = []
    trl = figures.get("trl")
    if trl:
        ratio = trl["time_ratio_vs_trl"]
        seen = _verdict("-" if ratio is None else f"{ratio:.2f} at {trl['level']:.2f}", None if ratio is None else ratio <= 0.5)
        if trl.get("level_within_noise"):
            seen = seen.replace("(met)", "(met on paper only: that level is within noise of the start)")
        rows.append(("learning speed: apiary wall time / TRL's to the same held-out accuracy", "<= 0.5", seen))
        if "same_steps_wall_ratio" in trl:
            rows.append(("learning speed: apiary wall time / TRL's for the same steps and samples", "-",
                         f"{trl['same_steps_wall_ratio']:.2f}"))
    top = (figures.get("continual") or {}).get("headline")
    if top:
        ratio = top["flips_ratio_distill_vs_naive_lora"]
        rows.append(("forgetting: retention flips, distillation / naive sequential LoRA", "<= 0.2",
                     _verdict("-" if ratio is None else f"{ratio:.2f}", None if ratio is None else ratio <= 0.2)))
        lead = top["distill_minus_best_merge"]
        rows.append((f"consolidation: mean normalised gain, distillation minus best merge ({top['best_merge']})", "> 0",
                     _verdict("-" if lead is None else f"{lead:+.2f}", None if lead is None else lead > 0)))
    gen = figures.get("generation")
    if gen:
        last = gen["rows"][-1]
        rows.append((f"generation: apiary / transformers generate at batch {last['batch']}, same tokens", ">= 2",
                     _verdict(f"{last['speedup_vs_hf']:.2f}x", last["speedup_vs_hf"] >= 2)))
        stops = last["with_stops"]["speedup_vs_hf"]
        rows.append(("generation: the same with stop tokens on (tokens a caller gets)", ">= 2",
                     _verdict(f"{stops:.2f}x", stops >= 2)))
    quick = any((figures.get(p) or {}).get("quick") for p in PARTS)
    table = "\n".join(f"| {what} | {target} | {seen} |" for what, target, seen in rows)
    return f"""## {SUMMARY}

`make bench` (or `apiary bench`) runs all of them; each section below gives its own command. Figures in
docs/peers.json.{' **These figures come from the quick form (tiny budgets) and say nothing.**' if quick else ''}

| comparison | target | seen |
|---|---|---|
{table}
"""
