"""`apiary check`, backup and restore: a hive's rows against its artifacts, checksums recorded at write
time, leftovers of a kill, and a backup that restores to a hive that checks clean and shows the same status."""

import json
import shutil

import pytest
from typer.testing import CliRunner

from apiary.cli import app
from apiary.hive.status import status
from apiary.jobs.documents import Document
from apiary.store.artifacts import MANIFEST, write_dir
from apiary.store.backup import backup, restore
from apiary.store.check import DAMAGE, LEFTOVER, NOTE, check_hive
from apiary.store.documents import add_documents, added_dir
from apiary.store.records import AdapterVersion, CoreVersion
from apiary.store.store import Store

runner = CliRunner()
CHAIN = ["rg:chain_sum", "min_terms=2", "max_terms=2", "min_digits=1", "max_digits=1", "heldout_size=4"]


def _fill(text):
    def fill(staging):
        (staging / "adapter_model.safetensors").write_text(text)
        (staging / "adapter_config.json").write_text("{}")
        return staging
    return fill


def _small_hive(root, url=None):
    """Two adapter versions of one worker (v2 live) and a released core version, written as apiary writes them."""
    store = Store(root, url)
    store.ensure_worker("arith", "chain_sum", "tiny", {})
    for version in (1, 2):
        write_dir(store.adapter_dir("arith", version), _fill(f"weights {version}"))
        store.add_adapter_version(AdapterVersion(worker="arith", version=version, parent=version - 1, step=version,
                                                 path=str(store.adapter_dir("arith", version)), final=version == 2), [])
        store.release_worker("arith", version, "gate")
    write_dir(store.core_dir(1), _fill("core 1"))
    store.add_core_version(CoreVersion(version=1, parent=0, method="linear", path=str(store.core_dir(1)),
                                       sources=[{"worker": "arith", "adapter_version": 2}], details={}))
    store.release(1)
    return store


def _levels(report):
    return [f.level for f in report.findings]


def test_an_artifact_directory_carries_the_checksums_of_its_files_written_with_it(tmp_path):
    write_dir(tmp_path / "v1", _fill("w"))
    manifest = json.loads((tmp_path / "v1" / MANIFEST).read_text())["sha256"]
    assert set(manifest) == {"adapter_model.safetensors", "adapter_config.json"}


def test_a_clean_hive_checks_clean(tmp_path, store_url):
    _small_hive(tmp_path / "hive", store_url)
    report = check_hive(tmp_path / "hive", url=store_url)
    assert report.clean and report.findings == [] and report.artifacts == 3


def test_a_deleted_artifact_of_a_postgresql_store_is_found_too(tmp_path, postgres):
    url = postgres.schema_url("check_deleted")
    _small_hive(tmp_path / "hive", url)
    shutil.rmtree(tmp_path / "hive" / "adapters" / "arith" / "v1")
    report = check_hive(tmp_path / "hive", url=url)
    assert DAMAGE in _levels(report) and "adapter version 1 of worker arith is missing" in report.findings[0].what


def test_check_notes_an_old_hive_without_a_schema_revision_and_refuses_one_a_newer_apiary_wrote(tmp_path):
    from sqlalchemy import text

    store = _small_hive(tmp_path / "hive")
    with store.engine.begin() as db:
        db.execute(text("DROP TABLE alembic_version"))
    assert "no schema revision" in check_hive(tmp_path / "hive").findings[0].what
    Store(tmp_path / "hive")  # opening it stamps it again
    with store.engine.begin() as db:
        db.execute(text("UPDATE alembic_version SET version_num = '9999'"))
    report = check_hive(tmp_path / "hive")
    assert not report.clean and "revision 9999, which this apiary does not know" in report.findings[0].what


def test_a_corrupted_adapter_file_is_found_by_its_checksum_with_a_rollback_to_repair_it(tmp_path):
    store = _small_hive(tmp_path / "hive")
    (store.adapter_dir("arith", 2) / "adapter_model.safetensors").write_text("weights 2, one bit flipped")
    report = check_hive(tmp_path / "hive")
    assert not report.clean and _levels(report) == [DAMAGE]
    assert "does not match the checksum" in report.findings[0].what
    assert "apiary rollback 1 --worker arith" in report.findings[0].repair


def test_a_deleted_artifact_is_found_and_a_core_in_the_current_lineage_is_rolled_back(tmp_path):
    store = _small_hive(tmp_path / "hive")
    shutil.rmtree(store.core_dir(1))
    report = check_hive(tmp_path / "hive")
    assert _levels(report) == [DAMAGE] and "core version 1 is missing" in report.findings[0].what
    assert "apiary rollback 0" in report.findings[0].repair


def test_an_orphaned_staging_dir_and_an_unrecorded_version_are_found_and_repair_removes_them(tmp_path):
    store = _small_hive(tmp_path / "hive")
    staging = store.adapter_dir("arith", 3).with_name(".v3.abc123")  # a kill inside write_dir
    staging.mkdir()
    write_dir(store.adapter_dir("arith", 3), _fill("never recorded"))  # a kill before the row was added
    report = check_hive(tmp_path / "hive")
    assert _levels(report) == [LEFTOVER, LEFTOVER] and not report.clean
    repaired = check_hive(tmp_path / "hive", repair=True)
    assert repaired.clean and sorted(repaired.repaired) == sorted([str(staging), str(store.adapter_dir("arith", 3))])
    assert not staging.exists() and not store.adapter_dir("arith", 3).exists() and store.adapter_dir("arith", 2).exists()


def test_an_artifact_written_before_checksums_existed_is_a_note_not_an_error(tmp_path):
    store = _small_hive(tmp_path / "hive")
    (store.adapter_dir("arith", 1) / MANIFEST).unlink()
    report = check_hive(tmp_path / "hive")
    assert report.clean and _levels(report) == [NOTE] and "no checksum recorded" in report.findings[0].what


def test_a_planted_optimizer_checkpoint_is_damage_and_never_runs(tmp_path):
    store = _small_hive(tmp_path / "hive")
    store.checkpoint_dir("arith").mkdir(parents=True)
    (store.checkpoint_dir("arith") / "optimizer.pt").write_bytes(b"not a checkpoint")
    report = check_hive(tmp_path / "hive")
    assert _levels(report) == [DAMAGE] and "optimizer.pt" in report.findings[0].repair


def test_backup_then_restore_round_trips_the_status_added_documents_and_checks_clean(tmp_path):
    store = _small_hive(tmp_path / "hive")
    store.checkpoint_dir("arith").mkdir(parents=True)
    (store.checkpoint_dir("arith") / "state.json").write_text(json.dumps({"version": 2}))
    add_documents(store.root, "arith", [Document("rooms.md", "Room Zanthe-4 is the library.")])
    result = backup(tmp_path / "hive", tmp_path / "backup.tar.gz")
    assert result.adapters == 2 and result.cores == 1
    restore(tmp_path / "backup.tar.gz", tmp_path / "elsewhere" / "hive")
    restored = Store(tmp_path / "elsewhere" / "hive")
    assert check_hive(restored.root).clean
    assert ({k: v for k, v in status(restored).items() if k != "hive"} == {k: v for k, v in status(store).items() if k != "hive"})
    assert restored.adapter_versions("arith")[1].path == str(restored.adapter_dir("arith", 2).resolve())
    assert (restored.checkpoint_dir("arith") / "state.json").is_file()
    assert (added_dir(restored.root, "arith") / "rooms.md").read_text() == "Room Zanthe-4 is the library."


def test_restore_refuses_a_hive_that_is_not_empty_unless_forced(tmp_path):
    _small_hive(tmp_path / "hive")
    backup(tmp_path / "hive", tmp_path / "backup.tar.gz")
    other = Store(tmp_path / "other")
    other.ensure_worker("someone", "job", "tiny", {})
    with pytest.raises(ValueError, match="not empty"):
        restore(tmp_path / "backup.tar.gz", tmp_path / "other")
    assert Store(tmp_path / "other").worker("someone") is not None
    restore(tmp_path / "backup.tar.gz", tmp_path / "other", force=True)
    assert [w.name for w in Store(tmp_path / "other").workers()] == ["arith"] and check_hive(tmp_path / "other").clean


def test_a_postgresql_store_is_left_to_pg_dump(tmp_path):
    with pytest.raises(ValueError, match="pg_dump"):
        backup(tmp_path, tmp_path / "b.tar.gz", url="postgresql://localhost/apiary")


def test_a_file_that_is_not_a_backup_is_refused_and_nothing_is_written(tmp_path):
    (tmp_path / "junk.tar.gz").write_bytes(b"junk")
    with pytest.raises(ValueError, match="not a readable backup"):
        restore(tmp_path / "junk.tar.gz", tmp_path / "hive")
    assert list((tmp_path / "hive").iterdir()) == []


def test_cli_learn_check_backup_restore_status(tmp_path, tiny_core_dir):
    """A hive `learn` wrote checks clean; corrupting it exits 1; its backup restores to a clean hive with the same status."""
    hive, copy = tmp_path / "hive", tmp_path / "copy"

    def invoke(*args):
        return runner.invoke(app, [str(a) for a in args])

    assert invoke("learn", *CHAIN, "--worker", "arith", "--steps", "1", "--prompts", "2", "--samples", "2",
                  "--max-new-tokens", "3", "--hive", hive, "--core", tiny_core_dir, "--json").exit_code == 0
    result = invoke("check", "--hive", hive, "--json")
    assert result.exit_code == 0, result.output
    assert json.loads(result.stdout)["clean"] and json.loads(result.stdout)["findings"] == []
    assert invoke("backup", tmp_path / "b.tar.gz", "--hive", hive, "--json").exit_code == 0
    assert invoke("restore", tmp_path / "b.tar.gz", "--hive", hive, "--json").exit_code == 2  # not empty
    assert invoke("restore", tmp_path / "b.tar.gz", "--hive", copy, "--json").exit_code == 0
    assert invoke("check", "--hive", copy).exit_code == 0
    before, after = (json.loads(invoke("status", "--hive", h, "--json").stdout) for h in (hive, copy))
    assert before | {"hive": ""} == after | {"hive": ""}
    (Store(copy).adapter_dir("arith", 1) / "adapter_model.safetensors").write_bytes(b"\0")
    result = invoke("check", "--hive", copy)
    assert result.exit_code == 1 and "does not match the checksum" in " ".join(result.output.split())


def test_a_moved_hive_loads_its_core_versions_from_its_own_directory(tmp_path, tiny_core_dir, random_adapter):
    """Rows keep the path a core version was written at; a hive moved (or restored) elsewhere reads its own copy."""
    from apiary.hive.cores import Cores

    store = Store(tmp_path / "moved")
    random_adapter(store.core_dir(1), seed=1)
    store.add_core_version(CoreVersion(version=1, parent=0, method="linear", path=str(tmp_path / "gone" / "cores" / "v1"),
                                       sources=[], details={}))
    assert Cores(store, str(tiny_core_dir)).at(1).version == 1



def test_a_store_killed_while_being_made_checks_without_damage_and_the_next_open_completes_it(tmp_path):
    """Found by the kill trials of `apiary learn`: killed after hive.db was created, before its tables were, the
    hive made `apiary check` fail with "no such table: workers". An empty store holds no rows, so nothing is lost."""
    import sqlite3

    root = tmp_path / "hive"
    root.mkdir()
    sqlite3.connect(root / "hive.db").close()  # the file, no tables
    report = check_hive(root)
    assert report.clean and DAMAGE not in _levels(report) and report.artifacts == 0
    Store(root).engine.dispose()  # any command that opens the hive makes its tables
    assert check_hive(root).findings == []
