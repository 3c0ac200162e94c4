"""Poisoned feedback: one giver of three is wrong on 30% of what they say. Does the hive keep the gain?

The bundled core attempts chain_sum training tasks (two one-digit terms; `--tasks` x `--samples`, temperature
0.7). Three simulated people (alice, bob, mallory) each give feedback on a random `--share` of those attempts
(so some attempts get feedback from two or three of them): the reference answer as a correction of a wrong
answer, a reward of 1 for a right one. mallory is wrong on `--poison` (30%) of hers: a correction off by one
or two, or a reward of 0 for a right answer. Three fresh workers learn from copies of the same attempts with
the corrections and rewards learners (`--epochs` passes) and distil_back's phases, each gated as every `learn` is:

- clean:        every giver's feedback with mallory's wrong items taken out (what the feedback is worth);
- flagging on:  all of it, apiary's defaults (a flagged giver's feedback is held back: evals.givers);
- flagging off: all of it, `skip_flagged=False` (only the gate stands between poison and release).

Figures per seed: held-out before and after (the candidate), whether the gate released it, the released
worker's held-out against the live one's, the givers flagged, and the share of the clean gain kept.
Target (issue 21): with 30% poison the released worker never scores below the live one on held-out, and
keeps at least 70% of the gain the clean feedback alone gives.

    python -m apiary.bench.poison [--seeds 2] [--tasks 64] [--samples 4] [--epochs 3]
    python -m apiary.bench.poison --quick   # a tiny random core, a few tasks, ~1 minute: checks that it runs

Writes the "Poisoned feedback" section of docs/benchmarks.md and docs/poison.json (`--docs` elsewhere).
"""

from __future__ import annotations

import argparse
import json
import random
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path

import torch

from apiary import Hive
from apiary.bench.report import DOCS, machine, write_section
from apiary.hive.mix import with_distil_back
from apiary.hive.recipes import ARITH
from apiary.learners.corrections import CorrectionsConfig
from apiary.learners.rewards import RewardsConfig
from apiary.store.feedback import make_feedback
from apiary.store.records import Episode, Feedback

TITLE = "Poisoned feedback: one giver of three wrong on 30%"
GIVERS, POISONER = ("alice", "bob", "mallory"), "mallory"
CONDITIONS = ("clean", "flagging on", "flagging off")


@dataclass
class Plan:
    seeds: int = 2
    tasks: int = 64
    samples: int = 4
    epochs: int = 3
    share: float = 0.6  # of the attempts each giver gives feedback on
    poison: float = 0.3  # of mallory's feedback that is wrong
    heldout: int = 100  # held-out items of the job
    core: str | None = None  # None: the bundled core
    quick: bool = False
    docs: Path = field(default_factory=lambda: DOCS)

    @classmethod
    def quick_form(cls, core: str, docs: Path) -> "Plan":
        return cls(seeds=1, tasks=20, samples=2, epochs=1, heldout=8, core=core, quick=True, docs=docs)


@dataclass
class Given:
    feedback: Feedback
    poisoned: bool


def give(episodes: list[Episode], share: float, poison: float, seed: int) -> list[Given]:
    """Every giver's feedback on a random `share` of the episodes, in one shuffled order (as people send it);
    a `poison` share of mallory's, chosen at random, wrong."""
    rng = random.Random(seed)
    given = []
    for by in GIVERS:
        chosen = rng.sample(episodes, round(share * len(episodes)))
        wrong = set(rng.sample(range(len(chosen)), round(poison * len(chosen)))) if by == POISONER else set()
        given += [_feedback(e, by, i in wrong, rng) for i, e in enumerate(chosen)]
    rng.shuffle(given)
    return given


def _feedback(episode: Episode, by: str, poisoned: bool, rng: random.Random) -> Given:
    if episode.score >= 1.0:
        return Given(make_feedback(episode.id, reward=0.0 if poisoned else 1.0, by=by), poisoned)
    answer = episode.answer if not poisoned else str(int(episode.answer) + rng.choice([-2, -1, 1, 2]))
    return Given(make_feedback(episode.id, correction=answer, by=by), poisoned)


def condition(hive: Hive, job, attempts: list[Episode], given: list[Given], worker: str, name: str, plan: Plan) -> dict:
    """One fresh worker learning from its copy of the attempts and the feedback this condition keeps."""
    copies = _copy(hive, job, attempts, worker)
    new_id = {old.id: new.id for old, new in zip(attempts, copies)}
    kept = [g.feedback for g in given if not (name == "clean" and g.poisoned)]
    hive.store.add_feedback([f.model_copy(update={"episode_id": new_id[f.episode_id]}) for f in kept])
    flagging = name != "flagging off"
    configs = {"corrections": CorrectionsConfig(epochs=plan.epochs, skip_flagged=flagging),
               "rewards": RewardsConfig(epochs=plan.epochs, skip_flagged=flagging)}
    learners = with_distil_back(list(configs))  # as `apiary learn` and the server learn feedback
    result = hive.learn(job, worker, learners=learners, configs=configs, show_progress=False)
    gate = result.gate
    released = result.after if gate is not None and gate.passed else result.before
    return {"condition": name, "feedback": len(kept), "poisoned": sum(g.poisoned for g in given) if name != "clean" else 0,
            "learned": result.feedback, "steps": result.steps, "before": result.before, "after": result.after,
            "passed": bool(gate and gate.passed), "reasons": gate.reasons if gate else ["nothing learned"],
            "released": released, "gain": released - result.before,
            "held_back": [g["by"] for g in result.held_back], "wall_seconds": result.wall_seconds}


def _copy(hive: Hive, job, episodes: list[Episode], worker: str) -> list[Episode]:
    """The same attempts, recorded as the given worker's (feedback is per worker)."""
    copies = [e.model_copy(update={"id": None, "worker": worker}) for e in episodes]
    hive.store.ensure_worker(worker, job.name, hive.core.name, job.describe(), prompt_format=hive.core.prompt_format.name)
    for copy, episode_id in zip(copies, hive.store.add_episodes(copies)):
        copy.id = episode_id
    return copies


def one_seed(hive: Hive, seed: int, plan: Plan) -> dict:
    torch.manual_seed(seed)
    job = hive.job(ARITH.spec, [*ARITH.overrides, f"heldout_size={plan.heldout}"])
    attempts = []
    for start in range(0, plan.tasks, 16):
        attempts += hive.attempt(job, f"attempts{seed}", min(16, plan.tasks - start), samples=plan.samples,
                                 start=seed * plan.tasks + start)
    given = give(attempts, plan.share, plan.poison, seed)
    rows = {name: condition(hive, job, attempts, given, f"s{seed}-{name.replace(' ', '-')}", name, plan) for name in CONDITIONS}
    for row in rows.values():
        print(json.dumps({"seed": seed} | row), flush=True)
    clean = rows["clean"]["gain"]
    kept = {name: (row["gain"] / clean if clean > 0 else None) for name, row in rows.items() if name != "clean"}
    return {"seed": seed, "attempts": len(attempts), "attempt_accuracy": sum(e.score for e in attempts) / len(attempts),
            "feedback": len(given), "conditions": rows, "clean_gain_kept": kept}


def run(plan: Plan) -> dict:
    started = time.perf_counter()
    with tempfile.TemporaryDirectory() as directory:
        core = plan.core
        if plan.quick and core is None:
            from apiary.bench.kill_trials import tiny_core
            core = str(tiny_core(Path(directory) / "core"))
        hive = Hive(Path(directory) / "hive", core=core)
        seeds = [one_seed(hive, seed, plan) for seed in range(plan.seeds)]
    result = {"machine": machine(), "plan": {k: v for k, v in plan.__dict__.items() if k != "docs"},
              "seeds": seeds, "targets": targets(seeds), "seconds": time.perf_counter() - started}
    plan.docs.mkdir(parents=True, exist_ok=True)
    (plan.docs / "poison.json").write_text(json.dumps(result, indent=1, default=str))
    write_section(TITLE, markdown(result, command(plan)), plan.docs)
    return result


def targets(seeds: list[dict]) -> dict:
    """Issue 21's two targets, for flagging on (apiary's defaults), over every seed."""
    on = [s["conditions"]["flagging on"] for s in seeds]
    kept = [s["clean_gain_kept"]["flagging on"] for s in seeds]
    return {"never_below_live": all(r["released"] >= r["before"] for r in on),
            "kept_70_percent": all(k is not None and k >= 0.7 for k in kept),
            "clean_gained": all(s["conditions"]["clean"]["gain"] > 0 for s in seeds)}


def command(plan: Plan) -> str:
    if plan.quick:
        return "python -m apiary.bench.poison --quick"
    return (f"python -m apiary.bench.poison --seeds {plan.seeds} --tasks {plan.tasks} --samples {plan.samples} "
            f"--epochs {plan.epochs}")


def markdown(result: dict, cmd: str) -> str:
    rows = []
    for s in result["seeds"]:
        for name, r in s["conditions"].items():
            kept = s["clean_gain_kept"].get(name)
            rows.append(f"| {s['seed']} | {name} | {r['feedback']} ({r['poisoned']} wrong) | {', '.join(r['held_back']) or '-'} | "
                        f"{r['before']:.3f} | {r['after']:.3f} | {'released' if r['passed'] else 'refused'} | "
                        f"{r['released']:.3f} | {r['gain']:+.3f} | {'-' if kept is None else f'{kept:.0%}'} |")
    t = result["targets"]
    verdict = (f"released never below live (flagging on): {'met' if t['never_below_live'] else 'missed'}; "
               f">= 70% of the clean gain kept: {'met' if t['kept_70_percent'] else 'missed'}"
               + ("" if t["clean_gained"] else " (the clean feedback itself gained nothing on some seed: no gain to keep)"))
    plan = result["plan"]
    note = "Quick form (a tiny random core: the figures say nothing about learning). " if plan["quick"] else ""
    return f"""## {TITLE}

Command: `{cmd}`
{note}Machine: {result['machine']}. Job: chain_sum (two one-digit terms), {plan['heldout']} held-out items. Three simulated
givers each give feedback on {plan['share']:.0%} of {plan['tasks']} x {plan['samples']} attempts (a correction of a wrong answer,
a reward of 1 for a right one); mallory is wrong on {plan['poison']:.0%} of hers (a correction off by one or two, a reward of 0
for a right answer). Each condition is a fresh worker learning with the corrections and rewards learners ({plan['epochs']}
passes; apiary's defaults: corrections at lr 5e-4, rewards at 1e-3, distil_back's phases), gated by the default gate. "released" is the held-out score of the worker live after the gate (the live one's if refused);
"kept" is its gain as a share of the clean condition's. {result['seconds']:.0f} s in all.

| seed | condition | feedback | held back | before | after | gate | released | gain | kept |
| --- | --- | --- | --- | --- | --- | --- | --- | --- | --- |
{chr(10).join(rows)}

Targets: {verdict}.
"""


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seeds", type=int, default=Plan.seeds)
    parser.add_argument("--tasks", type=int, default=Plan.tasks)
    parser.add_argument("--samples", type=int, default=Plan.samples)
    parser.add_argument("--epochs", type=int, default=Plan.epochs)
    parser.add_argument("--core", default=None, help="a core (default: the bundled one; --quick: a tiny random one)")
    parser.add_argument("--docs", type=Path, default=DOCS, help="where benchmarks.md and poison.json are written")
    parser.add_argument("--quick", action="store_true", help="a tiny random core and a few tasks: checks that it runs")
    args = parser.parse_args()
    plan = (Plan.quick_form(args.core, args.docs) if args.quick else
            Plan(seeds=args.seeds, tasks=args.tasks, samples=args.samples, epochs=args.epochs, core=args.core, docs=args.docs))
    result = run(plan)
    print(markdown(result, command(plan)).rsplit("Targets:", 1)[1].strip())


if __name__ == "__main__":
    main()
