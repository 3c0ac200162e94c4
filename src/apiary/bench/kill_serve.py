"""Kills from outside: `apiary serve` SIGKILLed while it takes feedback, learns from it and swaps adapters.

Each trial deploys a worker (chain_sum) on a fresh hive, starts `apiary serve` on it (a subprocess,
background learning on, a learning run for every 2 new pieces of feedback) and sends it chats and
feedback over HTTP from a thread, recording the id of every piece of feedback the server acknowledged
(HTTP 200). The kill comes at a seeded moment aimed, in turn, at:
- "learning run": a seeded delay after a learning run appears in the store;
- "swap": a seeded delay (under the swap interval) after an adapter version is recorded, while the gate
  releases it and the server swaps it in;
- "feedback": a seeded delay after the server is ready, while feedback flows.
What it was doing is read from the store and the server's log after the kill. Then (bench/kill_trials.py)
`apiary check` and its safe repair; the server is restarted on the same hive, must answer a chat, and an
interrupted learning run must be resumed or marked interrupted (no run left "running") before it is
stopped. Items lost: acknowledged feedback, episodes and adapter versions recorded before the kill
that are gone after the restart, plus any damage the check finds then.

Run: python -m apiary.bench.kills --command serve [--trials 20] [--seed 0] [--docs].
"""

from __future__ import annotations

import random
import re
import sqlite3
import subprocess
import threading
import time
from pathlib import Path

import httpx

from apiary.bench.kill_trials import (KillReport, Trial, apiary, check_after_kill, damage, free_port, kill, scratch,
                                      summarise, tiny_core)
from apiary.store.store import Store

TITLE = "Kills from outside: apiary serve"
JOB = ["min_terms=2", "max_terms=2", "min_digits=1", "max_digits=1", "heldout_size=4"]
MOMENTS = ("learning run", "swap", "feedback")
WINDOW = {"learning run": 0.2, "swap": 1.0, "feedback": 6.0}  # seconds the delay after the aimed-at moment is drawn from
WAIT = 180.0  # seconds to wait for the server, for a learning run, for a resume


class Traffic:
    """A client in a thread: chat with the worker, then give feedback on the reply, again and again, until
    stopped or the server goes away. `acknowledged`: the ids of the feedback answered 200."""

    def __init__(self, url: str):
        self.url, self.acknowledged, self.stopping = url, [], threading.Event()
        self.thread = threading.Thread(target=self._loop, daemon=True)

    def __enter__(self) -> Traffic:
        self.thread.start()
        return self

    def __exit__(self, *_exc) -> None:
        self.stopping.set()
        self.thread.join()

    def _loop(self) -> None:
        with httpx.Client(base_url=self.url, timeout=60) as client:
            n = 0
            while not self.stopping.is_set():
                try:
                    self.acknowledged += give_feedback(client, n)
                except httpx.HTTPError:  # the server was killed mid-request: nothing acknowledged
                    return
                n += 1


def give_feedback(client: httpx.Client, n: int) -> list[int]:
    """One chat with the worker and a correction (even n) or a reward on its reply: the feedback id if acknowledged."""
    a, b = n % 10, (n * 7) % 10
    reply = client.post("/v1/chat/completions", json={"model": "worker:arith", "max_tokens": 4,
                                                      "messages": [{"role": "user", "content": f"{a} + {b} = ?"}]})
    if reply.status_code != 200:
        return []
    body = {"id": reply.json()["id"]} | ({"correction": str(a + b)} if n % 2 == 0 else {"reward": float(n % 3 == 0)})
    answer = client.post("/v1/feedback", json=body)
    return [answer.json()["id"]] if answer.status_code == 200 else []


def _serve(hive: Path, core: Path, port: int, log: Path) -> subprocess.Popen:
    with log.open("a") as out:
        return apiary(["serve", "--hive", str(hive), "--core", str(core), "--port", str(port), "--min-feedback", "2"],
                      output=out, errors=subprocess.STDOUT)


def _ready(process: subprocess.Popen, url: str) -> bool:
    deadline = time.monotonic() + WAIT
    while time.monotonic() < deadline and process.poll() is None:
        try:
            if httpx.get(url + "/health", timeout=2).status_code == 200:
                return True
        except httpx.HTTPError:
            pass
        time.sleep(0.2)
    return False


def _rows(hive: Path, query: str) -> list[tuple]:
    """A read of the store while the server writes (read-only, so the trial never takes a write lock)."""
    with sqlite3.connect(f"file:{hive / 'hive.db'}?mode=ro", uri=True, timeout=30) as db:
        return db.execute(query).fetchall()


def _wait_for(hive: Path, query: str, process: subprocess.Popen) -> None:
    deadline = time.monotonic() + WAIT
    while time.monotonic() < deadline and process.poll() is None and not _rows(hive, query):
        time.sleep(0.01)


def _kill_at_moment(hive: Path, process: subprocess.Popen, moment: str, delay: float) -> bool:
    """Wait for the moment aimed at, then `delay` seconds more, then SIGKILL; whether it was still running."""
    if moment == "learning run":
        _wait_for(hive, "select id from runs where status = 'running'", process)
    elif moment == "swap":
        _wait_for(hive, "select version from adapter_versions", process)
    time.sleep(delay)
    if process.poll() is not None:
        return False
    kill(process)
    return True


def _observed(hive: Path, log: Path) -> str:
    """What the server was doing when it was killed: a learning run (one left "running"), a release or swap
    (the latest adapter version recorded, gated, released but not yet served), or taking feedback."""
    if _rows(hive, "select id from runs where status = 'running'"):
        return "learning run"
    latest = _rows(hive, "select max(version) from adapter_versions")[0][0]
    served = [int(v) for v in re.findall(r"worker:arith now served by core v\d+ \+ adapter v(\d+)", log.read_text())]
    if latest and latest > max(served, default=0):
        return "gate or swap"
    return "feedback"


def _recorded(hive: Path) -> tuple[set[int], set[int], set[int]]:
    store = Store(hive)
    try:
        return ({f.id for f in store.feedback()}, {e.id for e in store.episodes()},
                {v.version for v in store.adapter_versions("arith")})
    finally:
        store.engine.dispose()


def _restart(hive: Path, core: Path, log: Path, interrupted: set[int]) -> bool:
    """Start the server again on the hive: it must answer a chat, and the runs the kill interrupted must be
    resumed or marked interrupted (the feedback sent now wakes its learning); then it is stopped (SIGTERM)."""
    port = free_port()
    url = f"http://127.0.0.1:{port}"
    process = _serve(hive, core, port, log)
    try:
        if not _ready(process, url):
            return False
        with httpx.Client(base_url=url, timeout=60) as client:
            served = bool(give_feedback(client, 0)) and bool(give_feedback(client, 1))
        ids = ",".join(map(str, interrupted)) or "0"
        deadline = time.monotonic() + WAIT
        while time.monotonic() < deadline and _rows(hive, f"select id from runs where status = 'running' and id in ({ids})"):
            time.sleep(0.2)
        return served and not _rows(hive, f"select id from runs where status = 'running' and id in ({ids})")
    finally:
        process.terminate()
        try:
            process.wait(timeout=WAIT)
        except subprocess.TimeoutExpired:
            kill(process)


def one_trial(root: Path, core: Path, moment: str, delay: float) -> Trial:
    from apiary import Hive

    hive, log = root / "hive", root / "serve.log"
    made = Hive(hive, core=str(core))
    made.deploy("rg:chain_sum", "arith", overrides=JOB)
    made.store.engine.dispose()
    port = free_port()
    process = _serve(hive, core, port, log)
    if not _ready(process, f"http://127.0.0.1:{port}"):
        kill(process)
        raise RuntimeError(f"the server did not start: {log.read_text()[-2000:]}")
    with Traffic(f"http://127.0.0.1:{port}") as traffic:
        killed = _kill_at_moment(hive, process, moment, delay)
    trial = Trial(kill_at=round(delay, 2), killed=killed, moment=_observed(hive, log) if killed else "")
    interrupted = {row[0] for row in _rows(hive, "select id from runs where status = 'running'")}
    check_after_kill(hive, trial)
    acknowledged = set(traffic.acknowledged)
    feedback, episodes, versions = _recorded(hive)
    trial.recorded = len(acknowledged) + len(episodes) + len(versions)
    trial.resumed = _restart(hive, core, log, interrupted)
    feedback_after, episodes_after, versions_after = _recorded(hive)
    trial.lost = (len(acknowledged - feedback_after) + len(episodes - episodes_after) + len(versions - versions_after)
                  + damage(hive))
    return trial


def run(trials: int = 20, seed: int = 0, core: Path | None = None) -> KillReport:
    """`trials` kills of `apiary serve`, aimed in turn at a learning run, a swap and feedback (see the module doc),
    each a delay drawn with `seed` from that moment's window after it."""
    rng = random.Random(seed)
    with scratch() as root:
        core = core or tiny_core(root / "core")
        done = []
        for n in range(trials):
            moment = MOMENTS[n % len(MOMENTS)]
            done.append(one_trial(root / f"trial{n}", core, moment, rng.uniform(0, WINDOW[moment])))
    return summarise("serve", done, max(WINDOW.values()))


def describe(report: KillReport) -> str:
    return ("`apiary serve` (the tiny core unless `--core`, background learning from every 2 new pieces of feedback) "
            "taking chats and feedback over HTTP from a client, SIGKILLed in turn a seeded delay after a learning run "
            f"started (within {WINDOW['learning run']:g} s), after an adapter version was recorded (while the gate "
            f"releases it and the server swaps it in, within {WINDOW['swap']:g} s), or after it was ready (within "
            f"{WINDOW['feedback']:g} s, feedback flowing); then `apiary check`, `apiary check --repair`, and the "
            "server started again on the hive: it must answer a chat, and resume or mark the interrupted learning run. "
            "Items: acknowledged feedback (HTTP 200), episodes and adapter versions recorded.")
