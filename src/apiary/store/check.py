"""`apiary check`: is a hive whole? Store rows against artifacts, checksums, leftovers, the schema.

What it looks at, read-only unless asked to repair:
- the database file: SQLite's own integrity and foreign-key checks, and its tables and columns against
  this apiary's schema (an older hive lacks newer columns: a note, any command that opens it adds them);
- every row that names an artifact (adapter versions, core versions): the directory apiary reads for it
  exists, stays inside the hive, and its files match the sha256 recorded in its MANIFEST.json when it
  was written (a directory written before manifests existed: a note, "no checksum recorded");
- what no row points at: staging directories and temporary files a kill left behind (`.NAME.*`), and
  version directories written but never recorded (a run killed between saving and recording);
- each worker's checkpoint: state.json readable, optimizer.pt readable without unpickling objects;
- with an artifact URL (store.remote): every recorded version published there (its manifest present); a
  version this node has not fetched yet is not missing here;
- a restore killed midway (`.restore.*`, store.swap): repair finishes its swap or removes its staging.

Each finding says how to repair it. `repair=True` does the safe repairs only: it removes what no row
points at (run it while nothing else writes to the hive: a running `learn` may be mid-write), and publishes
again a version whose publish was cut off, from this hive's copy if that copy is whole.
"""

from __future__ import annotations

import json
import re
import shutil
from dataclasses import dataclass, field
from pathlib import Path

from sqlalchemy import create_engine, inspect, select, text

from apiary.store import migrations, schema
from apiary.store.artifacts import MANIFEST, file_sha256, read_json, read_tensors, recorded_checksums
from apiary.store.names import inside
from apiary.store.swap import finish_interrupted, interrupted

DAMAGE, LEFTOVER, NOTE = "damage", "leftover", "note"  # damage and leftovers make a check fail; notes do not
VERSION_DIR = re.compile(r"v(\d+)")


@dataclass(frozen=True)
class Finding:
    """One thing found: how bad (damage, leftover or note), what, and how to repair it."""
    level: str
    what: str
    repair: str = ""
    path: str | None = None
    removable: bool = False  # a leftover that `repair=True` removes


@dataclass
class CheckReport:
    hive: str
    artifacts: int = 0  # artifact directories whose rows were checked
    findings: list[Finding] = field(default_factory=list)
    repaired: list[str] = field(default_factory=list)  # paths removed by the safe repairs

    @property
    def clean(self) -> bool:
        return not any(f.level in (DAMAGE, LEFTOVER) for f in self.findings)


@dataclass
class Recorded:
    """What the store's rows say exists, read once."""
    adapters: dict[tuple[str, int], str] = field(default_factory=dict)  # (worker, version) -> recorded path
    cores: dict[int, tuple[int, str]] = field(default_factory=dict)  # version -> (parent, recorded path)
    workers: set[str] = field(default_factory=set)
    live: dict[str, int] = field(default_factory=dict)  # worker -> live adapter version
    released: dict[str, set[int]] = field(default_factory=dict)  # worker -> versions ever live
    current_core: int = 0
    released_cores: set[int] = field(default_factory=set)


def check_hive(root: Path, repair: bool = False, url: str | None = None, artifacts: str | None = None) -> CheckReport:
    """Check the hive at `root` (its store: `root/hive.db`, or the database at `url`; its artifacts also
    published at the URL `artifacts`); see the module doc."""
    report = CheckReport(hive=str(root))
    if repair:
        report.repaired += finish_interrupted(root)
    report.findings += _restores(root)
    database = root / "hive.db"
    if url is None and not database.is_file():
        report.findings.append(Finding(DAMAGE, f"no hive.db in {root}", "point --hive at a hive, or restore one from a "
                                       "backup (`apiary restore BACKUP --hive DIR`)", str(database)))
        return report
    engine = create_engine(url or f"sqlite:///{database}")
    try:
        report.findings += _check_database(engine)
        recorded = read_rows(engine)
    finally:
        engine.dispose()
    shared = None
    if artifacts:
        from apiary.store.remote import open_shared  # fsspec only for a hive that shares its artifacts

        shared = open_shared(artifacts, probe=False)
    for (worker, version), path in sorted(recorded.adapters.items()):
        if shared is None or (root / "adapters" / worker / f"v{version}").is_dir():  # else: not fetched here yet
            report.findings += _check_adapter(root, recorded, worker, version, path)
    for version in sorted(recorded.cores):
        if shared is None or (root / "cores" / f"v{version}").is_dir():
            report.findings += _check_core(root, recorded, version)
    report.artifacts = len(recorded.adapters) + len(recorded.cores)
    if shared is not None:
        report.findings += _check_published(root, shared, recorded, repair)
    report.findings += _leftovers(root, recorded) + _check_checkpoints(root, recorded)
    if repair:
        _repair(report)
    return report


def _check_database(engine) -> list[Finding]:
    found = _check_sqlite_file(engine) if engine.dialect.name == "sqlite" else []
    inspector = inspect(engine)
    tables = set(inspector.get_table_names())
    found += _check_revision(engine, tables)
    for table in schema.metadata.sorted_tables:
        if table.name not in tables:
            found.append(Finding(NOTE, f"table {table.name} is missing (a hive made by an older apiary)",
                                 "any apiary command that opens the hive (e.g. `apiary status`) creates it"))
            continue
        present = {c["name"] for c in inspector.get_columns(table.name)}
        missing = [c.name for c in table.columns if c.name not in present]
        if missing:
            found.append(Finding(NOTE, f"table {table.name} lacks the column(s) {', '.join(missing)} (a hive made by an "
                                 "older apiary)", "any apiary command that opens the hive (e.g. `apiary status`) adds them"))
    for name in sorted(tables - set(schema.metadata.tables) - {"alembic_version"}):
        found.append(Finding(NOTE, f"table {name} is not one this apiary knows (a newer apiary?)", "none needed"))
    return found


def _check_sqlite_file(engine) -> list[Finding]:
    """SQLite's own integrity and foreign-key checks (a PostgreSQL server checks its own)."""
    found = []
    with engine.connect() as db:
        problems = [r[0] for r in db.execute(text("PRAGMA integrity_check"))]
        broken_links = db.execute(text("PRAGMA foreign_key_check")).all()
    if problems != ["ok"]:
        found.append(Finding(DAMAGE, f"the database file is damaged: {'; '.join(problems[:3])}",
                             "restore the hive from a backup (`apiary restore BACKUP --hive DIR --force`)"))
    for row in broken_links[:5]:
        found.append(Finding(DAMAGE, f"row {row[1]} of table {row[0]} points at a missing row of {row[2]}",
                             "restore the hive from a backup (`apiary restore BACKUP --hive DIR --force`)"))
    return found


def _check_revision(engine, tables: set[str]) -> list[Finding]:
    """The store's schema revision against the newest this apiary knows."""
    revision = migrations.current(engine)
    if revision == migrations.head() or not tables:
        return []
    if revision is None:
        return [Finding(NOTE, "the store has no schema revision (a hive made before apiary used Alembic)",
                        "any apiary command that opens the hive (e.g. `apiary status`) migrates it in place")]
    if revision in migrations.known():
        return [Finding(NOTE, f"the store is at schema revision {revision}, this apiary's newest is {migrations.head()}",
                        "any apiary command that opens the hive (e.g. `apiary status`) migrates it")]
    return [Finding(DAMAGE, f"the store is at schema revision {revision}, which this apiary does not know (a newer apiary "
                    "wrote it)", "upgrade apiary to open this hive")]


def read_rows(engine) -> Recorded:
    """The rows that name artifacts, and which versions are live or released. A table the database lacks holds
    no rows: a hive made by an older apiary, or a store killed while it was being made (the file created, the
    tables not yet), which the next command that opens the hive completes."""
    av, cv, wr, rel, w = (schema.adapter_versions, schema.core_versions, schema.worker_releases, schema.releases,
                          schema.workers)
    found, tables = Recorded(), set(inspect(engine).get_table_names())

    def rows(query, table):
        return db.execute(query).all() if table.name in tables else []

    with engine.connect() as db:
        found.workers = {r.name for r in rows(select(w.c.name), w)}
        found.adapters = {(r.worker, r.version): r.path for r in rows(select(av.c.worker, av.c.version, av.c.path), av)}
        found.cores = {r.version: (r.parent, r.path) for r in rows(select(cv.c.version, cv.c.parent, cv.c.path), cv)}
        for r in rows(select(wr.c.worker, wr.c.adapter_version).order_by(wr.c.id), wr):
            found.live[r.worker] = r.adapter_version
            found.released.setdefault(r.worker, set()).add(r.adapter_version)
        for r in rows(select(rel.c.core_version).order_by(rel.c.id), rel):
            found.current_core = r.core_version
            found.released_cores.add(r.core_version)
    for worker in found.workers - set(found.live):  # no release row yet: its latest version is live
        found.live[worker] = max((v for (name, v) in found.adapters if name == worker), default=0)
    return found


def _check_adapter(root: Path, recorded: Recorded, worker: str, version: int, path: str) -> list[Finding]:
    label = f"adapter version {version} of worker {worker}"
    if recorded.live.get(worker) == version:
        good = [v for v in sorted(recorded.released.get(worker, set()) | {0}, reverse=True) if v < version
                and (v == 0 or _intact(root / "adapters" / worker / f"v{v}"))]
        fix = (f"it is live: roll the worker back to version {good[0]} (`apiary rollback {good[0]} --worker {worker}`), "
               "or restore the hive from a backup")
    else:
        fix = "it is not live: restore the hive from a backup before rolling back to it or learning on from it"
    return _check_dir(root, ("adapters", worker, f"v{version}"), path, label, fix)


def _check_core(root: Path, recorded: Recorded, version: int) -> list[Finding]:
    label = f"core version {version}"
    broken = {v for v in recorded.cores if version in _lineage(recorded, v)}
    if recorded.current_core in broken:
        good = max((v for v in recorded.released_cores | {0} if v not in broken), default=0)
        fix = f"it is in the current core's lineage: roll the core back to version {good} (`apiary rollback {good}`)"
    else:
        fix = "it is not current: restore the hive from a backup before rolling back to it"
    return _check_dir(root, ("cores", f"v{version}"), recorded.cores[version][1], label, fix)


def _check_published(root: Path, shared, recorded: Recorded, repair: bool) -> list[Finding]:
    """Every recorded version's manifest under the artifact URL (`shared`, a store.remote.SharedArtifacts):
    without it no other node trusts that version. `repair` publishes it again from this hive's whole copy."""
    found = []
    keys = [(f"adapters/{w}/v{v}", f"adapter version {v} of worker {w}") for w, v in sorted(recorded.adapters)]
    for key, label in keys + [(f"cores/v{v}", f"core version {v}") for v in sorted(recorded.cores)]:
        if shared.manifest(key) is not None:
            continue
        local = root / key
        if repair and _intact(local) and recorded_checksums(local) is not None:
            shared.publish(local, key)
            continue
        found.append(Finding(DAMAGE, f"{label} is recorded but not published at {shared.shown(key)}: its {MANIFEST} is "
                             "missing there (a publish cut off), so no other node trusts it",
                             "run `apiary check --repair` on the node whose hive has it whole (it publishes it again)",
                             shared.shown(key)))
    return found


def _lineage(recorded: Recorded, version: int) -> set[int]:
    seen = set()
    while version in recorded.cores and version not in seen:
        seen.add(version)
        version = recorded.cores[version][0]
    return seen


def _check_dir(root: Path, parts: tuple[str, ...], recorded_path: str, label: str, fix: str) -> list[Finding]:
    """The directory apiary reads for a row: inside the hive, present, and matching its manifest."""
    try:
        directory = inside(root, root.joinpath(*parts))
    except ValueError as err:
        return [Finding(DAMAGE, f"{label}: {err}", "remove the row by restoring a backup made before it")]
    found = []
    if Path(recorded_path).resolve() != directory.resolve():
        found.append(Finding(NOTE, f"{label} was recorded at {recorded_path}; apiary reads {directory} (a moved or "
                             "restored hive)", "none needed", str(directory)))
    if not directory.is_dir():
        return found + [Finding(DAMAGE, f"{label} is missing: {directory}", fix, str(directory))]
    try:
        expected = recorded_checksums(directory)
    except (ValueError, KeyError, TypeError):
        return found + [Finding(DAMAGE, f"{label}: its {MANIFEST} is unreadable", fix, str(directory / MANIFEST))]
    if expected is None:
        return found + [Finding(NOTE, f"{label}: no checksum recorded (written before apiary recorded them)",
                                "none needed", str(directory))]
    for name, digest in expected.items():
        file = directory / name
        if not file.is_file():
            found.append(Finding(DAMAGE, f"{label}: the file {name} is missing", fix, str(file)))
        elif file_sha256(file) != digest:
            found.append(Finding(DAMAGE, f"{label}: {name} does not match the checksum recorded when it was written",
                                 fix, str(file)))
    return found


def _intact(directory: Path) -> bool:
    """Whether a version one could roll back to is whole (for the repair advice)."""
    return directory.is_dir() and not any(f.level == DAMAGE for f in _check_dir(directory.parent, (directory.name,),
                                                                                     str(directory), "", ""))


def _leftovers(root: Path, recorded: Recorded) -> list[Finding]:
    """Directories under adapters/ and cores/ that no row points at."""
    found = []
    places = [(root / "cores", lambda v: v in recorded.cores, "core version {v}")]
    adapters = root / "adapters"
    if adapters.is_dir():
        for worker_dir in sorted(p for p in adapters.iterdir() if p.is_dir()):
            places.append((worker_dir, lambda v, w=worker_dir.name: (w, v) in recorded.adapters,
                           f"adapter version {{v}} of worker {worker_dir.name}"))
    for folder, is_recorded, label in places:
        if not folder.is_dir():
            continue
        for entry in sorted(folder.iterdir()):
            match = VERSION_DIR.fullmatch(entry.name)
            if entry.name.startswith("."):
                found.append(Finding(LEFTOVER, f"{entry} is a staging leftover of an interrupted write (a kill)",
                                     f"remove it (`rm -r {entry}`, or `apiary check --repair`)", str(entry), True))
            elif match and not is_recorded(int(match.group(1))):
                found.append(Finding(LEFTOVER, f"{label.format(v=match.group(1))} was written but never recorded (a run "
                                     f"killed between saving and recording it): {entry}",
                                     "remove it (`apiary check --repair`); the next run writes over it anyway", str(entry), True))
    return found


def _restores(root: Path) -> list[Finding]:
    """What a restore killed midway left: a swap to finish, or a staging directory to remove."""
    return [Finding(LEFTOVER, f"a restore was killed while swapping in its parts: {d}" if committed else
                    f"{d} is the staging directory of a restore killed before it changed the hive",
                    "`apiary check --repair`, or any command that opens the hive, " +
                    ("finishes the swap (the hive becomes the restored one)" if committed else "removes it"), str(d))
            for d, committed in interrupted(root)]


def _check_checkpoints(root: Path, recorded: Recorded) -> list[Finding]:
    """Each worker's resume point: temporary files a kill left, state.json, optimizer.pt."""
    found, checkpoints = [], root / "checkpoints"
    for directory in sorted(p for p in checkpoints.iterdir() if p.is_dir()) if checkpoints.is_dir() else []:
        def fresh(name: str, directory: Path = directory) -> str:
            return f"delete it: the worker's next run starts its optimizer afresh (`rm {directory / name}`)"
        for entry in sorted(directory.iterdir()):
            if entry.name.startswith("."):
                found.append(Finding(LEFTOVER, f"{entry} is a temporary file of an interrupted write (a kill)",
                                     "remove it (`apiary check --repair`)", str(entry), True))
        state, optimizer = directory / "state.json", directory / "optimizer.pt"
        if state.is_file():
            try:
                version = int(read_json(state).get("version", 0))
            except (ValueError, TypeError, AttributeError):
                found.append(Finding(DAMAGE, f"{state} is unreadable", fresh("state.json"), str(state)))
            else:
                if version and (directory.name, version) not in recorded.adapters:
                    found.append(Finding(NOTE, f"{state} names adapter version {version} of {directory.name}, which is "
                                         "not recorded", "none needed: a resumed run starts from the latest recorded version"))
        if optimizer.is_file():
            try:
                read_tensors(optimizer)
            except Exception as err:  # noqa: BLE001  (whatever torch raises on a bad file: the check reports it, not crash)
                found.append(Finding(DAMAGE, f"{optimizer} is unreadable: {str(err).splitlines()[0][:200]}",
                                     fresh("optimizer.pt"), str(optimizer)))
    return found


def _repair(report: CheckReport) -> None:
    """The safe repairs: remove what no row points at. What is removed leaves the findings."""
    kept = []
    for finding in report.findings:
        if not finding.removable:
            kept.append(finding)
            continue
        path = Path(finding.path)
        if path.is_dir() and not path.is_symlink():
            shutil.rmtree(path)
        else:
            path.unlink(missing_ok=True)
        report.repaired.append(str(path))
    report.findings = kept


def report_json(report: CheckReport) -> str:
    return json.dumps({"hive": report.hive, "clean": report.clean, "artifacts": report.artifacts,
                       "findings": [f.__dict__ for f in report.findings], "repaired": report.repaired})
