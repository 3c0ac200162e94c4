"""Documents added to a worker through the server (POST /v1/documents), over real HTTP with the tiny model:
stored and part of the worker's job at once, refused whole when anything is wrong, reachable only by the
worker's tenant, and learned in the background behind the gate."""

from __future__ import annotations

import json
import time

import httpx
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from typer.testing import CliRunner

from replicas import learn_in_two_replicas

from apiary import Hive
from apiary.cli import app
from apiary.hive.document_learning import Added, ready_documents
from apiary.hive.feedback_learning import LearningConfig
from apiary.jobs.spec import load_job
from apiary.serve.app import ServerThread, create_app
from apiary.serve.service import MAX_DOCUMENTS, ServeConfig, Service
from apiary.serve.tenants import Tenants
from apiary.store.documents import BadDocument, add_documents, added_dir, check_added, unlearned

KEYS = {"key-acme": "acme", "key-bravo": "bravo"}
ROOMS = {"name": "rooms.md", "text": "Room Zanthe-4 is the library."}


@pytest.fixture
def hive(tmp_path, tiny_core_dir, team_docs, monkeypatch):
    """acme's documents worker `clerk` (documents of at most 200 characters) and its arithmetic worker, and
    bravo's documents worker on the same folder."""
    monkeypatch.setenv("APIARY_CACHE", str(tmp_path / "cache"))
    docs = team_docs
    h = Hive(tmp_path / "hive", core=str(tiny_core_dir))
    h.deploy(f"docs:{docs}", "clerk", tenant="acme", overrides=["max_chars=200"])
    h.deploy("rg:chain_sum", "acme-sums", tenant="acme", overrides=["min_terms=2", "max_terms=2"])
    h.deploy(f"docs:{docs}", "bravo-clerk", tenant="bravo")
    return h


def serve(hive, tiny_core_dir, **config):
    config = ServeConfig(**({"learn": False, "watch_seconds": 0.1, "max_tokens": 64} | config))
    return ServerThread(create_app(Service(hive.path, core=str(tiny_core_dir), config=config), Tenants(KEYS)))


def add(server, body, key="key-acme") -> httpx.Response:
    return httpx.post(server.url + "/v1/documents", headers={"Authorization": f"Bearer {key}"}, json=body, timeout=60)


def workers(server, key="key-acme") -> dict[str, dict]:
    answer = httpx.get(server.url + "/v1/workers", headers={"Authorization": f"Bearer {key}"})
    return {w["name"]: w for w in answer.json()["data"]}


def test_a_tenant_adds_documents_and_the_workers_job_reads_them_from_then_on(hive, tiny_core_dir):
    with serve(hive, tiny_core_dir) as server:
        answer = add(server, {"model": "worker:clerk", "documents": [ROOMS]})
        assert answer.status_code == 200, answer.text
        assert answer.json() == {"object": "documents", "model": "worker:clerk", "learning": False,
                                 "documents": [{"name": "rooms.md", "characters": len(ROOMS["text"]), "replaced": False}]}
        assert (added_dir(hive.path, "clerk") / "rooms.md").read_text() == ROOMS["text"]
        assert workers(server)["clerk"]["unlearned_documents"] == 1
        assert workers(server)["acme-sums"]["unlearned_documents"] == 0
        source = hive.worker("clerk").job.source
        assert [d.name for d in source.all_documents()] == ["teams.md", "rooms.md"]
        assert "What does rooms.md say?" in {t.question for t in source.train(0, 10)}
        assert [t.question for t in source.heldout()] == ["Where does Quorbel meet?"]  # held out: the folder's only
        again = add(server, {"model": "worker:clerk", "documents": [ROOMS | {"text": "Room Zanthe-5 is the library."}]})
        assert again.json()["documents"][0]["replaced"] is True
        assert hive.worker("clerk").job.source.all_documents()[1].text == "Room Zanthe-5 is the library."
        assert [d.name for d in hive.worker("bravo-clerk").job.source.all_documents()] == ["teams.md"]  # clerk's alone


def test_the_python_api_adds_documents_as_the_server_does(hive):
    added = hive.add_documents("clerk", [("rooms.md", " Room Zanthe-4 is the library.\n"), ("desks.txt", "Desk 9 is free.")])
    assert added == [Added("rooms.md", 29, False), Added("desks.txt", 15, False)]
    assert hive.add_documents("clerk", [("rooms.md", "Room Zanthe-5.")]) == [Added("rooms.md", 14, True)]
    assert sorted(unlearned(hive.path, "clerk")) == ["desks.txt", "rooms.md"]
    with pytest.raises(BadDocument, match="worker 'acme-sums' does not learn documents"):
        hive.add_documents("acme-sums", [("rooms.md", "x")])
    with pytest.raises(ValueError, match="no worker named 'nobody'"):
        hive.add_documents("nobody", [("rooms.md", "x")])


def _bad_bodies() -> list[tuple[dict, str]]:
    """Bodies refused with 400, each with what the error must say."""
    def one(**document) -> dict:
        return {"model": "worker:clerk", "documents": [document]}

    return [
        ({"model": "worker:acme-sums", "documents": [ROOMS]}, "worker 'acme-sums' does not learn documents"),
        ({"model": "core", "documents": [ROOMS]}, "core does not learn documents"),
        ({"documents": [ROOMS]}, "missing required field 'model'"),
        ({"model": "worker:clerk"}, "missing required field 'documents'"),
        ({"model": "worker:clerk", "documents": []}, "a list of 1 to"),
        ({"model": "worker:clerk", "documents": ROOMS}, "a list of 1 to"),
        ({"model": "worker:clerk", "documents": [ROOMS | {"name": f"r{n}.md"} for n in range(MAX_DOCUMENTS + 1)]},
         "a list of 1 to"),
        ({"model": "worker:clerk", "documents": ["rooms.md"]}, "a list of 1 to"),
        (one(name="rooms.md", text="  \n"), "an empty document"),
        (one(name="rooms.md"), "'text' must be a string"),
        (one(name="rooms.md", text="x" * 201), "201 characters, more than a document may have"),
        (one(name="rooms.md", text="a\x00b"), "not UTF-8 text"),
        (one(name="../rooms.md", text="x"), "document name '../rooms.md' is not allowed"),
        (one(name="notes/rooms.md", text="x"), "is not allowed"),
        (one(name=".rooms.md", text="x"), "is not allowed"),
        (one(text="x"), "document name None is not allowed"),
        (one(name="rooms.pdf", text="x"), "are .md or .txt files"),
        (one(name="questions.jsonl", text="x"), "are .md or .txt files"),
        (one(name="practice.jsonl", text="x"), "are .md or .txt files"),
        (one(name="teams.md", text="x"), "is one of the job's own documents"),
        ({"model": "worker:clerk", "documents": [ROOMS, {"name": "exam.md", "text": "Q: Where does Quorbel meet? A: Zanthe-3"}]},
         "documents[1]: document 'exam.md' holds one of the worker's held-out questions"),
        ({"model": "worker:clerk", "documents": [ROOMS, ROOMS]}, "name one document twice"),
        ({"model": "worker:clerk", "documents": [ROOMS, {"name": "x.md", "text": ""}]}, "documents[1]: document 'x.md'"),
    ]


def test_every_bad_document_is_refused_with_400_saying_why_and_nothing_is_written(hive, tiny_core_dir):
    with serve(hive, tiny_core_dir) as server:
        for body, said in _bad_bodies():
            answer = add(server, body)
            assert answer.status_code == 400, (body, answer.text)
            error = answer.json()["error"]
            assert said in error["message"] and error["type"] == "invalid_request_error", (said, error)
        assert not (hive.path / "documents").exists()
        assert workers(server)["clerk"]["unlearned_documents"] == 0


def test_a_tenant_reaches_only_its_own_workers_documents(hive, tiny_core_dir):
    with serve(hive, tiny_core_dir) as server:
        for key, model in [("key-bravo", "worker:clerk"), ("key-acme", "worker:bravo-clerk"), ("key-acme", "worker:nobody")]:
            answer = add(server, {"model": model, "documents": [ROOMS]}, key=key)
            assert answer.status_code == 404 and f"model {model!r} not found" in answer.json()["error"]["message"]
        assert add(server, {"model": "worker:clerk", "documents": [ROOMS]}, key="wrong").status_code == 401
        assert not (hive.path / "documents").exists()


def test_added_documents_are_learned_once_by_two_replicas_on_them_alone_and_marked_learned(hive, tiny_core_dir):
    """Two servers' background learning on one store: one run of context distillation on the added document
    (the worker's lease), asking only about it, gated, and the document recorded as learned by its version."""
    folder = added_dir(hive.path, "clerk")
    folder.mkdir(parents=True)
    (folder / "rooms.md").write_text(ROOMS["text"])
    assert [w.name for w in ready_documents(hive.store)] == ["clerk"]
    results = learn_in_two_replicas(hive, tiny_core_dir, LearningConfig(poll_seconds=0.1, document_steps=2))
    (outcome,) = results
    assert outcome["learn"]["learners"] == ["context_distill"] and outcome["learn"]["steps"] == 2
    assert outcome["gate"]["version"] == 1 and outcome["documents"] == ["rooms.md"]
    assert [d.candidate for d in hive.store.decisions()] == ["worker:clerk:1"]
    asked = {e.messages[-1]["content"] for e in hive.store.episodes("clerk") if e.origin == "context_distill"}
    assert asked and all(q.startswith(("What does rooms.md say?", "What should a new colleague know from rooms.md?"))
                         for q in asked)
    assert unlearned(hive.path, "clerk") == {} and ready_documents(hive.store) == []
    assert json.loads((folder / ".learned.json").read_text())["rooms.md"]["version"] == 1
    (folder / "rooms.md").write_text("Room Zanthe-5 is the library.")  # replaced: to be learned again
    assert list(unlearned(hive.path, "clerk")) == ["rooms.md"]


def test_added_documents_are_learned_in_the_background_behind_the_gate(hive, tiny_core_dir):
    learning = LearningConfig(poll_seconds=0.5, document_steps=1)
    with serve(hive, tiny_core_dir, learn=True, learning=learning) as server:
        answer = add(server, {"model": "worker:clerk", "documents": [ROOMS]})
        assert answer.status_code == 200 and answer.json()["learning"] is True
        deadline, worker = time.time() + 240, None
        while time.time() < deadline:
            worker = workers(server)["clerk"]
            gate = worker["last_gate"]  # the decision is stored just before the release: wait for the release too
            if gate is not None and worker["served_version"] == worker["live_version"] == (1 if gate["passed"] else 0):
                break
            time.sleep(0.5)
        assert worker["last_gate"]["candidate"] == "worker:clerk:1" and worker["latest_version"] == 1
        assert worker["unlearned_documents"] == 0
        assert worker["live_version"] == (1 if worker["last_gate"]["passed"] else 0) == worker["served_version"]
        assert workers(server, "key-bravo")["bravo-clerk"]["latest_version"] == 0  # another worker's documents


def test_a_run_on_added_documents_takes_a_whole_number_of_steps():
    for steps in (0, 1.5, True):
        with pytest.raises(ValueError, match="a run on added documents takes a whole number of steps"):
            LearningConfig(document_steps=steps)
    result = CliRunner().invoke(app, ["serve", "--document-steps", "0"])
    assert result.exit_code == 2 and "whole number of steps" in result.output and "Traceback" not in result.output


NAMES = st.sampled_from(["rooms.md", "a.txt", "teams.md", "../x.md", "..", ".x.md", "x.md/", "a\\b.md", "x.MD", "é.md",
                         "questions.jsonl", "", None, 7, ["x.md"]]) | st.text(max_size=12)
TEXTS = st.sampled_from(["Room Zanthe-4.", "", " \n", "a\x00b", "x" * 201, None, 5]) | st.text(max_size=30)


@settings(max_examples=200, derandomize=True, deadline=None, database=None, suppress_health_check=list(HealthCheck))
@given(name=NAMES, text=TEXTS)
def test_any_name_and_text_is_taken_as_a_plain_document_in_the_workers_folder_or_refused_saying_why(tmp_path_factory,
                                                                                                   name, text):
    docs = tmp_path_factory.mktemp("docs")
    (docs / "teams.md").write_text("The Quorbel team meets in room Zanthe-3.")
    (docs / "questions.jsonl").write_text(json.dumps({"question": "q?", "answer": "a", "doc": "teams.md"}) + "\n")
    source = load_job(f"docs:{docs}", ["max_chars=200"]).source
    try:
        document = check_added(name, text, source)
    except BadDocument as err:
        assert str(err)
        return
    assert name.endswith((".md", ".txt")) and "/" not in name and not name.startswith(".") and name != "teams.md"
    assert document.text == text.strip() and 0 < len(document.text) <= 200
    root = tmp_path_factory.mktemp("hive")
    add_documents(root, "clerk", [document])
    assert [p.name for p in added_dir(root, "clerk").iterdir()] == [name]
