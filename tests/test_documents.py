"""The documents job: a folder of documents, closed-book held-out questions, and its bad inputs."""

import json
from pathlib import Path

import pytest
from typer.testing import CliRunner

from apiary.cli import app
from apiary.evals.contamination import find
from apiary.jobs.documents import GENERIC, DocumentSource, open_book, training_only_on, with_added
from apiary.jobs.jsonl import JobFileError
from apiary.jobs.scoring import scorer
from apiary.jobs.spec import load_job
from apiary.jobs.workplace_gen import write
from apiary.store.store import Store

WORKPLACE = Path(__file__).resolve().parent.parent / "examples" / "workplace"
QUESTIONS = [
    {"question": "Which room is the Quorbel team's?", "answer": "Zanthe-3", "doc": "teams.md"},
    {"question": "Who runs Project Halvex?", "answer": "Mirel Dostrand", "doc": "notes/halvex.txt"},
    {"question": "When is the plant sale?", "answer": "4 May 2028", "doc": "channel.jsonl"},
]
PRACTICE = [
    {"question": "Where does the Quorbel team meet?", "answer": "Zanthe-3", "doc": "teams.md"},
    {"question": "Who runs Project Halvex?", "answer": "Mirel Dostrand", "doc": "notes/halvex.txt"},  # a held-out question
    {"question": "Who leads Project Halvex?", "answer": "Mirel Dostrand", "doc": "notes/halvex.txt"},
]


def jsonl(path: Path, rows: list) -> Path:
    path.write_text("".join((r if isinstance(r, str) else json.dumps(r)) + "\n" for r in rows), encoding="utf-8")
    return path


@pytest.fixture
def folder(tmp_path) -> Path:
    """Three documents (Markdown, text in a subfolder, a chat channel as JSONL) with held-out and practice questions."""
    docs = tmp_path / "docs"
    (docs / "notes").mkdir(parents=True)
    (docs / "teams.md").write_text("# Teams\n\nThe Quorbel team meets in room Zanthe-3.\n")
    (docs / "notes" / "halvex.txt").write_text("Project Halvex is led by Mirel Dostrand.\n")
    jsonl(docs / "channel.jsonl", [{"author": "Mirel", "text": "The plant sale is on 4 May 2028."}])
    (docs / ".hidden.md").write_text("not a document")
    jsonl(docs / "questions.jsonl", QUESTIONS)
    jsonl(docs / "practice.jsonl", PRACTICE)
    return docs


def test_a_folder_becomes_closed_book_questions_about_its_documents(folder):
    job = load_job(f"docs:{folder}")
    source = job.source
    assert job.name == "docs" and job.scorer.name == "line_contains"
    assert sorted(d.name for d in source.all_documents()) == ["channel.jsonl", "notes/halvex.txt", "teams.md"]
    assert source.document(source.heldout()[2]).text == "Mirel: The plant sale is on 4 May 2028."
    heldout = source.heldout()
    assert [t.question for t in heldout] == [q["question"] for q in QUESTIONS]
    closed = job.messages(heldout[0])[-1]["content"]
    assert closed.startswith("Which room is the Quorbel team's?") and "Zanthe-3" not in closed
    opened = job.messages(open_book(source, heldout[0]))[-1]["content"]
    assert "The Quorbel team meets in room Zanthe-3." in opened and "Which room is the Quorbel team's?" in opened


def test_held_out_questions_are_never_documents_nor_training_questions(folder):
    source = load_job(f"docs:{folder}").source
    trained = [t.question for t in source.train(0, 10)] + [d.text for d in source.all_documents()]
    for question in QUESTIONS:
        assert not any(question["question"] in text for text in trained)
    assert {t.question for t in source.train(0, 2)} == {"Where does the Quorbel team meet?", "Who leads Project Halvex?"}


def test_without_practice_questions_the_training_stream_asks_about_each_document(folder):
    (folder / "practice.jsonl").unlink()
    source = load_job(f"docs:{folder}").source
    assert len({t.question for t in source.train(0, 6)}) == 3 * len(GENERIC)
    assert all(t.answer == "" and t.metadata["doc"] in {"channel.jsonl", "notes/halvex.txt", "teams.md"}
               for t in source.train(0, 6))


def test_a_questions_file_elsewhere_and_a_job_file_make_the_same_job(folder, tmp_path):
    other = jsonl(tmp_path / "asked.jsonl", QUESTIONS[:1])
    (folder / "questions.jsonl").rename(folder / "kept-aside.md")  # an ordinary document now
    job = load_job(f"docs:{folder}", [f"questions={other}"])
    assert len(job.source.heldout()) == 1 and len(job.source.all_documents()) == 4
    toml = tmp_path / "job.toml"
    toml.write_text(f'source = "documents"\npath = "docs"\nquestions = "asked.jsonl"\nname = "office"\n')
    from_file = load_job(toml)
    assert from_file.name == "office" and from_file.source.heldout() == job.source.heldout()


def test_documents_n_learns_a_stable_subset_and_asks_only_about_it(folder):
    one = load_job(f"docs:{folder}", ["documents=1"]).source
    (kept,) = one.all_documents()
    assert {t.metadata["doc"] for t in one.heldout() + one.train(0, 4)} == {kept.name}
    assert load_job(f"docs:{folder}", ["documents=1"]).source.all_documents() == [kept]


def test_documents_added_to_a_worker_are_learned_beside_the_folders_and_never_held_out(folder, tmp_path):
    added = tmp_path / "added"
    added.mkdir()
    (added / "rooms.md").write_text("Room Zanthe-4 is the library.")
    (added / ".learned.json").write_text("{}")  # hidden: never a document
    job = load_job(f"docs:{folder}", ["documents=1"])
    assert with_added(job, tmp_path / "nothing-added") is job
    source = with_added(job, added).source
    assert [d.name for d in source.all_documents()] == [d.name for d in job.source.all_documents()] + ["rooms.md"]
    assert source.heldout() == job.source.heldout() and source.own_names() == job.source.own_names()
    assert {t.question for t in source.train(0, 100) if t.metadata["doc"] == "rooms.md"} == {
        g.format(name="rooms.md") for g in GENERIC}
    focused = training_only_on(with_added(job, added), {"rooms.md"}).source
    assert {t.metadata["doc"] for t in focused.train(0, 10)} == {"rooms.md"} and focused.heldout() == source.heldout()
    (added / "teams.md").write_text("The Quorbel team meets in room Zanthe-9.")  # stands for one of the folder's
    with pytest.raises(JobFileError, match="teams.md: an added document with the name of one of the job's own"):
        with_added(job, added)


def test_line_contains_reads_the_answer_in_the_first_line_only():
    check = scorer("line_contains")
    assert check("It is in room Zanthe-3.\nmore", "zanthe-3.") == 1.0
    assert check("I do not know.\nZanthe-3", "Zanthe-3") == 0.0
    assert check("anything", " ") == 0.0


def _break(folder: Path, how: str) -> str:
    """Spoil the folder as `how` says; returns what the error must say."""
    if how == "empty":
        for p in sorted(folder.rglob("*"), reverse=True):
            p.rmdir() if p.is_dir() else p.unlink()
        return "no documents"
    if how == "binary":
        (folder / "scan.txt").write_bytes(b"\x89PNG\x00\x01\xff")
        return "scan.txt: a binary file"
    if how == "unsupported":
        (folder / "scan.pdf").write_bytes(b"%PDF")
        return "scan.pdf: not a document"
    if how == "too large":
        (folder / "huge.md").write_text("word " * 2000)
        return "huge.md: 10000 characters"
    if how == "missing document":
        jsonl(folder / "questions.jsonl", QUESTIONS[:2] + [{"question": "q?", "answer": "a", "doc": "gone.md"}])
        return "questions.jsonl:3: names document 'gone.md'"
    if how == "malformed":
        jsonl(folder / "questions.jsonl", QUESTIONS[:1] + ["{not json"])
        return "questions.jsonl:2: invalid JSON"
    jsonl(folder / "questions.jsonl", QUESTIONS[:1] + [{"question": "q?", "doc": "teams.md"}])
    return "questions.jsonl:2: needs non-empty strings"


BAD = ["empty", "binary", "unsupported", "too large", "missing document", "malformed", "no answer"]


@pytest.mark.parametrize("how", BAD)
def test_bad_input_is_a_clear_error(folder, how):
    said = _break(folder, how)
    with pytest.raises(JobFileError, match=None) as err:
        DocumentSource(folder)
    assert said in str(err.value)


@pytest.mark.parametrize("how", ["binary", "missing document"])
def test_apiary_learn_refuses_bad_input_and_writes_nothing(folder, how, tmp_path, tiny_core_dir):
    said = _break(folder, how)
    hive = tmp_path / "hive"
    result = CliRunner().invoke(app, ["learn", f"docs:{folder}", "--worker", "clerk", "--learners", "context_distill",
                                      "--steps", "1", "--hive", str(hive), "--core", str(tiny_core_dir), "--json"])
    assert result.exit_code != 0 and said in json.loads(result.stdout)["error"]
    store = Store(hive)
    assert store.worker("clerk") is None and store.episodes("clerk") == []


def test_the_shipped_workplace_is_as_the_issue_asks_and_regenerates_from_its_seed(tmp_path):
    source = load_job(WORKPLACE.parent / "jobs" / "workplace.toml").source
    docs, heldout = source.all_documents(), source.heldout()
    assert 50 <= len(docs) <= 200 and len(heldout) >= 200
    trained = [t.question for t in source.train(0, 10_000)] + [d.text for d in docs]
    assert find(trained, [t.question for t in heldout]) == []
    write(tmp_path / "again", seed=0)
    for path in sorted(p for p in WORKPLACE.rglob("*") if p.is_file()):
        assert (tmp_path / "again" / path.relative_to(WORKPLACE)).read_bytes() == path.read_bytes(), path
