"""A workplace's documents as a job: learn them, then answer questions about them closed-book.

`docs:PATH` reads every `.txt`, `.md` and `.jsonl` file under PATH (hidden files left out) as one
document; a `.jsonl` document is a list of messages (an exported chat channel: one object a line
with "content" or "text", and perhaps "author", "name" or "role"), rendered as "author: text" lines.
Two top-level names are reserved and never read as documents: `questions.jsonl`, the held-out
questions ({"question", "answer", "doc"} a line, `doc` the document's path relative to PATH), and
`practice.jsonl`, optional training questions in the same form. `questions=FILE` names another
held-out file. The held-out questions are never trained on: the training stream is the practice
questions (those worded exactly like a held-out question left out), or, without a practice file,
plain requests about each document ("What does notes.md say?").

Held-out prompts are closed-book: the question alone. `open_book(task)` is the same question with
its document above it: what the worker can answer when it may read the document, the teacher's
context in context distillation (learners.context_distill) and the benchmark's upper reference.
Scored by `line_contains`: the answer, normalised, within the reply's first line.

Bad input is refused before anything is written: an empty folder, a binary or unsupported file, a
document longer than `max_chars`, a malformed questions file or one naming a missing document (the
error names the file and line).

A worker may also read documents added to it alone (`added`: a folder in the hive, written by the server's
POST /v1/documents through store.documents): they are documents of its job like the folder's, asked about
by plain requests in its training stream, and never held-out questions (nobody wrote any about them).
"""

from __future__ import annotations

import copy
import hashlib
import json
from collections.abc import Collection
from dataclasses import dataclass, field, replace
from pathlib import Path

from apiary.jobs.base import Job, Task
from apiary.jobs.jsonl import JobFileError
from apiary.jobs.scoring import scorer

SUFFIXES = (".txt", ".md", ".jsonl")
QUESTIONS, PRACTICE = "questions.jsonl", "practice.jsonl"
MAX_CHARS = 4000  # ~1,000 tokens: a document and a question fit the core's context with room to spare, and a CPU reads it quickly
INSTRUCTION = "Answer in a few words, on one line."
OPTIONS = {"questions", "max_chars", "documents"}
GENERIC = ("What does {name} say?", "What should a new colleague know from {name}?")


@dataclass(frozen=True)
class Document:
    name: str  # its path relative to the folder, with "/" separators
    text: str


@dataclass
class DocumentSource:
    """The documents of a folder, its held-out questions and its training questions.
    `documents`: learn only N of the documents (the first N in a stable hashed order: a mix of every kind),
    and ask only about those. `added`: a folder of documents added to one worker (none if it does not exist),
    learned beside the folder's, with plain requests about each as its training questions."""

    path: Path
    questions: Path | None = None
    max_chars: int = MAX_CHARS
    documents: int | None = None
    added: Path | None = None
    _docs: dict[str, Document] = field(init=False, repr=False)
    _own: frozenset[str] = field(init=False, repr=False)  # the names of the folder's documents (learned or not)

    def __post_init__(self) -> None:
        self.path = Path(self.path)
        if not self.path.is_dir():
            raise JobFileError(f"{self.path}: no such folder of documents")
        questions = Path(self.questions) if self.questions is not None else self.path / QUESTIONS
        docs = read_documents(self.path, {self.path / QUESTIONS, self.path / PRACTICE, questions}, self.max_chars)
        names = {d.name for d in docs}
        self._own = frozenset(names)
        heldout = read_questions(questions, names)
        practice = self.path / PRACTICE
        trained = read_questions(practice, names) if practice.is_file() else generic_tasks(docs)
        kept = set(sorted(names, key=lambda d: hashlib.sha1(d.encode()).hexdigest())[:self.documents])
        added = read_added(Path(self.added), names, self.max_chars) if self.added is not None else []
        trained += generic_tasks(added)
        self._docs = {d.name: d for d in docs if d.name in kept} | {d.name: d for d in added}
        self._heldout = [t for t in heldout if t.metadata["doc"] in self._docs]
        asked = {t.question for t in self._heldout}
        self._train = [t for t in trained if t.question not in asked and t.metadata["doc"] in self._docs]
        if not self._heldout or not self._train:
            raise JobFileError(f"{questions}: no held-out question is about the documents learned" if not self._heldout
                               else f"{practice}: no practice question is left about the documents learned")

    def heldout(self) -> list[Task]:
        return list(self._heldout)

    def train(self, start: int, count: int) -> list[Task]:
        return [self._train[(start + i) % len(self._train)] for i in range(count)]

    def all_documents(self) -> list[Document]:
        return list(self._docs.values())

    def own_names(self) -> frozenset[str]:
        """The names of the folder's own documents (not those added to a worker), learned or not (`documents`)."""
        return self._own

    def document(self, task: Task) -> Document:
        return self._docs[task.metadata["doc"]]

    def training_only_on(self, names: Collection[str]) -> DocumentSource:
        """The same documents and held-out questions, with a training stream about the documents `names`
        alone: what a worker learns when documents were added to it (hive.document_learning)."""
        focused = copy.copy(self)
        focused._train = [t for t in self._train if t.metadata["doc"] in names]
        if not focused._train:
            raise JobFileError(f"{self.path}: no training question is about {', '.join(sorted(names)) or 'no document'}")
        return focused

    def describe(self) -> dict:
        return {"kind": "documents", "path": str(self.path), "documents": len(self._docs), "heldout": len(self._heldout),
                "train": len(self._train)}


def read_documents(folder: Path, reserved: set[Path], max_chars: int) -> list[Document]:
    """Every document under `folder`, sorted by name; a clear error for anything that is not one."""
    files = _files(folder, reserved)
    if not files:
        raise JobFileError(f"{folder}: no documents (.txt, .md or .jsonl files) in the folder")
    return [read_document(folder, p, max_chars) for p in files]


def read_added(folder: Path, taken: set[str], max_chars: int) -> list[Document]:
    """The documents added to a worker (none if `folder` does not exist); one named like a document of the
    job's own folder (`taken`) is an error: it would stand for that document, which the questions are about."""
    docs = [read_document(folder, p, max_chars) for p in _files(folder, set())] if folder.is_dir() else []
    for doc in docs:
        if doc.name in taken:
            raise JobFileError(f"{folder / doc.name}: an added document with the name of one of the job's own "
                               "documents; rename or remove it")
    return docs


def _files(folder: Path, reserved: set[Path]) -> list[Path]:
    """The files under `folder`, sorted, but `reserved` ones and hidden ones (a name starting with ".")."""
    reserved = {p.resolve() for p in reserved}
    return sorted(p for p in folder.rglob("*") if p.is_file() and p.resolve() not in reserved
                  and not any(part.startswith(".") for part in p.relative_to(folder).parts))


def read_document(folder: Path, path: Path, max_chars: int) -> Document:
    if path.suffix not in SUFFIXES:
        raise JobFileError(f"{path}: not a document; documents are {', '.join(SUFFIXES)} files")
    data = path.read_bytes()
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError:
        text = None
    if text is None or "\x00" in text:
        raise JobFileError(f"{path}: a binary file, not UTF-8 text")
    if path.suffix == ".jsonl":
        text = render_messages(path, text)
    return Document(path.relative_to(folder).as_posix(), document_text(str(path), text, max_chars))


def document_text(where: str, text: str, max_chars: int) -> str:
    """A document's text, stripped, if it is one: no NUL character, not empty, at most `max_chars` characters
    (a document and a question must fit the worker's context). JobFileError naming `where` if not."""
    if "\x00" in text:
        raise JobFileError(f"{where}: a binary file, not UTF-8 text")
    if not text.strip():
        raise JobFileError(f"{where}: an empty document")
    if len(text) > max_chars:
        raise JobFileError(f"{where}: {len(text)} characters, more than a document may have to fit the worker's context "
                           f"with a question ({max_chars}); split it into smaller files (or set max_chars=N)")
    return text.strip()


def render_messages(path: Path, text: str) -> str:
    """A JSONL list of messages as "author: text" lines."""
    lines = []
    for number, line in enumerate(text.splitlines(), start=1):
        if not line.strip():
            continue
        record = _json_object(path, number, line)
        content = record.get("content", record.get("text"))
        if not isinstance(content, str):
            raise JobFileError(f"{path}:{number}: a message needs a string 'content' (or 'text')")
        author = record.get("author") or record.get("name") or record.get("role")
        lines.append(f"{author}: {content}" if author else content)
    return "\n".join(lines)


def read_questions(path: Path, names: set[str]) -> list[Task]:
    """{"question", "answer", "doc"} records as tasks about the documents named `names`."""
    if not path.is_file():
        raise JobFileError(f"{path}: no questions file; held-out questions are {QUESTIONS} in the folder "
                           "(or questions=FILE): one {\"question\", \"answer\", \"doc\"} a line")
    tasks = []
    for number, line in enumerate(path.read_text(encoding="utf-8").splitlines(), start=1):
        if not line.strip():
            continue
        record = _json_object(path, number, line)
        question, answer, doc = record.get("question"), record.get("answer"), record.get("doc")
        if not all(isinstance(v, str) and v.strip() for v in (question, answer, doc)):
            raise JobFileError(f"{path}:{number}: needs non-empty strings 'question', 'answer' and 'doc'")
        if doc not in names:
            raise JobFileError(f"{path}:{number}: names document {doc!r}, which is not in the folder")
        tasks.append(Task(question=question, answer=answer, metadata={"doc": doc}))
    if not tasks:
        raise JobFileError(f"{path}: no questions")
    return tasks


def _json_object(path: Path, number: int, line: str) -> dict:
    try:
        record = json.loads(line)
    except json.JSONDecodeError as err:
        raise JobFileError(f"{path}:{number}: invalid JSON ({err.msg})") from err
    if not isinstance(record, dict):
        raise JobFileError(f"{path}:{number}: expected a JSON object")
    return record


def generic_tasks(docs: list[Document]) -> list[Task]:
    """Training requests about each document, for a folder without practice questions."""
    return [Task(question=t.format(name=d.name), answer="", metadata={"doc": d.name}) for d in docs for t in GENERIC]


def open_book_text(document: Document, question: str) -> str:
    """The question with its document above it."""
    return f"Document {document.name}:\n{document.text}\n\nQuestion: {question}"


def open_book(source: DocumentSource, task: Task) -> Task:
    return Task(question=open_book_text(source.document(task), task.question), answer=task.answer, metadata=task.metadata)


@dataclass
class OpenBookSource:
    """A documents job's questions with their documents above them: the job as an open-book exam."""

    documents: DocumentSource

    def heldout(self) -> list[Task]:
        return [open_book(self.documents, t) for t in self.documents.heldout()]

    def train(self, start: int, count: int) -> list[Task]:
        return [open_book(self.documents, t) for t in self.documents.train(start, count)]

    def describe(self) -> dict:
        return self.documents.describe() | {"kind": "documents, open book"}


def open_book_job(job: Job) -> Job:
    """The documents job `job` asked open-book (named JOB-open-book): what the worker can answer when it may read."""
    return replace(job, name=f"{job.name}-open-book", source=OpenBookSource(documents_of(job, "open book")), origin=None)


def documents_job(path: str | Path, options: dict | None = None, name: str | None = None) -> Job:
    """The job of a folder of documents; options: questions=FILE, max_chars=N, documents=N."""
    options = dict(options or {})
    unknown = set(options) - OPTIONS
    if unknown:
        raise JobFileError(f"docs:{path}: unknown option(s) {', '.join(sorted(unknown))}; allowed: {', '.join(sorted(OPTIONS))}")
    for key in ("max_chars", "documents"):
        value = options.get(key)
        if value is not None and (isinstance(value, bool) or not isinstance(value, int) or value < 1):
            raise JobFileError(f"docs:{path}: {key} must be a whole number >= 1, got {value!r}")
    source = DocumentSource(Path(path), questions=options.get("questions"), max_chars=options.get("max_chars", MAX_CHARS),
                            documents=options.get("documents"))
    return Job(name=name or Path(path).resolve().name, source=source, scorer=scorer("line_contains"),
               instruction=INSTRUCTION, max_tokens=24)


def with_added(job: Job, folder: Path) -> Job:
    """The documents job `job` reading also the documents added to one worker (`folder`); another job as it is."""
    if not isinstance(job.source, DocumentSource) or not folder.is_dir():
        return job
    s = job.source
    return replace(job, source=DocumentSource(s.path, s.questions, s.max_chars, s.documents, added=folder))


def training_only_on(job: Job, names: Collection[str]) -> Job:
    """The documents job `job` with a training stream about the documents `names` alone (same held-out questions)."""
    return replace(job, source=documents_of(job, "learning added documents").training_only_on(names))


def documents_of(job: Job, user: str) -> DocumentSource:
    """The documents of a documents job; a clear error naming `user` (a learner) for another kind of job."""
    if not isinstance(job.source, DocumentSource):
        raise ValueError(f"{user}: a documents job is needed (docs:PATH); job {job.name} is not one")
    return job.source
