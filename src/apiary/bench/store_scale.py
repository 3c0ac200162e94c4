"""The store at scale: synthetic episodes (10^5 and 10^6 by default, 10^7 with --huge) in SQLite and
PostgreSQL; for each, the time and peak memory of `apiary export --format parquet` and `apiary report`
(each in a fresh process, its peak RSS), and the episodes inserted per second by
1, 4 and 16 concurrent writers (processes, each through Store.add_episodes in groups of 8 with one
piece of feedback per group, as a learner and a server write).

    python -m apiary.bench.store_scale                  # 10^5 and 10^6, SQLite and a throwaway PostgreSQL
    python -m apiary.bench.store_scale --sizes 100000   # one size
    python -m apiary.bench.store_scale --huge           # adds 10^7 (hours, and tens of GB of disk)

PostgreSQL is a throwaway server started from the machine's binaries (bench.pg_server), or the empty
database at --postgres URL. Writes the "Store at scale" section of docs/benchmarks.md and
docs/store_scale.json. Rows are synthetic: a 300-character prompt, a short completion, one piece of
feedback per 100 episodes, four workers."""

from __future__ import annotations

import argparse
import io
import json
import multiprocessing
import os
import shlex
import subprocess
import sys
import tarfile
import tempfile
import time
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path

from sqlalchemy import insert, text

from apiary.store import schema
from apiary.store.feedback import make_feedback
from apiary.store.records import Episode, now
from apiary.store.store import Store

WORKERS = ("w0", "w1", "w2", "w3")
GROUP = 8  # episodes per insert: one learning step's group
FILL_BATCH = 20_000  # episodes per transaction while filling
PROMPT = "Calculate the sum of the numbers below and answer with the number only. " * 4


@dataclass
class Measured:
    """One store at one size: how long filling took, and export and report in a fresh process."""
    backend: str
    episodes: int
    fill_seconds: float
    database_mb: float
    export_seconds: float = 0.0
    export_peak_mb: float = 0.0
    report_seconds: float = 0.0
    report_peak_mb: float = 0.0
    export_imports_mb: float = 0.0  # peak RSS of the export process before it read anything (its imports)
    report_imports_mb: float = 0.0
    code: str = "this"  # "this": this checkout's code; "before": the older checkout given by --before


@dataclass
class Written:
    """What one concurrent writer wrote, and when it started and stopped writing."""
    episode_ids: list[int] = field(default_factory=list)
    feedback_ids: list[int] = field(default_factory=list)
    feedback_on: list[int] = field(default_factory=list)  # the episode each piece of feedback is on
    started: float = 0.0
    ended: float = 0.0


def synthetic(i: int) -> dict:
    """Episode number i as a row: a learner's rollout on one of four workers."""
    return {"job": "sums", "task_id": f"t{i % 5000}", "messages": [{"role": "user", "content": f"{PROMPT}{i} + {i % 7}"}],
            "completion": str(i + i % 7), "score": float(i % 3 == 0), "answer": str(i + i % 7), "origin": "rl",
            "worker": WORKERS[i % len(WORKERS)], "adapter_version": (i // 4096) % 8, "run_id": None, "step": i // 256,
            "created_at": now(), "tenant": None, "info": None}


def fill(store: Store, n: int) -> None:
    """Insert n synthetic episodes (and a reward on every 100th) in large transactions; on PostgreSQL by COPY."""
    for name in WORKERS:
        store.ensure_worker(name, "sums", "core", {"name": "sums", "scorer": "exact"})
    if store.engine.dialect.name == "postgresql":
        return copy_fill(store, n)
    ep, fb = schema.episodes, schema.feedback
    for start in range(0, n, FILL_BATCH):
        rows = [synthetic(i) for i in range(start, min(n, start + FILL_BATCH))]
        with store.engine.begin() as db:
            ids = list(db.execute(insert(ep).returning(ep.c.id, sort_by_parameter_order=True), rows).scalars())
            db.execute(insert(fb), [{"episode_id": i, "kind": "reward", "reward": 1.0, "by": "bench", "created_at": now()}
                                    for i in ids[::100]])


def copy_fill(store: Store, n: int) -> None:
    """fill() on PostgreSQL: the episodes by COPY (executemany INSERTs took over 40 minutes for 10^7), then a
    reward on the same episodes as fill()'s: the first of every 100."""
    ep = schema.episodes
    columns = [c.name for c in ep.columns if c.name != "id"]
    raw = store.engine.raw_connection()
    try:
        with raw.cursor() as cursor:
            for start in range(0, n, FILL_BATCH):
                with cursor.copy(f"COPY episodes ({', '.join(columns)}) FROM STDIN") as copy:
                    for i in range(start, min(n, start + FILL_BATCH)):
                        row = synthetic(i)
                        copy.write_row([json.dumps(row[c]) if c in ("messages", "info") and row[c] is not None
                                        else row[c] for c in columns])
                raw.commit()
            cursor.execute("INSERT INTO feedback (episode_id, kind, reward, \"by\", created_at) SELECT id, 'reward', 1.0, "
                           "'bench', created_at FROM episodes WHERE (id - (SELECT min(id) FROM episodes)) % 100 = 0")
        raw.commit()
    finally:
        raw.close()


def write_episodes(url: str | None, hive: str, writer: int, episodes: int) -> Written:
    """One concurrent writer: `episodes` episodes through Store.add_episodes, GROUP at a time, each group
    followed by a reward on its first episode (Store.add_feedback). Runs in its own process."""
    store = Store(hive, url)
    (Path(hive) / f"ready-{writer}").touch()
    while not (Path(hive) / "go").exists():  # all writers start together, once every one has started up
        time.sleep(0.005)
    done = Written(started=time.time())
    for start in range(0, episodes, GROUP):
        group = [Episode(job="sums", task_id=f"w{writer}-{start + k}", messages=[{"role": "user", "content": PROMPT}],
                         completion="1", score=1.0, origin="serve", adapter_version=0)
                 for k in range(min(GROUP, episodes - start))]
        ids = store.add_episodes(group)
        (feedback,) = store.add_feedback([make_feedback(ids[0], reward=1.0, by="bench")])
        done.episode_ids += ids
        done.feedback_ids.append(feedback.id)
        done.feedback_on.append(feedback.episode_id)
    done.ended = time.time()
    store.engine.dispose()
    return done


def write_concurrently(url: str | None, hive: str, writers: int, episodes: int) -> list[Written]:
    """`writers` processes writing `episodes` episodes between them, all at once."""
    Store(hive, url).engine.dispose()  # migrate once, before the writers race
    share = [episodes // writers + (k < episodes % writers) for k in range(writers)]
    with multiprocessing.get_context("spawn").Pool(writers) as pool:
        pending = pool.starmap_async(write_episodes, [(url, hive, k, share[k]) for k in range(writers)])
        while len(list(Path(hive).glob("ready-*"))) < writers and not pending.ready():
            time.sleep(0.01)
        (Path(hive) / "go").touch()
        return pending.get()


def insert_rate(url: str | None, hive: str, writers: int, episodes: int) -> float:
    """Episodes per second over the window in which the writers wrote."""
    written = write_concurrently(url, hive, writers, episodes)
    window = max(w.ended for w in written) - min(w.started for w in written)
    return sum(len(w.episode_ids) for w in written) / window


# Export or report in a fresh process, with whichever apiary is first on its path (this tree's, or an older
# checkout's for a before/after comparison): its seconds, its peak RSS and the RSS of its imports alone.
# Peak RSS is VmHWM: getrusage's ru_maxrss keeps the parent's peak across fork and exec.
CHILD = """
import json, sys, time
from pathlib import Path
def peak():
    return int(next(l for l in open("/proc/self/status") if l.startswith("VmHWM:")).split()[1]) / 1024
what, hive, url = sys.argv[1], sys.argv[2], sys.argv[3] or None
if what == "export":
    from apiary.store.export import export
else:
    from apiary.hive.report import write_report
from apiary.store.store import Store
imports = peak()
store = Store(hive, url)
started = time.perf_counter()
if what == "export":
    export(store, Path(hive) / "export", "parquet")
else:
    write_report(store, Path(hive) / "report")
print(json.dumps({"seconds": time.perf_counter() - started, "peak_mb": peak(), "imports_mb": imports}))
"""


def measure_child(what: str, url: str | None, hive: str, src: Path | None = None) -> dict:
    """`what` (export or report) of the store in a fresh process; `src`: another checkout's src/ to run instead."""
    env = os.environ | ({"PYTHONPATH": f"{src}{os.pathsep}{os.environ.get('PYTHONPATH', '')}"} if src else {})
    done = subprocess.run([sys.executable, "-c", CHILD, what, hive, url or ""], capture_output=True, text=True, env=env)
    if done.returncode != 0:
        raise RuntimeError(f"{what} failed: {done.stderr[-2000:]}")
    return json.loads(done.stdout.strip().splitlines()[-1])


def database_mb(store: Store) -> float:
    if store.engine.dialect.name == "sqlite":
        return sum(p.stat().st_size for p in store.root.glob("hive.db*")) / 1e6
    with store.engine.connect() as db:
        total = db.execute(text("SELECT sum(pg_total_relation_size(c.oid)) FROM pg_class c JOIN pg_namespace n "
                                "ON n.oid = c.relnamespace WHERE n.nspname = current_schema() AND c.relkind = 'r'"))
        return float(total.scalar_one()) / 1e6


def measure(backend: str, url: str | None, hive: str, n: int, before: Path | None = None) -> list[Measured]:
    """Fill a store with n episodes, then export and report it (and, with `before`, export and report it
    again with the code of that older checkout's src/)."""
    store = Store(hive, url)
    started = time.perf_counter()
    fill(store, n)
    filled = Measured(backend, n, time.perf_counter() - started, database_mb(store))
    store.engine.dispose()
    results = []
    for code, src in [("this", None)] + ([("before", before)] if before else []):
        export, report = measure_child("export", url, hive, src), measure_child("report", url, hive, src)
        results.append(replace(filled, code=code, export_seconds=export["seconds"], export_peak_mb=export["peak_mb"],
                               export_imports_mb=export["imports_mb"], report_seconds=report["seconds"],
                               report_peak_mb=report["peak_mb"], report_imports_mb=report["imports_mb"]))
    return results


def checkout_src(commit: str, into: Path) -> Path:
    """The src/ of `commit` of this checkout, unpacked into `into` (for the before/after comparison)."""
    root = Path(__file__).resolve().parents[3]
    archive = subprocess.run(["git", "-C", str(root), "archive", commit, "src"], capture_output=True, check=True).stdout
    with tarfile.open(fileobj=io.BytesIO(archive)) as tar:
        tar.extractall(into, filter="data")
    return into / "src"


def schema_url(base: str, name: str) -> str:
    """A fresh schema `name` on the PostgreSQL at `base` (dropped first if there), as a URL whose tables live there."""
    from sqlalchemy import create_engine
    from sqlalchemy.pool import NullPool

    engine = create_engine(base, isolation_level="AUTOCOMMIT", poolclass=NullPool)
    with engine.connect() as db:
        db.execute(text(f'DROP SCHEMA IF EXISTS "{name}" CASCADE'))
        db.execute(text(f'CREATE SCHEMA "{name}"'))
    return f"{base}{'&' if '?' in base else '?'}options=-csearch_path%3D{name}"


def run(sizes: list[int], writers: list[int], write_episodes_total: int, postgres: str | None,
        before: Path | None = None, stores: tuple[str, ...] = ("sqlite", "postgresql")) -> dict:
    """Every measurement on SQLite and on PostgreSQL (the throwaway server unless `postgres` names one), or on
    the `stores` named."""
    from apiary.bench import pg_server

    figures: dict = {"sizes": {}, "writers": {}, "skipped": {}}
    server = None
    if postgres is None and "postgresql" in stores:
        try:
            server = pg_server.start()
            postgres = server.url
        except pg_server.PostgresUnavailable as err:
            figures["skipped"]["postgresql"] = str(err)
    try:
        backends = ([("sqlite", lambda name: None)] if "sqlite" in stores else []) + (
            [("postgresql", lambda name: schema_url(postgres, name))] if postgres and "postgresql" in stores else [])
        for backend, url_for in backends:
            for n in sizes:
                with tempfile.TemporaryDirectory(prefix="apiary-scale-") as hive:
                    for m in measure(backend, url_for(f"scale_{n}"), hive, n, before):
                        figures["sizes"][f"{backend}:{n}:{m.code}"] = asdict(m)
                        print(json.dumps(asdict(m)), flush=True)
            for k in writers:
                with tempfile.TemporaryDirectory(prefix="apiary-writers-") as hive:
                    rate = insert_rate(url_for(f"writers_{k}"), hive, k, write_episodes_total)
                figures["writers"][f"{backend}:{k}"] = rate
                print(f"{backend}: {k} writer(s): {rate:.0f} episodes/s", flush=True)
    finally:
        if server is not None:
            server.stop()
    return figures


def section(figures: dict, command: str) -> str:
    from apiary.bench.report import machine

    lines = ["## Store at scale: export, report and concurrent writers", "",
             f"Command: `{command}` (rows of other runs, e.g. `--sizes 1000000` or `--huge`, are kept: "
             "docs/store_scale.json)",
             f"Machine: {machine()}. Synthetic episodes (a 300-character prompt, four workers, a reward on every 100th); "
             "PostgreSQL filled by COPY since 2026-12-02 (by INSERTs before: the fill times of its 10^5 and 10^6 rows); "
             "export (Parquet) and report each run in a fresh process, memory is its peak RSS "
             "(VmHWM; in brackets, that of its imports alone).", "",
             "| store | code | episodes | fill (s) | database (MB) | export (s) | export peak (MB) | report (s) | "
             "report peak (MB) |", "| --- | --- | --- | --- | --- | --- | --- | --- | --- |"]
    code = {"this": "streaming", "before": f"before ({figures.get('before', {}).get('commit')})"}
    for m in sorted(figures.get("sizes", {}).values(), key=lambda m: (m["backend"], m["episodes"], m["code"] != "before")):
        lines.append(f"| {m['backend']} | {code[m['code']]} | {m['episodes']:,} | {m['fill_seconds']:.1f} | {m['database_mb']:.0f} | "
                     f"{m['export_seconds']:.1f} | {m['export_peak_mb']:.0f} ({m['export_imports_mb']:.0f}) | "
                     f"{m['report_seconds']:.1f} | {m['report_peak_mb']:.0f} ({m['report_imports_mb']:.0f}) |")
    counts = sorted({int(key.split(":")[1]) for key in figures.get("writers", {})})
    lines += ["", "Episodes inserted per second by concurrent writers (processes; groups of 8 through "
              "`Store.add_episodes`, one reward per group through `Store.add_feedback`):", "",
              "| writers | sqlite | postgresql |", "| --- | --- | --- |"]
    for k in counts:
        rates = [figures["writers"].get(f"{b}:{k}") for b in ("sqlite", "postgresql")]
        lines.append(f"| {k} | " + " | ".join("-" if r is None else f"{r:.0f}" for r in rates) + " |")
    for backend, reason in figures.get("skipped", {}).items():
        lines += ["", f"{backend}: not measured ({reason})."]
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sizes", default="100000,1000000", help="comma-separated episode counts")
    parser.add_argument("--huge", action="store_true", help="add 10^7 episodes (hours; tens of GB of disk)")
    parser.add_argument("--writers", default="1,4,16", help="comma-separated numbers of concurrent writers ('': none)")
    parser.add_argument("--stores", default="sqlite,postgresql", help="comma-separated: sqlite, postgresql or both")
    parser.add_argument("--write-episodes", type=int, default=4096, help="episodes the writers insert between them")
    parser.add_argument("--postgres", default=None, help="a PostgreSQL URL to measure (default: a throwaway server)")
    parser.add_argument("--docs", type=Path, default=None, help="where benchmarks.md and store_scale.json go (default docs/)")
    parser.add_argument("--before", default=None,
                        help="a git commit of this checkout: export and report the same stores with its code too")
    args = parser.parse_args()
    from apiary.bench.report import DOCS, write_section

    sizes = [int(s) for s in args.sizes.split(",")] + ([10_000_000] if args.huge else [])
    with tempfile.TemporaryDirectory(prefix="apiary-before-") as scratch:
        before = checkout_src(args.before, Path(scratch)) if args.before else None
        stores = tuple(s.strip() for s in args.stores.split(",") if s.strip())
        if not stores or set(stores) - {"sqlite", "postgresql"}:
            parser.error(f"--stores names sqlite, postgresql or both, not {args.stores!r}")
        figures = run(sizes, [int(k) for k in args.writers.split(",") if k.strip()], args.write_episodes, args.postgres,
                      before, stores)
    figures["before"] = {"commit": args.before} if args.before else {}
    docs = args.docs or DOCS
    path = docs / "store_scale.json"
    merged = json.loads(path.read_text()) if path.exists() else {}
    for key in ("sizes", "writers", "skipped", "before"):
        merged[key] = merged.get(key, {}) | figures[key]
    path.write_text(json.dumps(merged, indent=1))
    write_section("Store at scale: export, report and concurrent writers",
                  section(merged, "python -m apiary.bench.store_scale " + shlex.join(sys.argv[1:])), docs)


if __name__ == "__main__":
    main()
