"""Learning from feedback as it arrives (a server runs this in the background): when to learn, whom to gate.

When a worker has `min_feedback` pieces of feedback no adapter version has learned from yet (not
counting those flagged as contradicting earlier feedback, nor those of givers flagged as unreliable:
evals.givers), or any at all once someone asked it to learn now (`FeedbackLearning.learn_now`, the
pages' button), a learning run uses them up with the
matching feedback learners, from its live version, on a copy of the core of its own (the server's
models are never touched), and the new adapter version goes through the worker gate, as every
`learn` does (hive/learning.py). The gate releases it only if it passed; the server's watcher then
makes it live. Every run, version and decision is in the store.

The same loop learns the documents a tenant added to a worker (POST /v1/documents): a worker with added
documents it has not learned yet gets a short run of context distillation on them, gated the same way
(hive.document_learning).

Several server replicas on one store each run this loop; a worker's learning run happens once, in the
replica that holds the worker's lease in the store (store.leases: `learn:WORKER`, renewed while it runs,
free again within `lease_seconds` of a replica dying).
"""

from __future__ import annotations

import logging
import threading
from dataclasses import dataclass, field, replace
from typing import Callable

from apiary.evals.gate import GateConfig
from apiary.evals.givers import flagged_givers, verifier
from apiary.hive.document_learning import learn_documents, ready_documents
from apiary.hive.evaluator import Evaluator
from apiary.hive.learning import learn_worker
from apiary.hive.mix import LEARNERS, with_distil_back
from apiary.hive.training import Budget
from apiary.hive.worker import WorkerHandle
from apiary.hive.worker_gate import WorkerGateResult
from apiary.learners.common import LearnerConfig
from apiary.models.core import MODEL_LOADS
from apiary.store import leases
from apiary.store.documents import unlearned
from apiary.store.records import Worker
from apiary.store.store import Store

log = logging.getLogger("apiary.serve")

LEARNER_OF = {"reward": "rewards", "correction": "corrections", "critique": "critiques", "preference": "preferences"}
# how corrections and critiques are learned (LearningConfig.text_learner): mode -> feedback kind -> learner;
# a kind a mode does not name goes to its own learner (LEARNER_OF)
TEXT_LEARNER_OF = {"mixed": {"correction": "self_distill"}, "separate": {},
                   "self_distill": {"correction": "self_distill", "critique": "self_distill"}}
TEXT_LEARNERS = tuple(TEXT_LEARNER_OF)


# The server's defaults (docs/benchmarks.md, "Keeping what is learned"), 64 served corrections, two seeds each:
# SFT at lr 1e-3 alone flipped 320 of 878 retention items; with distil_back's phases 99 / 76, both refused. SFT at
# lr 5e-4 (CorrectionsConfig's default) with the phases: 0.20 -> 0.51 / 0.43, 30 / 28 flipped, both released.
# Self-distillation from context at lr 2e-4 with the phases (the default since 2026-12-01, later): 0.20 -> 0.60 /
# 0.59, 17 / 11 flipped, both released. Critiques were not measured that way, so they keep their revision learner.


@dataclass
class LearningConfig:
    min_feedback: int = 8  # unlearned pieces of feedback that start a learning run for a worker
    poll_seconds: float = 5.0  # how often workers are checked even when no feedback arrives
    gate: GateConfig = field(default_factory=GateConfig)
    lease_seconds: float = 60.0  # how long a replica's claim on a worker's learning lasts unless renewed (every third)
    text_learner: str = "mixed"
    """"mixed": corrections by on-policy self-distillation from context (learners.self_distill), critiques by
    revision (learners.critiques); "separate": corrections by SFT (learners.corrections), critiques by revision;
    "self_distill": both by self-distillation from context."""
    document_steps: int = 4  # context distillation steps of a run on newly added documents (hive.document_learning)
    distil_back: bool = True
    """Learn, then distil back: the feedback learners' run also has phases of distillation toward the core
    (learners.distil_back), one after every 5 steps and one at its end."""
    learning_rates: dict[str, float] = field(default_factory=dict)
    """Learning rates of background runs by learner (`apiary serve --lr corrections=2e-4`); the others keep theirs."""

    def __post_init__(self):
        unknown = [name for name in self.learning_rates if name not in LEARNERS]
        if unknown:
            raise ValueError(f"a learning rate for unknown learner(s) {', '.join(unknown)}; choose from {', '.join(LEARNERS)}")
        bad = {n: r for n, r in self.learning_rates.items() if not (isinstance(r, (int, float)) and 0 < r < float("inf"))}
        if bad:
            raise ValueError(f"a learning rate is a number > 0, got {bad}")
        steps = self.document_steps
        if isinstance(steps, bool) or not isinstance(steps, int) or steps < 1:
            raise ValueError(f"a run on added documents takes a whole number of steps >= 1, got {steps!r}")
        if not (isinstance(self.lease_seconds, (int, float)) and 0 < self.lease_seconds < float("inf")):
            raise ValueError(f"the lease lasts a number of seconds > 0, got {self.lease_seconds!r}")
        if self.text_learner not in TEXT_LEARNERS:
            raise ValueError(f"text learner {self.text_learner!r} is not one of {', '.join(TEXT_LEARNERS)}")

    def configs_for(self, learners: list[str]) -> dict[str, LearnerConfig]:
        """The settings of a background run with these learners: the learning rates given, the defaults otherwise."""
        return {name: replace(LEARNERS[name][1](), learning_rate=rate)
                for name, rate in self.learning_rates.items() if name in learners}


def learner_of(kind: str, text_learner: str = "mixed") -> str:
    """The learner that learns from feedback of this kind."""
    return TEXT_LEARNER_OF[text_learner].get(kind, LEARNER_OF[kind])


def ready_workers(store: Store, min_feedback: int, text_learner: str = "mixed",
                  asked: frozenset[str] = frozenset()) -> list[tuple[Worker, list[str]]]:
    """Workers with enough unlearned, unflagged feedback from givers not flagged as unreliable, and the
    learners that feedback needs. For a worker someone asked to learn now (`asked`), any is enough."""
    ready = []
    for worker in store.workers():
        enough = 1 if worker.name in asked else min_feedback
        pending = [f for f in store.feedback(worker.name, unconsumed=True) if not f.conflict]
        if len(pending) >= enough:  # only then is it worth checking the givers
            held_back = {g.by for g in flagged_givers(store, worker.name, verifier(worker))}
            pending = [f for f in pending if f.by not in held_back]
        if len(pending) >= enough:
            ready.append((worker, sorted({learner_of(f.kind, text_learner) for f in pending})))
    return ready


class FeedbackLearning:
    """A thread that runs `learn_and_gate` for every worker that has enough new feedback. `make_hive`
    makes the Hive it learns in (on first use: a copy of the core of its own)."""

    def __init__(self, make_hive: Callable, config: LearningConfig, on_result: Callable[[dict], None]):
        self.make_hive, self.config, self.on_result = make_hive, config, on_result
        self._wake, self._stopping = threading.Event(), False
        self._thread = threading.Thread(target=self._loop, name="apiary-learning", daemon=True)
        self.busy = False
        self._asked: set[str] = set()  # workers to learn from any pending feedback, not waiting for min_feedback
        self._asked_lock = threading.Lock()
        self.holder = leases.holder_id()  # this process, as the holder of workers' learning leases

    def learn_now(self, worker: str) -> None:
        """Start learning from the worker's pending feedback (however little) on the next round."""
        with self._asked_lock:
            self._asked.add(worker)
        self._wake.set()

    def _take_asked(self) -> frozenset[str]:
        with self._asked_lock:
            asked, self._asked = frozenset(self._asked), set()
        return asked

    def start(self) -> None:
        self._thread.start()

    def wake(self) -> None:
        self._wake.set()

    def stop(self) -> None:
        self._stopping = True
        self._wake.set()
        self._thread.join()

    def _loop(self) -> None:
        hive, unusable = None, set()
        while not self._stopping:
            self._wake.wait(self.config.poll_seconds)
            self._wake.clear()
            if self._stopping:
                break
            try:
                hive = hive or self.make_hive()  # loaded on first use: its own copy of the core
                asked = self._take_asked()
                for record, _ in ready_workers(hive.store, self.config.min_feedback, self.config.text_learner, asked):
                    if record.name not in unusable:
                        self._learn(hive, record, asked, unusable)
                for record in ready_documents(hive.store):
                    if record.name not in unusable:
                        self._learn_documents(hive, record.name, unusable)
            except Exception:  # noqa: BLE001 - a failed run is logged; the server keeps serving
                log.exception("background learning failed")
            finally:
                self.busy = False

    def _learn(self, hive, record: Worker, asked: frozenset[str], unusable: set[str]) -> None:
        """One learning run on the worker's feedback, if this process gets its lease (another replica may hold it)."""
        with self._lease(hive, record.name) as mine:
            if not mine:  # another replica learns it now; a request to learn now is kept for the next round
                if record.name in asked:
                    with self._asked_lock:
                        self._asked.add(record.name)
                return
            still = dict((r.name, ls) for r, ls in ready_workers(hive.store, self.config.min_feedback,
                                                                    self.config.text_learner, asked))
            if record.name not in still:  # another replica learnt that feedback before this one took the lease
                return
            learners = with_distil_back(still[record.name]) if self.config.distil_back else still[record.name]
            self._run(hive, record.name, unusable, lambda worker: learn_and_gate(
                hive.store, hive.evaluator, worker, learners, self.config.gate, self.config.configs_for(learners)))

    def _learn_documents(self, hive, name: str, unusable: set[str]) -> None:
        """One learning run on the documents added to the worker, under its lease, if any are still unlearned
        (another replica may have learned them before this one took the lease)."""
        with self._lease(hive, name) as mine:
            documents = unlearned(hive.store.root, name, hive.store.shared) if mine else {}
            if documents:
                self._run(hive, name, unusable, lambda worker: learn_documents(
                    hive.store, hive.evaluator, worker, documents, self.config.document_steps, self.config.gate))

    def _lease(self, hive, name: str):
        return leases.held(hive.store.engine, f"learn:{name}", self.holder, self.config.lease_seconds)

    def _run(self, hive, name: str, unusable: set[str], learn: Callable[[WorkerHandle], dict]) -> None:
        """`learn` on the worker, read now (under its lease: its newest versions), its job and cores loaded first."""
        self.busy = True
        try:
            worker = hive.worker(name)  # its job and core, loaded now (see models.core.LoadGate)
            hive.core_at(0)  # the base core, retention's reference: loaded now too
            self.on_result(learn(worker))
        except ValueError as err:  # e.g. a worker whose job was defined in Python
            unusable.add(name)
            log.warning("worker %s cannot learn while serving: %s", name, err)


def learn_and_gate(store: Store, evaluator: Evaluator, worker: WorkerHandle, learners: list[str],
                   gate: GateConfig, configs: dict[str, LearnerConfig] | None = None) -> dict:
    """One learning run on the worker's unlearned feedback from its live version, with the gate on the
    version it made (hive.learning.learn_worker: released only if it passed). The worker's core and the
    base core (`evaluator.cores.at(0)`, retention's reference) are loaded already, so no model is loaded
    while computing."""
    with MODEL_LOADS.compute():
        result = learn_worker(store, evaluator, worker, Budget(), learners=learners, configs=configs, gate=gate,
                              show_progress=False)
    decision: WorkerGateResult | None = result.gate
    if decision is None:
        return {"learn": result.model_dump(exclude={"gate"}), "gate": None}  # nothing new was learned
    log.info("worker %s learned from %d feedback item(s) in %d step(s): v%d %s (held-out %.3f vs live %.3f)%s",
             worker.name, result.feedback, result.steps, result.adapter_version, "released" if decision.passed else "refused",
             decision.candidate, decision.released, "" if decision.passed else f": {'; '.join(decision.reasons)}")
    return {"learn": result.model_dump(exclude={"gate"}), "gate": decision.model_dump()}
