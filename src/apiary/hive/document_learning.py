"""Learning the documents added to a worker (POST /v1/documents), in the background, behind the gate.

A worker with added documents it has not learned yet (store.documents: new ones, or replaced ones) is
ready. Its learning run is context distillation (learners.context_distill) for a few steps on plain
requests about those documents alone (the job's training stream narrowed to them: the folder's own
documents were learned before), from its live version, and the new version goes through the worker gate
like every other (hive/learning.py): it is released only if it held its held-out score and kept what the
core could do. Either way the documents are then marked learned by that version, so a refused run is not
repeated forever on the same text; sending a document again (or a new one) starts another run.
"""

from __future__ import annotations

import logging
from dataclasses import replace

from apiary.evals.gate import GateConfig
from apiary.hive.evaluator import Evaluator
from apiary.hive.learning import learn_worker
from apiary.hive.training import Budget
from apiary.hive.worker import WorkerHandle
from apiary.jobs.documents import training_only_on
from apiary.models.core import MODEL_LOADS
from apiary.store.documents import mark_learned, unlearned
from apiary.store.records import Worker
from apiary.store.store import Store

log = logging.getLogger("apiary.serve")


def ready_documents(store: Store) -> list[Worker]:
    """Workers with added documents no learning run has learned as they are now."""
    return [w for w in store.workers() if unlearned(store.root, w.name)]


def learn_documents(store: Store, evaluator: Evaluator, worker: WorkerHandle, documents: dict[str, str], steps: int,
                    gate: GateConfig) -> dict:
    """`steps` steps of context distillation on the added `documents` (name -> sha256, as `unlearned` read them
    before the worker's job was built) from the live version, the gate on the version made, and the documents
    marked learned by it. The worker's core and the base core are loaded already (see learn_and_gate)."""
    focused = replace(worker, job=training_only_on(worker.job, documents))
    with MODEL_LOADS.compute():
        result = learn_worker(store, evaluator, focused, Budget(steps=steps), learners=["context_distill"], gate=gate,
                              show_progress=False)
    mark_learned(store.root, worker.name, documents, result.adapter_version)
    decision = result.gate
    if decision is not None:
        log.info("worker %s learned %d added document(s) in %d step(s): v%d %s (held-out %.3f vs live %.3f)%s",
                 worker.name, len(documents), result.steps, result.adapter_version,
                 "released" if decision.passed else "refused", decision.candidate, decision.released,
                 "" if decision.passed else f": {'; '.join(decision.reasons)}")
    return {"learn": result.model_dump(exclude={"gate"}), "gate": decision.model_dump() if decision else None,
            "documents": sorted(documents)}
