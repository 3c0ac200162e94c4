"""Artifacts on shared storage (store.remote): two nodes, each with a hive directory of its own, on one store
(the first node's SQLite file) and one artifact URL, a shared directory or an S3 bucket (moto's server, started
here). What one node learns the other reads, fetched and verified; a publish cut off before its manifest is not
trusted; an artifact URL nobody can write is one error before anything is written."""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file

from apiary import ConsolidateConfig, GateConfig, Hive
from apiary.jobs.documents import documents_of
from apiary.learners.grpo import GRPOConfig
from apiary.store.artifacts import MANIFEST
from apiary.store.check import DAMAGE, check_hive
from apiary.store.documents import mark_learned, unlearned
from apiary.store.remote import ArtifactsUnwritable, ArtifactUntrusted, open_shared

ONE_DIGIT = ["min_terms=2", "max_terms=2", "min_digits=1", "max_digits=1", "heldout_size=4"]
CONFIG = GRPOConfig(prompts_per_step=2, samples_per_prompt=2, max_new_tokens=3, learning_rate=1e-2)


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture(scope="module")
def s3_endpoint():
    """A local S3 endpoint (moto's server mode) for the module, stopped afterwards."""
    pytest.importorskip("s3fs", reason="s3fs is not installed: pip install -e '.[s3]'")
    server_mode = pytest.importorskip("moto.server", reason="moto's server is not installed: pip install -e '.[dev]'")
    port = _free_port()
    server = server_mode.ThreadedMotoServer(ip_address="127.0.0.1", port=port, verbose=False)
    server.start()
    yield f"http://127.0.0.1:{port}"
    server.stop()


@pytest.fixture(params=["directory", "s3"])
def artifact_url(request, tmp_path, monkeypatch) -> str:
    """A shared directory (file://) or a bucket on the local S3 endpoint, fake credentials in the environment."""
    if request.param == "directory":
        return (tmp_path / "shared").as_uri()
    endpoint = request.getfixturevalue("s3_endpoint")
    import s3fs

    for name, value in {"AWS_ACCESS_KEY_ID": "testing", "AWS_SECRET_ACCESS_KEY": "testing",
                        "AWS_DEFAULT_REGION": "us-east-1", "AWS_ENDPOINT_URL": endpoint}.items():
        monkeypatch.setenv(name, value)
    s3fs.S3FileSystem.clear_instance_cache()  # a filesystem made for another test's endpoint is not reused
    return f"s3://apiary-test/{tmp_path.name}"


@pytest.fixture
def nodes(tmp_path, tiny_core_dir, artifact_url, monkeypatch):
    """Node A, which learns, and node B: two hive directories on A's store and one artifact URL."""
    monkeypatch.setenv("APIARY_CACHE", str(tmp_path / "cache"))
    a = Hive(tmp_path / "node-a", core=str(tiny_core_dir), artifacts_url=artifact_url)
    b = Hive(tmp_path / "node-b", core=str(tiny_core_dir), db_url=a.store.url, artifacts_url=artifact_url)
    return a, b


def _learn(hive: Hive, steps: int = 2):
    return hive.learn("rg:chain_sum", "arith", steps=steps, config=CONFIG, overrides=ONE_DIGIT, release="ungated",
                      show_progress=False)


def _weights(directory: Path) -> dict:
    return load_file(next(directory.rglob("*.safetensors")))


def test_an_adapter_learned_on_one_node_is_read_by_another_with_identical_weights(nodes):
    a, b = nodes
    version = _learn(a).adapter_version
    mine = a.store.adapter_dir("arith", version)
    theirs = b.store.adapter_dir("arith", version)
    assert not theirs.exists()  # B has not got it yet: it is only in A's hive and under the URL
    assert len(b.attempt("rg:chain_sum", "arith", n=1, overrides=ONE_DIGIT)) == 1  # B answers with A's live adapter
    assert theirs.is_dir()  # fetched on first use into B's own hive
    ours_A, ours_B = _weights(mine), _weights(theirs)
    assert ours_A.keys() == ours_B.keys() and all((ours_A[k] == ours_B[k]).all() for k in ours_A)
    assert json.loads((theirs / MANIFEST).read_text()) == json.loads((mine / MANIFEST).read_text())
    # B learns on from A's version and checkpoint (fetched: B never learned this worker); A then reads what B learned
    state = "state.json"
    assert (b.store.fetched_checkpoint("arith") / state).read_text() == (a.store.checkpoint_dir("arith") / state).read_text()
    follow = _learn(b, steps=1)
    assert [(v.version, v.parent) for v in a.store.adapter_versions("arith")] == [(version, 0), (follow.adapter_version, version)]
    assert a.store.fetched(a.store.adapter_dir("arith", follow.adapter_version)).is_dir()
    assert check_hive(b.path, url=b.store.url, artifacts=b.store.shared.url).clean


def test_a_core_version_consolidated_on_one_node_from_anothers_adapter_loads_on_the_first(tmp_path, tiny_core_dir,
                                                                                           monkeypatch):
    monkeypatch.setenv("APIARY_CACHE", str(tmp_path / "cache"))
    url = (tmp_path / "shared").as_uri()
    a = Hive(tmp_path / "node-a", core=str(tiny_core_dir), artifacts_url=url)
    b = Hive(tmp_path / "node-b", core=str(tiny_core_dir), db_url=a.store.url, artifacts_url=url)
    _learn(a, steps=1)
    config = ConsolidateConfig(method="linear", gate=GateConfig(tolerance=1.0, max_retention_kl=10.0))
    version = b.consolidate(config=config, show_progress=False).version  # from A's adapter, fetched
    assert not a.store.core_dir(version).exists()
    name = "model.layers.0.self_attn.q_proj.weight"
    assert torch.equal(a.core_at(version).model.state_dict()[name], b.core_at(version).model.state_dict()[name])
    assert a.store.core_dir(version).is_dir()  # fetched into A's hive when A loaded it


def test_a_publish_cut_off_before_its_manifest_is_not_trusted(nodes):
    a, b = nodes
    version = _learn(a, steps=1).adapter_version
    key = f"adapters/arith/v{version}"
    a.store.shared.fs.rm_file(a.store.shared.where(f"{key}/{MANIFEST}"))  # as if the publish died after the files
    with pytest.raises(ArtifactUntrusted, match="cut off.*not trusted"):
        b.attempt("rg:chain_sum", "arith", n=1, overrides=ONE_DIGIT)
    assert not b.store.adapter_dir("arith", version).exists()  # nothing half-fetched
    findings = check_hive(b.path, url=b.store.url, artifacts=b.store.shared.url).findings
    assert [f.level for f in findings if key in (f.path or "")] == [DAMAGE]
    assert check_hive(a.path, repair=True, artifacts=a.store.shared.url).clean  # A has it whole: published again
    assert len(b.attempt("rg:chain_sum", "arith", n=1, overrides=ONE_DIGIT)) == 1


def test_a_publish_killed_before_its_manifest_records_no_version(tmp_path, tiny_core_dir, monkeypatch):
    """The version's row is written after its publish: a learn killed between its files and its manifest leaves
    no row a reader could follow to an untrusted directory."""
    monkeypatch.setenv("APIARY_CACHE", str(tmp_path / "cache"))
    a = Hive(tmp_path / "node-a", core=str(tiny_core_dir), artifacts_url=(tmp_path / "shared").as_uri())
    monkeypatch.setattr(type(a.store.shared.fs), "pipe_file", _killed)
    with pytest.raises(KeyboardInterrupt):
        _learn(a, steps=1)
    assert a.store.adapter_versions("arith") == []
    assert (tmp_path / "shared" / "adapters" / "arith" / "v1").is_dir()  # its files went up, its manifest did not
    assert not (tmp_path / "shared" / "adapters" / "arith" / "v1" / MANIFEST).exists()


def _killed(*_args, **_kwargs):
    raise KeyboardInterrupt


def test_a_local_hive_imports_nothing_of_shared_storage(tmp_path):
    code = (f"import sys; from apiary.store.store import Store; Store({str(tmp_path / 'hive')!r}); "
            "print(sorted(m for m in ('fsspec', 'apiary.store.remote') if m in sys.modules))")
    src = str(Path(__file__).resolve().parents[1] / "src")
    shown = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True,
                           env={**os.environ, "PYTHONPATH": src}).stdout
    assert shown.strip() == "[]"


def test_an_artifact_url_that_cannot_be_written_is_one_error_and_nothing_is_written(tmp_path, tiny_core_dir):
    blocker = tmp_path / "a-file"
    blocker.write_text("not a directory")  # unwritable under it even for root
    for url, says in [((blocker / "artifacts").as_uri(), "cannot write to the artifact URL"),
                      ("nope://bucket/prefix", "not one apiary can use"),
                      ("gcs://bucket/prefix", "needs fsspec's gcs driver")]:
        with pytest.raises(ArtifactsUnwritable, match=says) as err:
            Hive(tmp_path / "hive", core=str(tiny_core_dir), artifacts_url=url)
        assert "artifact" in str(err.value)
    assert not (tmp_path / "hive").exists() and blocker.read_text() == "not a directory"


def test_the_cli_names_the_artifact_url_it_cannot_write(tmp_path, monkeypatch):
    from typer.testing import CliRunner

    from apiary.cli import app

    url = (tmp_path / "a-file" / "artifacts").as_uri()
    (tmp_path / "a-file").write_text("")
    monkeypatch.setenv("APIARY_ARTIFACTS_URL", "")  # --artifacts sets it for the process: given back afterwards
    result = CliRunner().invoke(app, ["--artifacts", url, "status", "--hive", str(tmp_path / "hive")])
    assert result.exit_code == 2 and "cannot write to the artifact URL" in result.output
    assert not (tmp_path / "hive").exists()


def test_a_checkpoint_is_fetched_again_when_another_node_publishes_a_newer_one(tmp_path):
    shared = open_shared((tmp_path / "shared").as_uri())
    mine, theirs = tmp_path / "a" / "checkpoints" / "w", tmp_path / "b" / "checkpoints" / "w"
    theirs.mkdir(parents=True)
    (theirs / "state.json").write_text('{"step": 1}')
    shared.refresh("checkpoints/w", theirs)  # none published yet: this node keeps its own
    assert (theirs / "state.json").read_text() == '{"step": 1}'
    mine.mkdir(parents=True)
    (mine / "state.json").write_text('{"step": 5}')
    (mine / ".state.json.x1y2").write_text("a kill's temporary file")  # never published
    shared.publish(mine, "checkpoints/w")
    shared.refresh("checkpoints/w", theirs)
    assert sorted(p.name for p in theirs.iterdir()) == ["state.json"] and (theirs / "state.json").read_text() == '{"step": 5}'


def test_a_manifest_naming_a_path_outside_the_artifact_writes_nothing_there(tmp_path):
    shared = open_shared((tmp_path / "shared").as_uri())
    (tmp_path / "shared" / "adapters" / "w" / "v1").mkdir(parents=True)
    (tmp_path / "shared" / "adapters" / "w" / "v1" / MANIFEST).write_text(json.dumps({"sha256": {"../../../evil": "0"}}))
    with pytest.raises(ValueError, match="outside"):
        shared.fetch("adapters/w/v1", tmp_path / "hive" / "adapters" / "w" / "v1")
    assert not (tmp_path / "hive" / "evil").exists() and not (tmp_path / "hive" / "adapters" / "w" / "v1").exists()


def test_documents_added_through_one_node_are_read_learned_and_replaced_through_another(tmp_path, tiny_core_dir,
                                                                                       artifact_url, team_docs, monkeypatch):
    """Two replicas on one store and one artifact URL: a document added through either is in the worker's job on
    both, and what one marks learned the other does not learn again (issue 18: the lease may fall to either)."""
    monkeypatch.setenv("APIARY_CACHE", str(tmp_path / "cache"))
    docs = team_docs
    a = Hive(tmp_path / "node-a", core=str(tiny_core_dir), artifacts_url=artifact_url)
    a.deploy(f"docs:{docs}", "clerk")
    b = Hive(tmp_path / "node-b", core=str(tiny_core_dir), db_url=a.store.url, artifacts_url=artifact_url)
    a.add_documents("clerk", [("rooms.md", "Room Zanthe-4 is the library.")])
    b.add_documents("clerk", [("desks.txt", "Desk 9 is free.")])  # B reads A's first: nothing of either is lost

    def job_texts(hive):
        return {d.name: d.text for d in documents_of(hive.worker("clerk").job, "a test").all_documents()}

    for hive in (a, b):
        assert job_texts(hive) == {"teams.md": "The Quorbel team meets in room Zanthe-3.",
                                   "rooms.md": "Room Zanthe-4 is the library.", "desks.txt": "Desk 9 is free."}
    todo = unlearned(b.path, "clerk", b.store.shared)
    assert sorted(todo) == ["desks.txt", "rooms.md"] and unlearned(a.path, "clerk", a.store.shared) == todo
    mark_learned(b.path, "clerk", todo, 1, b.store.shared)  # B held the lease and learned them
    assert unlearned(a.path, "clerk", a.store.shared) == {}
    b.add_documents("clerk", [("rooms.md", "Room Zanthe-5 is the library.")])  # replaced through B: new for A
    assert list(unlearned(a.path, "clerk", a.store.shared)) == ["rooms.md"]
    assert job_texts(a)["rooms.md"] == "Room Zanthe-5 is the library."
