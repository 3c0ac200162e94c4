"""`apiary restore --force` replaces a hive atomically: a restore that fails or is killed at any moment
leaves the old hive or the new one, whole, and nothing that `apiary check --repair` (or the next open)
does not clear."""

import json
import subprocess
import sys

import pytest

from apiary.store import swap
from apiary.store.artifacts import write_dir
from apiary.store.backup import backup, restore
from apiary.store.check import LEFTOVER, check_hive
from apiary.store.records import AdapterVersion, Episode
from apiary.store.store import Store

MOVES = 8  # the swap's renames here: old part out and new part in for hive.db, adapters, checkpoints;
# cores and documents only in


def _hive(root, worker: str, episodes: int) -> None:
    """A hive with one worker, its episodes, a recorded adapter version and a checkpoint (closed: no log beside
    its database, so a swap makes exactly MOVES renames)."""
    store = Store(root)
    store.ensure_worker(worker, "chain_sum", "tiny", {})
    store.add_episodes([Episode(job="chain_sum", task_id=str(i), messages=[{"role": "user", "content": f"{i} + 1"}],
                                completion=str(i + 1), score=1.0, worker=worker) for i in range(episodes)])

    def fill(staging):
        (staging / "adapter_model.safetensors").write_text(f"weights of {worker}")
        return staging

    write_dir(store.adapter_dir(worker, 1), fill)
    store.add_adapter_version(AdapterVersion(worker=worker, version=1, parent=0, step=1,
                                             path=str(store.adapter_dir(worker, 1))), [])
    store.checkpoint_dir(worker).mkdir(parents=True)
    (store.checkpoint_dir(worker) / "state.json").write_text(json.dumps({"version": 1}))
    store.engine.dispose()


def _which(root) -> str:
    """Which whole hive `root` is: "old" or "new" (asserting it is one of them, whole and clean)."""
    store = Store(root)
    names = [w.name for w in store.workers()]
    assert names in (["old"], ["new"]), names
    name = names[0]
    assert store.count_episodes() == {"old": 5, "new": 3}[name]
    assert (store.adapter_dir(name, 1) / "adapter_model.safetensors").read_text() == f"weights of {name}"
    assert (store.checkpoint_dir(name) / "state.json").is_file()
    assert not (root / "adapters" / {"old": "new", "new": "old"}[name]).exists()  # nothing of the other hive
    report = check_hive(root)
    assert report.clean, report.findings
    assert not list(root.glob(".restore.*"))
    store.engine.dispose()
    return name


@pytest.fixture
def hives(tmp_path):
    """An old hive to be replaced (5 episodes) and a backup of another one (3 episodes)."""
    _hive(tmp_path / "new", "new", 3)
    backup(tmp_path / "new", tmp_path / "new.tar.gz")
    _hive(tmp_path / "old", "old", 5)
    return tmp_path / "old", tmp_path / "new.tar.gz"


def test_a_restore_that_fails_midway_rolls_back_to_the_old_hive_with_all_its_rows(hives, monkeypatch):
    old, archive = hives
    moves, move = [], swap._move

    def fail_after_two(source, target):
        if len(moves) == 2:  # hive.db is swapped, the adapters are not
            raise OSError("disk full")
        moves.append(source)
        move(source, target)

    monkeypatch.setattr(swap, "_move", fail_after_two)
    with pytest.raises(OSError, match="disk full"):
        restore(archive, old, force=True)
    assert len(moves) == 2
    assert _which(old) == "old"


def test_a_corrupt_backup_is_refused_before_the_old_hive_is_touched(hives, tmp_path):
    old, archive = hives
    (tmp_path / "cut.tar.gz").write_bytes(archive.read_bytes()[: archive.stat().st_size // 2])
    with pytest.raises(ValueError, match="not a readable backup"):
        restore(tmp_path / "cut.tar.gz", old, force=True)
    assert _which(old) == "old"
    restore(archive, old, force=True)
    assert _which(old) == "new"


KILL = """
import os, sys
from pathlib import Path
from apiary.store import backup, swap
point, moves, move = int(sys.argv[1]), [], swap._move
def killed_after(source, target):
    if len(moves) == point:
        os._exit(9)
    moves.append(source)
    move(source, target)
swap._move = killed_after
if point < 0:  # killed while the backup is checked, before the swap is committed
    backup._repoint = lambda *_: os._exit(9)
backup.restore(Path(sys.argv[2]), Path(sys.argv[3]), force=True)
"""


def test_a_restore_killed_at_any_moment_leaves_the_old_or_the_new_hive_whole(hives, tmp_path):
    old, archive = hives
    seen = []
    for point in range(-1, MOVES + 1):
        hive = tmp_path / f"hive{point}"
        _hive(hive, "old", 5)
        done = subprocess.run([sys.executable, "-c", KILL, str(point), str(archive), str(hive)], capture_output=True,
                              text=True)
        assert done.returncode == (0 if point == MOVES else 9), done.stderr
        left = swap.interrupted(hive)
        assert len(left) == (point != MOVES) and all(committed == (point >= 0) for _, committed in left)
        if left:  # check names it; repair (as any open would) finishes or removes it
            assert any(f.level == LEFTOVER and ".restore." in f.what for f in check_hive(hive).findings)
            assert check_hive(hive, repair=True).repaired == [str(left[0][0])]
        seen.append(_which(hive))
    assert seen == ["old"] + ["new"] * (MOVES + 1)  # committed: finished as the new hive, whatever the moment


def test_opening_a_hive_finishes_a_restore_killed_mid_swap(hives, tmp_path):
    old, archive = hives
    done = subprocess.run([sys.executable, "-c", KILL, "3", str(archive), str(old)], capture_output=True, text=True)
    assert done.returncode == 9, done.stderr
    store = Store(old)
    assert [w.name for w in store.workers()] == ["new"]  # the open rolled the swap forward
    store.engine.dispose()
    assert _which(old) == "new"


def test_a_swap_whose_roll_back_fails_too_is_kept_and_finished_by_the_next_open(hives, monkeypatch):
    old, archive = hives
    move = swap._move

    def fail_once(source, target):
        monkeypatch.setattr(swap, "_move", move)  # the next rename works again
        raise OSError("disk full")

    def no_roll_back(*_):
        raise OSError("still full")

    monkeypatch.setattr(swap, "_move", fail_once)
    monkeypatch.setattr(swap, "_roll_back", no_roll_back)
    with pytest.raises(OSError, match="disk full"):
        restore(archive, old, force=True)
    assert [committed for _, committed in swap.interrupted(old)] == [True]  # not removed: it holds the hive's parts
    assert _which(old) == "new"  # the open finished the committed swap
