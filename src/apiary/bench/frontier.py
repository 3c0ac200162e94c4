"""The learning/forgetting frontier: every RL setting on the same job and budget, what it gains and what it flips.

Each method is one RL setting (learning rate, LoRA rank, KL to the core, anchor distillation). Each
(job, method, seed) is a fresh worker on the bundled core that learns the same number of steps (or, with
`--minutes M`, as many as fit in M minutes, as `apiary learn --minutes M` does: such a point is named
"METHOD (M min)"), then
goes through the default worker gate without being released (`Release.NONE`): its held-out gain,
its right-to-wrong flips on the retention suite, its retention KL, the noise floor at that KL and
the gate's decision are what one point of the frontier is.

    python -m apiary.bench.frontier [--jobs chain_sum products guess] [--methods default lr2e-4 kl0.05]
                                    [--seeds 0 1] [--steps 20 | --minutes 5]

Writes docs/frontier.json (merged by (job, method, seed), so runs can add points), docs/frontier.png
and the frontier section of docs/benchmarks.md.
"""

from __future__ import annotations

import argparse
import json
import tempfile
import time
from dataclasses import asdict, dataclass, replace
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402

from apiary.bench.report import DOCS, machine, write_section  # noqa: E402
from apiary.evals import noise_floor, retention  # noqa: E402
from apiary.evals.gate import GateConfig  # noqa: E402
from apiary.hive.hive import Hive  # noqa: E402
from apiary.hive.recipes import ARITH, DEMO, GCD, TIMES, WorkerPlan  # noqa: E402
from apiary.learners.anchor import ANCHOR_KINDS  # noqa: E402
from apiary.learners.common import LearnerConfig  # noqa: E402
from apiary.learners.distil_back import DistilBackConfig  # noqa: E402
from apiary.learners.grpo import MULTI_TURN  # noqa: E402
from apiary.models.adapters import LoraSpec  # noqa: E402

# guess: a multi-turn TextArena game (needs the "games" extra), 40 held-out games; its score is the mean episode score
JOBS = {"chain_sum": ARITH, "products": TIMES, "gcd": GCD,
        "guess": WorkerPlan("guess", "ta:GuessTheNumber-v0", ["heldout_size=40"])}
# rl's settings that a job changes from the demo's: a game learns from whole episodes, as in the long-horizon bench
# (4 games x 8 episodes a step, temperature 0.7, the job's own reply length)
JOB_RL = {"guess": {**MULTI_TURN, "max_new_tokens": None}}


@dataclass(frozen=True)
class Method:
    """One RL setting: the demo's GRPO settings with these changed, on a LoRA of this rank."""

    name: str
    learning_rate: float = 1e-3
    rank: int = 16
    kl_coef: float = 0.0
    anchor_weight: float = 0.0
    anchor_kinds: tuple[str, ...] = ("request",)  # the first anchor set; "+short" methods add the short questions
    distil_back: bool = False  # learn, then distil back: a phase toward the core after every 5 steps (learners.distil_back)
    sampler: str = "float32"  # "int8": rollouts from int8 core weights (models.quantized); "bf16" (models.bf16)
    is_cap: float = 2.0  # int8/bf16 sampler: the truncated importance weight's cap; 0 = no correction
    update_precision: str = "float32"  # "bf16": rl's update under bfloat16 autocast (models.bf16)
    phase_at_once: bool = False  # distil_back samples a phase's replies in one batch (DistilBackConfig.sample_at_once)
    distil_back_lr: float | None = None  # distil_back's learning rate; None: rl's

    def configs(self, job: str = "chain_sum") -> dict[str, LearnerConfig]:
        """Settings by learner on `job`: rl's, and distil_back's (at rl's learning rate unless the method names one)
        when the method cycles."""
        rl = replace(DEMO.rl, learning_rate=self.learning_rate, kl_coef=self.kl_coef, anchor_weight=self.anchor_weight,
                     anchor_kinds=self.anchor_kinds, sampler=self.sampler, is_cap=self.is_cap,
                     update_precision=self.update_precision, **JOB_RL.get(job, {}))
        return {"rl": rl} | ({"distil_back": DistilBackConfig(learning_rate=self.distil_back_lr or self.learning_rate,
                                                           sample_at_once=self.phase_at_once)}
                        if self.distil_back else {})


METHODS = {m.name: m for m in [
    Method("default"),  # the settings before the anchor: rank 16, lr 1e-3, no KL, no anchor
    Method("lr2e-4", learning_rate=2e-4),
    Method("lr5e-4", learning_rate=5e-4),
    Method("rank1", rank=1),  # "LoRA Without Regret": rank 1 is enough for RL
    Method("rank4", rank=4),
    Method("kl0.05", kl_coef=0.05),
    Method("kl0.2", kl_coef=0.2),
    Method("anchor1", anchor_weight=1.0),
    Method("anchor4", anchor_weight=4.0),
    Method("lr5e-4+anchor1", learning_rate=5e-4, anchor_weight=1.0),
    Method("lr2e-4+anchor1", learning_rate=2e-4, anchor_weight=1.0),
    Method("rank4+anchor4", rank=4, anchor_weight=4.0),
    Method("anchor1+short", anchor_weight=1.0, anchor_kinds=ANCHOR_KINDS),
    Method("lr2e-4+anchor1+short", learning_rate=2e-4, anchor_weight=1.0, anchor_kinds=ANCHOR_KINDS),
    # the same anchor samples as lr2e-4+anchor1 (8 per step), in phases: 5 updates of 8 after every 5 steps
    Method("lr2e-4+distil_back", learning_rate=2e-4, distil_back=True),
    Method("lr5e-4+distil_back", learning_rate=5e-4, distil_back=True),  # for jobs lr 2e-4 learns slowly (gcd)
    Method("lr1e-3+distil_back", learning_rate=1e-3, distil_back=True),
    # the defaults since 2026-12-03 (`apiary learn`, the demo): rl at 5e-4, distil_back's phases at 2e-4
    Method("lr5e-4+distil_back2e-4", learning_rate=5e-4, distil_back=True, distil_back_lr=2e-4),
    # rollouts from int8 weights, with and without the truncated importance-sampling correction (issue 17)
    Method("lr2e-4+int8", learning_rate=2e-4, sampler="int8"),
    Method("lr2e-4+int8+noIS", learning_rate=2e-4, sampler="int8", is_cap=0.0),
    # rl in bfloat16 where the hardware has it (models.bf16): rollouts from bf16 copies, the update under autocast
    Method("lr2e-4+distil_back+bf16", learning_rate=2e-4, distil_back=True, sampler="bf16", update_precision="bf16"),
    Method("lr5e-4+distil_back+bf16", learning_rate=5e-4, distil_back=True, sampler="bf16", update_precision="bf16"),
    # and distil_back's phases sampling all their replies at once
    Method("lr2e-4+distil_back+bf16+once", learning_rate=2e-4, distil_back=True, sampler="bf16", update_precision="bf16",
           phase_at_once=True),
]}


def run_point(hive: Hive, job: str, method: Method, seed: int, steps: int | None, minutes: float | None = None) -> dict:
    """One worker learns `steps` steps (or for `minutes`) with `method`, then the default gate decides (nothing released)."""
    plan = JOBS[job]
    started = time.perf_counter()
    configs = method.configs(job)
    name = method.name + (f" ({minutes:g} min)" if minutes else "")
    result = hive.learn(plan.spec, f"{job}-{method.name.replace('+', '_')}-s{seed}" + (f"-{minutes:g}min" if minutes else ""),
                        steps=None if minutes else steps, minutes=minutes, learners=list(configs),
                        configs=configs,
                        lora=LoraSpec(rank=method.rank, alpha=2 * method.rank), overrides=plan.overrides,
                        release="none", seed=seed, show_progress=False)
    gate = result.gate
    floor = noise_floor.expected_flips(gate.retention_kl, retention.items()) if gate else None
    point = {"job": job, "method": name, "seed": seed, "steps": result.steps, "settings": asdict(method),
             "before": result.before, "after": result.after, "gain": result.after - result.before,
             "learn_seconds": result.learn_seconds, "wall_seconds": time.perf_counter() - started,
             "retention_kl": gate.retention_kl if gate else None, "flips": gate.flips if gate else None,
             "floor": floor, "allowed": (floor or 0.0) + GateConfig().max_flip_rate * gate.flips["items"] if gate else None,
             "passed": gate.passed if gate else False, "reasons": gate.reasons if gate else ["nothing learned"]}
    flips = point["flips"] or {}
    print(f"{job} {name} seed {seed}: {result.before:.2f} -> {result.after:.2f} in {result.steps} steps "
          f"({result.learn_seconds:.0f} s); KL {point['retention_kl'] or 0:.4f}, {flips.get('right_to_wrong')} of "
          f"{flips.get('items')} flipped (floor {point['floor'] or 0:.1f}); gate {'passed' if point['passed'] else 'refused'}",
          flush=True)
    return point


def plot(points: list[dict], path: Path) -> None:
    jobs = sorted({p["job"] for p in points})
    fig, axes = plt.subplots(1, len(jobs), figsize=(6 * len(jobs), 4.5), squeeze=False)
    for ax, job in zip(axes[0], jobs):
        mine = [p for p in points if p["job"] == job and p["flips"]]
        for i, name in enumerate(dict.fromkeys(p["method"] for p in mine)):
            at = [p for p in mine if p["method"] == name]
            ax.scatter([100 * p["flips"]["right_to_wrong"] / p["flips"]["items"] for p in at], [p["gain"] for p in at],
                       label=name, color=f"C{i % 10}", marker="o" if all(p["passed"] for p in at) else "x")
        ax.axhline(0.30, color="grey", linestyle=":", linewidth=1)
        ax.set(title=f"{job}: gain against forgetting (o: gate passed, x: refused)",
               xlabel="retention items flipped right to wrong (%)", ylabel="held-out gain")
        ax.legend(fontsize=7)
    fig.tight_layout()
    fig.savefig(path, dpi=120)


def markdown(points: list[dict], command: str) -> str:
    lines = ["## The learning/forgetting frontier", "",
             f"Each row is one worker on the bundled core ({machine()}), learning the same number of RL steps "
             "(demo settings otherwise: 16 prompts x 8 samples, 16 tokens; guess, a multi-turn game: 4 games x 8 whole "
             "episodes at temperature 0.7, scored by the mean held-out episode score of 40 games), then judged by the default worker gate "
             "(not released). Flips: right-to-wrong on the retention suite; floor: the flips a random change of the "
             "same retention KL gives (evals/noise_floor.py); allowed = floor + 2% of the items.", "",
             "| job | method | seed | steps | learn s | before | after | gain | retention KL | flipped (of items) | floor | allowed | gate |",
             "|" + " --- |" * 13]
    for p in sorted(points, key=lambda p: (p["job"], p["method"], p["seed"])):
        f = p["flips"] or {}
        lines.append(f"| {p['job']} | {p['method']} | {p['seed']} | {p['steps']} | {p['learn_seconds']:.0f} | {p['before']:.2f} | "
                     f"{p['after']:.2f} | {p['gain']:+.2f} | {p['retention_kl'] or 0:.4f} | {f.get('right_to_wrong', '-')} "
                     f"({f.get('items', '-')}) | {p['floor'] or 0:.1f} | {p['allowed'] or 0:.1f} | "
                     f"{'passed' if p['passed'] else 'refused'} |")
    commands = list(dict.fromkeys(p["command"] for p in points if p.get("command"))) or [command]
    unrecorded = " (and earlier runs, whose rows did not record their command)" if any("command" not in p for p in points) else ""
    return "\n".join(lines + ["", "![gain against flips](frontier.png)", "", f"Commands that measured these rows{unrecorded}:", ""]
                     + [f"- `{c}`" for c in commands])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--jobs", nargs="+", default=["chain_sum"], choices=sorted(JOBS))
    parser.add_argument("--methods", nargs="+", default=["default", "lr2e-4", "kl0.05", "anchor1"], choices=sorted(METHODS))
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1])
    budget = parser.add_mutually_exclusive_group()
    budget.add_argument("--steps", type=int, default=20)
    budget.add_argument("--minutes", type=float, default=None, help="a minutes budget instead of --steps (points named 'METHOD (M min)')")
    parser.add_argument("--hive", type=Path, default=None, help="hive directory (default: a temporary one)")
    args = parser.parse_args()
    command = "python -m apiary.bench.frontier " + " ".join(
        f"--{k} {' '.join(map(str, v)) if isinstance(v, list) else v}" for k, v in vars(args).items()
        if v is not None and k != "hive" and not (k == "steps" and args.minutes))
    path = DOCS / "frontier.json"
    saved = {(p["job"], p["method"], p["seed"]): p for p in (json.loads(path.read_text()) if path.exists() else [])}
    with tempfile.TemporaryDirectory() as tmp:
        hive = Hive(args.hive or Path(tmp) / "hive")
        for job in args.jobs:
            for name in args.methods:
                for seed in args.seeds:
                    point = run_point(hive, job, METHODS[name], seed, args.steps, args.minutes)
                    saved[(job, point["method"], seed)] = point | {"command": command}
                    path.write_text(json.dumps(list(saved.values()), indent=1) + "\n")
    points = list(saved.values())
    plot(points, DOCS / "frontier.png")
    write_section("The learning/forgetting frontier", markdown(points, command))


if __name__ == "__main__":
    main()
