"""Limits and trust: one name rule for workers and tenants, artifact paths that stay inside the hive,
and checkpoints that are read without running what a planted file holds."""

import io
import os

import pytest
import torch
from sqlalchemy import insert

from apiary.hive.hive import Hive
from apiary.store import schema
from apiary.store.artifacts import UnsafeCheckpoint, read_tensors, write_tensors
from apiary.store.names import BadName, check_name
from apiary.store.records import now
from apiary.store.store import Store

CHAIN = ["min_terms=2", "max_terms=2", "min_digits=1", "max_digits=1", "heldout_size=4"]
GOOD = ["w", "arith", "chain_sum.v2", "acme-corp_1", "A" * 64, "0"]
BAD = ["", ".", "..", "../../escaped", "a/b", "a\\b", "/abs", ".hidden", "-flag", "a b", "a\n", "é", "A" * 65, None, 3]


@pytest.mark.parametrize("name", GOOD)
def test_names_of_letters_digits_dots_dashes_and_underscores_are_allowed(name):
    assert check_name(name) == name


@pytest.mark.parametrize("name", BAD)
def test_names_that_could_be_paths_options_or_odd_keys_are_refused_with_the_rule(name):
    with pytest.raises(BadName, match=r"worker name .* is not allowed: use 1 to 64 letters, digits"):
        check_name(name)


def test_the_store_refuses_a_bad_worker_or_tenant_name_and_records_nothing(tmp_path):
    store = Store(tmp_path / "hive")
    with pytest.raises(BadName, match="worker name '../../escaped'"):
        store.ensure_worker("../../escaped", "job", "core", {})
    with pytest.raises(BadName, match="tenant name 'a/b'"):
        store.ensure_worker("w", "job", "core", {}, tenant="a/b")
    assert store.workers() == []


def test_an_artifact_path_that_would_leave_the_hive_is_refused(tmp_path):
    """A name stored before the rule existed still never becomes a path outside the hive."""
    store = Store(tmp_path / "hive")
    with store.engine.begin() as db:
        db.execute(insert(schema.workers).values(name="../../escaped", job="j", core="c", job_spec={}, created_at=now()))
    for path in (lambda: store.adapter_dir("../../escaped", 1), lambda: store.checkpoint_dir("../../escaped"),
                 lambda: store.checkpoint_dir("/tmp")):
        with pytest.raises(ValueError, match="leads outside the hive"):
            path()
    assert store.adapter_dir("w", 2) == tmp_path / "hive" / "adapters" / "w" / "v2"


def test_the_python_api_refuses_a_bad_name_before_measuring_or_writing_anything(tmp_path, tiny_core_dir):
    hive = Hive(tmp_path / "a" / "b" / "hive", core=str(tiny_core_dir))
    with pytest.raises(BadName):
        hive.deploy("rg:chain_sum", "../../escaped", overrides=CHAIN)
    with pytest.raises(BadName, match="tenant name"):
        hive.deploy("rg:chain_sum", "sums", tenant="../other", overrides=CHAIN)
    with pytest.raises(BadName):
        hive.learn("rg:chain_sum", "../../escaped", steps=1, overrides=CHAIN, show_progress=False)
    with pytest.raises(BadName):
        hive.attempt("rg:chain_sum", "../../escaped", 1, overrides=CHAIN)
    assert hive.store.workers() == [] and hive.store.evals(None) == []
    assert sorted(p.name for p in (tmp_path / "a").rglob("*")) == ["b", "hive", "hive.db", "hive.db-shm", "hive.db-wal"]


def test_an_optimizer_checkpoint_round_trips_through_the_safe_reader(tmp_path):
    weights = torch.nn.Parameter(torch.ones(3))
    optimizer = torch.optim.AdamW([weights], lr=1e-3)
    weights.sum().backward()
    optimizer.step()
    generator = torch.Generator().manual_seed(7)
    write_tensors(tmp_path / "optimizer.pt", {"optimizers": {"rl": optimizer.state_dict()}, "generator": generator.get_state()})
    saved = read_tensors(tmp_path / "optimizer.pt")
    fresh = torch.optim.AdamW([torch.nn.Parameter(torch.ones(3))], lr=1e-3)
    fresh.load_state_dict(saved["optimizers"]["rl"])
    assert torch.equal(fresh.state_dict()["state"][0]["exp_avg"], optimizer.state_dict()["state"][0]["exp_avg"])
    assert torch.equal(saved["generator"], generator.get_state())


class _Planted:
    """What an attacker would put in a checkpoint: unpickling it calls `touch MARKER`."""

    def __init__(self, marker):
        self.marker = str(marker)

    def __reduce__(self):
        return os.system, (f"touch {self.marker}",)


def test_a_planted_checkpoint_that_would_run_code_is_refused_and_never_runs(tmp_path):
    marker, path = tmp_path / "ran", tmp_path / "optimizer.pt"
    buffer = io.BytesIO()
    torch.save({"optimizers": {"rl": _Planted(marker)}}, buffer)
    path.write_bytes(buffer.getvalue())
    with pytest.raises(UnsafeCheckpoint, match=r"refusing to read the checkpoint .*optimizer.pt.*system"):
        read_tensors(path)
    assert not marker.exists()
    path.write_bytes(b"not a checkpoint at all")
    with pytest.raises(UnsafeCheckpoint, match="it is not one apiary wrote"):
        read_tensors(path)
