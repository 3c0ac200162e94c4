"""Documents added to a worker (POST /v1/documents, `Hive.add_documents`), and learning them in the
background, behind the gate.

Adding checks every document before writing any (store.documents.check_added: a plain .md or .txt name,
not one of the job's own documents, a text the job's folder would take) and refuses a document that
holds one of the job's held-out questions: the gate's contamination check reads what a version was
trained on, and context distillation trains on questions about a document, never on its text, so a
held-out question pasted into a document would reach the worker unseen.

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
from dataclasses import dataclass, replace

from apiary.evals.contamination import find
from apiary.evals.gate import GateConfig
from apiary.hive.evaluator import Evaluator
from apiary.hive.learning import learn_worker
from apiary.hive.training import Budget
from apiary.hive.worker import WorkerHandle
from apiary.jobs.base import Job
from apiary.jobs.documents import documents_of, training_only_on
from apiary.models.core import MODEL_LOADS
from apiary.store.documents import BadDocument, add_documents, check_added, mark_learned, unlearned
from apiary.store.records import Worker
from apiary.store.store import Store

log = logging.getLogger("apiary.serve")


@dataclass(frozen=True)
class Added:
    """A document stored for a worker: its name, its characters, and whether it replaced one of that name."""

    name: str
    characters: int
    replaced: bool


def add(store: Store, worker: str, job: Job, documents: list[tuple[object, object]]) -> list[Added]:
    """Store the (name, text) `documents` for `worker`, whose job is the documents job `job` (read with the
    documents added to it so far), all or none: BadDocument naming the first refused one (documents[N]),
    nothing written. From then on they are part of the worker's job, and unlearned."""
    source = documents_of(job, "adding documents")
    checked = []
    for n, (name, text) in enumerate(documents):
        try:
            checked.append(check_added(name, text, source))
        except BadDocument as err:
            raise BadDocument(f"documents[{n}]: {err}") from None
    if len({d.name for d in checked}) < len(checked):
        raise BadDocument("the documents name one document twice")
    for hit in find([d.text for d in checked], [t.question for t in source.heldout()]):
        raise BadDocument(f"documents[{hit.train_index}]: document {checked[hit.train_index].name!r} holds one of the "
                          "worker's held-out questions, the exam its gate sets; a document may not")
    replaced = add_documents(store.root, worker, checked, store.shared)
    return [Added(d.name, len(d.text), r) for d, r in zip(checked, replaced)]


def ready_documents(store: Store) -> list[Worker]:
    """Workers with added documents no learning run has learned as they are now."""
    return [w for w in store.workers() if unlearned(store.root, w.name, store.shared)]


def learn_documents(store: Store, evaluator: Evaluator, worker: WorkerHandle, documents: dict[str, str], steps: int,
                    gate: GateConfig) -> dict:
    """`steps` steps of context distillation on the added `documents` (name -> sha256, as `unlearned` read them
    before the worker's job was built) from the live version, the gate on the version made, and the documents
    marked learned by it. The worker's core and the base core are loaded already (see learn_and_gate)."""
    focused = replace(worker, job=training_only_on(worker.job, documents))
    with MODEL_LOADS.compute():
        result = learn_worker(store, evaluator, focused, Budget(steps=steps), learners=["context_distill"], gate=gate,
                              show_progress=False)
    mark_learned(store.root, worker.name, documents, result.adapter_version, store.shared)
    decision = result.gate
    if decision is not None:
        log.info("worker %s learned %d added document(s) in %d step(s): v%d %s (held-out %.3f vs live %.3f)%s",
                 worker.name, len(documents), result.steps, result.adapter_version,
                 "released" if decision.passed else "refused", decision.candidate, decision.released,
                 "" if decision.passed else f": {'; '.join(decision.reasons)}")
    return {"learn": result.model_dump(exclude={"gate"}), "gate": decision.model_dump() if decision else None,
            "documents": sorted(documents)}
