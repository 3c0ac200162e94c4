"""Documents into weights, checked closed-book, on the shipped workplace (examples/workplace).

    python -m apiary.bench.documents [--minutes 10] [--sizes 10 50] [--learners ...] [--quick] [--core DIR]

On the bundled core: held-out accuracy closed-book (the question alone) before learning, and open-book (the
document above the question: what the core can do when it may read); then one fresh worker per learner (recall,
context_distill, self_study, and doc_pretrain, the naive baseline) learns all the documents for `--minutes`, and is
scored closed-book and judged by the default worker gate (nothing is released): its right-to-wrong flips
on the retention suite against the gate's allowance. Last, the first of `--learners` learns only N of the
documents (`--sizes`; all of them is the run above) for the same time: how recall falls as the workplace grows.
Writes docs/documents.json and the "Documents: ..." section of docs/benchmarks.md. `--quick` (a check
of the code path, not a figure): 4 documents, one step per worker, sizes 2 and 4; the section is printed (and
written only under --docs, if given).
"""

from __future__ import annotations

import argparse
import json
import re
import tempfile
import time
from dataclasses import dataclass, replace
from pathlib import Path

from apiary.bench.report import DOCS, machine, write_section
from apiary.evals import noise_floor, retention
from apiary.evals.gate import GateConfig
from apiary.hive.hive import Hive
from apiary.hive import mix
from apiary.jobs.documents import open_book_job

WORKPLACE = Path(__file__).resolve().parents[3] / "examples" / "workplace"
TITLE = "Documents: a workplace learned, checked closed-book"
LEARNERS = ("recall", "context_distill", "self_study", "doc_pretrain")  # the first also learns the --sizes


@dataclass
class DocumentsPlan:
    folder: Path = WORKPLACE
    minutes: float = 10.0
    sizes: tuple[int, ...] = (10, 50)  # documents learned, besides all of them
    learners: tuple[str, ...] = LEARNERS
    core: str | None = None
    docs: Path = DOCS  # where documents.json and benchmarks.md go
    quick: bool = False
    hive: Path | None = None
    documents: int | None = None  # learn only the first N documents (their own section and json); None: all
    seed: int = 0  # the workers' learning seed (a seed other than 0: its own section and json)

    @property
    def title(self) -> str:
        title = TITLE if self.documents is None else TITLE.replace("a workplace", f"{self.documents} documents of a workplace")
        return title + (f", seed {self.seed}" if self.seed else "")

    @property
    def json_name(self) -> str:
        return ("documents" + ("" if self.documents is None else f"-{self.documents}")
                + (f"-seed{self.seed}" if self.seed else "") + ".json")


def reference(hive: Hive, spec: str, overrides: list[str]) -> dict:
    """The core's held-out accuracy on `spec` closed-book and open-book, and how many documents and questions."""
    job = hive.job(spec, overrides)
    closed, opened = hive.evaluator.core(job, 0), hive.evaluator.core(open_book_job(job), 0)
    return {"documents": len(job.source.all_documents()), "questions": closed.n, "closed_before": closed.score,
            "open_book": opened.score}


def learner_configs(learner: str) -> tuple[list[str], dict]:
    """The learners of a spec like "recall@2e-4,anchor_weight=1+distil_back" and the settings given after an "@"
    (a bare number is the learning rate; numbers only)."""
    parts = [part.partition("@") for part in learner.split("+")]
    names = mix.check_learners([name for name, _, _ in parts])
    configs = {}
    for name, _, given in parts:
        if given:
            pairs = [item.partition("=") for item in given.split(",")]
            settings = {key if sep else "learning_rate": float(value if sep else key) for key, sep, value in pairs}
            configs[name] = replace(mix.LEARNERS[name][1](), **settings)
    return names, configs


def learn_point(hive: Hive, spec: str, overrides: list[str], learner: str, worker: str, budget: dict, seed: int = 0) -> dict:
    """A fresh worker learns `spec` with `learner` (learners joined by "+", each with its settings after an
    "@" if not its defaults: learner_configs) within `budget`; its closed-book accuracy and the
    gate's judgement."""
    started = time.perf_counter()
    names, configs = learner_configs(learner)
    result = hive.learn(spec, worker, learners=names, configs=configs, overrides=overrides, release="none",
                        show_progress=False, seed=seed, **budget)
    gate = result.gate
    floor = noise_floor.expected_flips(gate.retention_kl, retention.items()) if gate else None
    point = {"learner": learner, "worker": worker, "steps": result.steps, "learn_seconds": result.learn_seconds,
             "wall_seconds": time.perf_counter() - started, "before": result.before, "after": result.after,
             "retention_kl": gate.retention_kl if gate else None, "flips": gate.flips if gate else None, "floor": floor,
             "allowed": floor + GateConfig().max_flip_rate * gate.flips["items"] if gate and gate.flips else None,
             "passed": bool(gate and gate.passed), "reasons": gate.reasons if gate else ["nothing learned"]}
    flips = point["flips"] or {}
    print(f"{worker} ({learner}): closed-book {result.before:.3f} -> {result.after:.3f} in {result.steps} steps "
          f"({result.learn_seconds:.0f} s); {flips.get('right_to_wrong')} of {flips.get('items')} retention items flipped; "
          f"gate {'passed' if point['passed'] else 'refused'}", flush=True)
    return point


def run(plan: DocumentsPlan) -> dict:
    """Every figure of the section; writes documents.json and the section under `plan.docs`."""
    spec = f"docs:{plan.folder}"
    overrides, sizes = (["documents=4"], (2, 4)) if plan.quick else ([], plan.sizes)
    if plan.documents is not None:
        overrides, sizes = [f"documents={plan.documents}"], tuple(n for n in sizes if n < plan.documents)
    budget = {"steps": 1} if plan.quick else {"minutes": plan.minutes}
    with tempfile.TemporaryDirectory() as tmp:
        hive = Hive(plan.hive or Path(tmp) / "hive", core=plan.core)
        figures = {"machine": machine(), "budget": budget, "all": reference(hive, spec, overrides), "learners": {},
                   "sizes": [], "sizes_learner": plan.learners[0]}
        for learner in plan.learners:
            worker = "docs-" + re.sub(r"[^\w-]", "-", learner)
            figures["learners"][learner] = learn_point(hive, spec, overrides, learner, worker, budget, plan.seed)
        total = figures["all"]["documents"]
        for n in sorted(set(sizes) | ({total} if sizes else set())):  # the curve ends at all of them
            first = plan.learners[0]
            if n >= total:
                point = figures["learners"][first]
            else:
                point = learn_point(hive, spec, [*overrides, f"documents={n}"], first, f"docs-n{n}", budget, plan.seed)
            figures["sizes"].append(reference(hive, spec, [*overrides, f"documents={min(n, total)}"]) | {"after": point["after"]})
    plan.docs.mkdir(parents=True, exist_ok=True)
    (plan.docs / plan.json_name).write_text(json.dumps(figures, indent=1) + "\n")
    write_section(plan.title, markdown(figures, command(plan), plan.title), plan.docs)
    return figures


def command(plan: DocumentsPlan) -> str:
    if plan.quick:
        return "python -m apiary.bench.documents --quick"
    return (f"python -m apiary.bench.documents --minutes {plan.minutes:g} --sizes{''.join(f' {n}' for n in plan.sizes)} "
            f"--learners {' '.join(plan.learners)}" + (f" --documents {plan.documents}" if plan.documents else "") + (f" --seed {plan.seed}" if plan.seed else ""))


def markdown(figures: dict, command: str, title: str = TITLE) -> str:
    ref, budget = figures["all"], figures["budget"]
    spent = f"{budget['minutes']:g} minutes" if "minutes" in budget else f"{budget['steps']} step(s)"
    lines = [f"## {title}", "",
             f"The shipped fictional workplace ({ref['documents']} documents, {ref['questions']} held-out questions worded "
             f"unlike the documents and the practice questions), on {figures['machine']}. Each learner: a fresh worker on "
             f"the bundled core, {spent} of learning, then the default worker gate (nothing released). Closed-book: the "
             "question alone; open-book: the document above it. Score: the answer within the reply's first line.", "",
             f"Core: closed-book {ref['closed_before']:.3f}, open-book {ref['open_book']:.3f}.", "",
             "| learner | steps | learn s | closed-book before | after | after / open-book | retention flipped (of items) "
             "| allowed | gate |", "|" + " --- |" * 9]
    for name, p in figures["learners"].items():
        f = p["flips"] or {}
        ratio = p["after"] / ref["open_book"] if ref["open_book"] else float("nan")
        lines.append(f"| {name} | {p['steps']} | {p['learn_seconds']:.0f} | {p['before']:.3f} | {p['after']:.3f} | "
                     f"{ratio:.2f} | {f.get('right_to_wrong', '-')} ({f.get('items', '-')}) | "
                     f"{'-' if p['allowed'] is None else format(p['allowed'], '.1f')} | "
                     f"{'passed' if p['passed'] else 'refused: ' + '; '.join(p['reasons'])} |")
    if figures["sizes"]:
        lines += ["", f"How recall falls as the workplace grows ({figures.get('sizes_learner', 'context_distill')}, the "
                  "same budget for each size):", "",
                  "| documents | questions | closed-book before | after | open-book |", "|" + " --- |" * 5]
    for s in figures["sizes"]:
        lines.append(f"| {s['documents']} | {s['questions']} | {s['closed_before']:.3f} | {s['after']:.3f} | {s['open_book']:.3f} |")
    return "\n".join(lines + ["", f"Command: `{command}`"])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--minutes", type=float, default=10.0, help="learning minutes per worker")
    parser.add_argument("--sizes", type=int, nargs="*", default=[10, 50], help="documents learned, besides all of them, by the first of --learners")
    parser.add_argument("--documents", type=int, default=None,
                        help="learn only the first N documents (a section and json of their own; sizes under N)")
    parser.add_argument("--learners", nargs="+", default=list(LEARNERS),
                        help=f"any of {', '.join(LEARNERS)}; several in one run joined by '+', settings after '@' (a bare "
                             "number: the learning rate), e.g. recall@2e-4,anchor_weight=1+distil_back")
    parser.add_argument("--seed", type=int, default=0, help="the workers' learning seed")
    parser.add_argument("--quick", action="store_true", help="a check of the code path: 4 documents, 1 step per worker")
    parser.add_argument("--core", default=None, help="a core directory (default: the bundled core)")
    parser.add_argument("--docs", type=Path, default=None,
                        help="where documents.json and benchmarks.md go (default: docs/; --quick: a temporary folder)")
    parser.add_argument("--hive", type=Path, default=None, help="hive directory (default: a temporary one)")
    args = parser.parse_args()
    for learner in args.learners:
        try:
            learner_configs(learner)
        except (ValueError, TypeError) as error:  # TypeError: a setting the learner does not have
            parser.error(str(error))
    with tempfile.TemporaryDirectory() as tmp:
        docs = args.docs or (Path(tmp) if args.quick else DOCS)
        run(DocumentsPlan(minutes=args.minutes, sizes=tuple(args.sizes), learners=tuple(args.learners), core=args.core,
                          docs=docs, quick=args.quick, hive=args.hive, documents=args.documents,
                          seed=args.seed))
        if args.quick:
            print((docs / "benchmarks.md").read_text())


if __name__ == "__main__":
    main()
