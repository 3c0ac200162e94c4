"""Documents added to a worker through the server (POST /v1/documents), kept in the hive, and which of
them the worker has learned.

A worker's added documents are files in `HIVE/documents/WORKER/` (one per document, named as sent), each
written atomically; its documents job reads that folder beside its own (jobs.documents, `added`), so
from the moment one is written it is part of the worker's job. A document sent again under the same name
replaces the earlier one (and counts as new until learned again).

On a hive that shares its artifacts (`--artifacts`, store.remote) each added document is also published as
an artifact of its own (`documents/WORKER/NAME`: two replicas adding at once lose nothing), and the learned
record as `documents/WORKER/.learned`; `pull` brings what other nodes published into this node's folder
before the folder is read (the worker's job, what is unlearned), so a document added through one replica
is learned by whichever replica holds the worker's lease.

What the worker has learned is `.learned.json` in the same folder (hidden: never read as a document):
each learned document's name, the sha256 of the text that was learned, and the adapter version the
learning run made. A document is unlearned while its text's hash is not the one recorded: a new
document, or a replaced one. Hashes, not times: a copy or a restore of the hive keeps file contents
but not always their times, and two replicas' clocks may differ.
"""

from __future__ import annotations

import hashlib
import json
import logging
from pathlib import Path
from typing import TYPE_CHECKING

from apiary.jobs.documents import Document, DocumentSource, document_text
from apiary.jobs.jsonl import JobFileError
from apiary.store.artifacts import atomic_write_bytes, atomic_write_json, read_json
from apiary.store.names import NAME_RULE, BadName, check_name, inside

if TYPE_CHECKING:
    from apiary.store.remote import SharedArtifacts

FOLDER = "documents"
LEARNED = ".learned.json"
log = logging.getLogger("apiary.store")
SHARED_LEARNED = ".learned"  # the learned record's key beside the documents' (no document's name starts with ".")
SUFFIXES = (".md", ".txt")  # what may be added through the API: plain text (a chat channel's JSONL is for folders)


class BadDocument(ValueError):
    """A document the server refuses to add; the message says which one and why."""


def added_dir(root: Path, worker: str) -> Path:
    """The folder of the documents added to `worker` in the hive at `root` (it may not exist yet)."""
    return inside(root, root / FOLDER / worker)  # the worker's name passed the name rule when it was made


def check_added(name: object, text: object, source: DocumentSource) -> Document:
    """The document `name` with `text` if the worker whose job reads `source` may take it: a plain file
    name (the name rule of workers, no folders) ending .md or .txt, not the name of one of the job's own
    documents, and a text that is one (jobs.documents.document_text: not empty, at most the job's
    max_chars). BadDocument saying why, otherwise."""
    try:
        check_name(name, "document")
    except BadName as err:
        raise BadDocument(str(err)) from None
    if not name.endswith(SUFFIXES):
        raise BadDocument(f"document {name!r}: documents added through the API are {' or '.join(SUFFIXES)} files")
    if name in source.own_names():
        raise BadDocument(f"document {name!r} is one of the job's own documents (in {source.path}); "
                          "an added document may not stand in for it: pick another name")
    if not isinstance(text, str):
        raise BadDocument(f"document {name!r}: 'text' must be a string")
    try:
        return Document(name, document_text(f"document {name!r}", text, source.max_chars))
    except JobFileError as err:
        raise BadDocument(str(err)) from None


def pull(root: Path, worker: str, shared: SharedArtifacts | None = None) -> Path:
    """The worker's added-documents folder, first brought up to date from the artifact URL (if the hive shares
    its artifacts): documents other nodes added or replaced, and their learned record. One not published
    whole is left as it is here (logged if a download did not match its manifest)."""
    folder = added_dir(root, worker)
    if shared is None:
        return folder
    from apiary.store.remote import ArtifactUntrusted  # fsspec only for a hive that shares its artifacts

    for name in shared.children(f"{FOLDER}/{worker}"):
        if name == SHARED_LEARNED or NAME_RULE.fullmatch(name):  # anything else there is not apiary's
            try:
                shared.refresh_file(f"{FOLDER}/{worker}/{name}",
                                    inside(folder, folder / (LEARNED if name == SHARED_LEARNED else name)))
            except ArtifactUntrusted as err:
                log.warning("document %s of worker %s is not taken from the artifact URL: %s", name, worker, err)
    return folder


def add_documents(root: Path, worker: str, documents: list[Document], shared: SharedArtifacts | None = None) -> list[bool]:
    """Write the documents into the worker's folder, each atomically (on a hive that shares its artifacts each
    is published first, store.remote.publish_file); returns, for each, whether it replaced an earlier document of that name."""
    folder = added_dir(root, worker)
    replaced = []
    for doc in documents:
        path = inside(folder, folder / check_name(doc.name, "document"))
        replaced.append(path.is_file())
        if shared is not None:
            shared.publish_file(doc.text.encode("utf-8"), f"{FOLDER}/{worker}/{doc.name}", path)
        atomic_write_bytes(path, doc.text.encode("utf-8"))
    return replaced


def unlearned(root: Path, worker: str, shared: SharedArtifacts | None = None) -> dict[str, str]:
    """The worker's added documents that no learning run has learned as they are now: name -> sha256 of the
    file. Empty for a worker without added documents."""
    folder = pull(root, worker, shared)
    if not folder.is_dir():
        return {}
    learned = _learned(folder)
    now = {p.name: hashlib.sha256(p.read_bytes()).hexdigest() for p in sorted(folder.iterdir())
           if p.is_file() and not p.name.startswith(".")}
    return {name: digest for name, digest in now.items() if learned.get(name, {}).get("sha256") != digest}


def mark_learned(root: Path, worker: str, documents: dict[str, str], version: int,
                 shared: SharedArtifacts | None = None) -> None:
    """Record that adapter `version` learned the documents (name -> sha256 of the text it learned), and publish
    the record (on a hive that shares its artifacts; the worker's lease holder alone writes it)."""
    folder = pull(root, worker, shared)
    learned = _learned(folder) | {name: {"sha256": digest, "version": version} for name, digest in documents.items()}
    if shared is not None:
        shared.publish_file(json.dumps(learned, indent=2).encode(), f"{FOLDER}/{worker}/{SHARED_LEARNED}", folder / LEARNED)
    atomic_write_json(folder / LEARNED, learned)


def _learned(folder: Path) -> dict[str, dict]:
    path = folder / LEARNED
    return read_json(path) if path.is_file() else {}
