"""Soak: many clients chatting with a worker and sending feedback for minutes while it learns and hot-swaps.

`apiary serve` runs in its own process on a fresh hive with background learning on (a learning run for
every --min-feedback new pieces of feedback, each gated, a released version swapped in while serving).
A worker on chain_sum (two one-digit terms) is deployed; --clients threads each ask it training
questions, one after another, and send feedback on every reply: the correction (the right answer) when
it is wrong, a reward of 1 when it is right. Every --sample-seconds the soak records, over the window
since the last sample: chats answered, feedback acknowledged, errors by kind (HTTP status or exception),
the p95 chat latency; and, at the moment: the server's resident memory, the worker's released and served
adapter versions and the gate's decisions so far.

Writes the "Soak" section of docs/benchmarks.md, docs/soak.json and docs/soak.png (with --docs).
Run: python -m apiary.bench.soak [--minutes 10] [--clients 16] [--core PATH|tiny] [--docs]
(the default core is the bundled one; `--core tiny` is a tiny random Llama: a quick check of the machinery).
"""

from __future__ import annotations

import argparse
import json
import os
import re
import subprocess
import tempfile
import threading
import time
from collections import Counter
from dataclasses import asdict, dataclass, field
from pathlib import Path

import httpx

from apiary import Hive
from apiary.bench.kill_trials import apiary, free_port, tiny_core, wait_until_serving
from apiary.hive.recipes import ARITH

TITLE = "Soak: clients, feedback, learning and hot swaps for minutes"
HEADERS = {"Authorization": "Bearer local"}
WORKER = "arith"


@dataclass
class Sample:
    at_s: float  # seconds since the clients started
    requests: int  # chats answered in the window
    feedback: int  # feedback acknowledged in the window
    errors: dict[str, int]  # errors in the window, by kind
    p95_s: float | None  # p95 chat latency over the window (None: no chat answered in it)
    rss_mb: float  # the server's resident memory
    live_version: int  # the worker's released adapter version
    served_version: int | None  # the adapter version the server answers with
    gate_decisions: int  # so far: gate decisions on versions learned while serving


@dataclass
class SoakReport:
    seconds: float
    clients: int
    core: str
    min_feedback: int
    samples: list[Sample]
    requests: int
    feedback: int
    acknowledged: list[int] = field(repr=False)  # ids of the feedback the server answered 200
    errors: dict[str, int]
    hive: str


class Window:
    """What the clients did since the last sample, shared by the client threads."""

    def __init__(self):
        self.lock = threading.Lock()
        self.latencies, self.feedback, self.errors, self.acknowledged = [], 0, Counter(), []

    def take(self) -> tuple[list[float], int, Counter]:
        with self.lock:
            taken = (self.latencies, self.feedback, self.errors)
            self.latencies, self.feedback, self.errors = [], 0, Counter()
        return taken


def soak(seconds: float, clients: int, core: Path | None, work: Path, sample_s: float = 5.0, min_feedback: int = 32,
         heldout: int = 32) -> SoakReport:
    """Serve a fresh hive in `work` and soak it for `seconds`; see the module doc."""
    if not seconds > 0 or clients < 1 or not sample_s > 0:
        raise ValueError(f"a soak needs seconds > 0, clients >= 1 and sample seconds > 0, got {seconds}, {clients}, {sample_s}")
    hive = Hive(work / "hive", core=str(core) if core else None)
    job = hive.job(ARITH.spec, ARITH.overrides + [f"heldout_size={heldout}"])
    hive.deploy(ARITH.spec, WORKER, overrides=ARITH.overrides + [f"heldout_size={heldout}"])
    tasks = job.source.train(0, 64)
    port = free_port()
    url = f"http://127.0.0.1:{port}"
    with (work / "serve.log").open("w") as log:
        server = apiary(["serve", "--hive", str(hive.path), "--port", str(port), "--min-feedback", str(min_feedback),
                         *(["--core", str(core)] if core else [])], output=log, errors=subprocess.STDOUT)
    try:
        wait_until_serving(server, url, 600, work / "serve.log")
        window, stopping, samples = Window(), threading.Event(), []
        threads = [threading.Thread(target=_client, args=(url, job, tasks, k, window, stopping), daemon=True)
                   for k in range(clients)]
        started = time.monotonic()
        for t in threads:
            t.start()
        while not stopping.is_set():
            time.sleep(max(0.0, min(sample_s, started + seconds - time.monotonic())))
            if time.monotonic() - started >= seconds:  # the last sample: after the clients finished what they began
                stopping.set()
                for t in threads:
                    t.join()
            samples.append(_sample(url, server.pid, window, time.monotonic() - started))
            print(_row(samples[-1]), flush=True)
    finally:
        _stop(server)
    errors = sum((Counter(s.errors) for s in samples), Counter())
    return SoakReport(seconds=seconds, clients=clients, core=str(core) if core else "bundled", min_feedback=min_feedback,
                      samples=samples, requests=sum(s.requests for s in samples), feedback=sum(s.feedback for s in samples),
                      acknowledged=list(window.acknowledged), errors=dict(errors), hive=str(hive.path))


def _client(url: str, job, tasks: list, k: int, window: Window, stopping: threading.Event) -> None:
    """Ask a question, send feedback on the reply (a correction if wrong, a reward of 1 if right), again."""
    with httpx.Client(base_url=url, headers=HEADERS, timeout=600) as client:
        n = k
        while not stopping.is_set():
            task = tasks[n % len(tasks)]
            n += 7
            try:
                started = time.perf_counter()
                reply = client.post("/v1/chat/completions", json={"model": "worker:" + WORKER, "temperature": 0,
                                                                  "messages": job.messages(task), "max_tokens": job.max_tokens})
                latency = time.perf_counter() - started
                if reply.status_code != 200:
                    _failed(window, f"chat HTTP {reply.status_code}")
                    continue
                text = reply.json()["choices"][0]["message"]["content"]
                right = job.score(task, text) >= 1.0
                body = {"id": reply.json()["id"]} | ({"reward": 1.0} if right else {"correction": task.answer})
                answer = client.post("/v1/feedback", json=body)
            except httpx.HTTPError as err:
                _failed(window, type(err).__name__)
                continue
            with window.lock:
                window.latencies.append(latency)
                if answer.status_code == 200:
                    window.feedback += 1
                    window.acknowledged.append(answer.json()["id"])
                else:
                    window.errors[f"feedback HTTP {answer.status_code}"] += 1


def _failed(window: Window, kind: str) -> None:
    with window.lock:
        window.errors[kind] += 1


def _sample(url: str, pid: int, window: Window, at_s: float) -> Sample:
    latencies, feedback, errors = window.take()
    worker, decisions = {}, 0
    try:
        worker = httpx.get(url + "/v1/workers", headers=HEADERS, timeout=60).json()["data"][0]
        metrics = httpx.get(url + "/metrics", timeout=60).text
        decisions = int(sum(float(v) for v in re.findall(r"^apiary_gate_decisions_total\{[^}]*\} (\S+)$", metrics, re.M)))
    except (httpx.HTTPError, KeyError, IndexError, ValueError) as err:
        errors[f"sample {type(err).__name__}"] += 1
    return Sample(at_s=round(at_s, 1), requests=len(latencies), feedback=feedback, errors=dict(errors),
                  p95_s=_p95(latencies), rss_mb=round(resident_mb(pid), 1), live_version=worker.get("live_version", -1),
                  served_version=worker.get("served_version"), gate_decisions=decisions)


def _p95(values: list[float]) -> float | None:
    if not values:
        return None
    values = sorted(values)
    return round(values[min(len(values) - 1, int(round(0.95 * (len(values) - 1))))], 3)


def resident_mb(pid: int) -> float:
    """A process's resident memory in MB (psutil where installed, else Linux's /proc)."""
    try:
        import psutil
    except ImportError:
        status = Path(f"/proc/{pid}/status").read_text()
        return int(re.search(r"^VmRSS:\s+(\d+) kB", status, re.M).group(1)) / 1024
    return psutil.Process(pid).memory_info().rss / 2 ** 20


def _stop(server: subprocess.Popen) -> None:
    """Ctrl-C, as a user stops it; SIGKILL if a learning run keeps it past a minute (the hive is scratch)."""
    server.send_signal(2)
    try:
        server.wait(60)
    except subprocess.TimeoutExpired:
        server.kill()
        server.wait()


def _row(s: Sample) -> str:
    errors = ", ".join(f"{n} {k}" for k, n in sorted(s.errors.items())) or "0"
    p95 = f"{s.p95_s:.2f}" if s.p95_s is not None else "-"
    return (f"| {s.at_s:.0f} | {s.requests} | {s.feedback} | {errors} | {p95} | {s.rss_mb:.0f} | v{s.live_version} "
            f"(serving v{s.served_version}) | {s.gate_decisions} |")


def plot(report: SoakReport, path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    at = [s.at_s / 60 for s in report.samples]
    figure, axes = plt.subplots(4, 1, figsize=(8, 9), sharex=True)
    series = [([s.p95_s for s in report.samples], "p95 chat latency (s)"),
              ([s.rss_mb for s in report.samples], "server resident memory (MB)"),
              ([sum(s.errors.values()) for s in report.samples], "errors per window"),
              ([s.live_version for s in report.samples], "released adapter version")]
    for ax, (values, label) in zip(axes, series):
        ax.plot(at, [v if v is not None else float("nan") for v in values], marker=".",
                drawstyle="steps-post" if "version" in label else "default")
        ax.set_ylabel(label, fontsize=8)
        ax.grid(alpha=0.3)
    axes[0].set_title(f"soak: {report.clients} clients, {report.seconds / 60:.0f} min, core {Path(report.core).name}")
    axes[-1].set_xlabel("minutes")
    figure.tight_layout()
    figure.savefig(path, dpi=110)


def markdown(report: SoakReport, command: str) -> str:
    from apiary.bench.report import machine

    step = max(1, len(report.samples) // 20)  # at most about 20 rows: one every few samples
    rows = "\n".join(_row(s) for s in report.samples[::step])
    rss = [s.rss_mb for s in report.samples]
    p95 = [s.p95_s for s in report.samples if s.p95_s is not None]
    last = report.samples[-1]
    errors = ", ".join(f"{n} {k}" for k, n in sorted(report.errors.items())) or "none"
    return f"""## {TITLE}

Command: `{command}`
Machine: {machine()}. Core: {report.core}. `apiary serve` in its own process with background learning
(`--min-feedback {report.min_feedback}`, default gate); {report.clients} client threads ask a worker on chain_sum
(two one-digit terms) training questions and send a correction (wrong reply) or a reward of 1 (right reply) on
each. Rows: one every {step} sample(s); chats, feedback and errors are counted over the window before each row,
p95 latency over the same window, memory and versions at its end.

| s | chats | feedback | errors | p95 (s) | server RSS (MB) | released | gate decisions |
| --- | --- | --- | --- | --- | --- | --- | --- |
{rows}

![p95 latency, server memory, errors and released version over the soak](soak.png)

Over {report.seconds / 60:.1f} minutes: **{report.requests} chats, {report.feedback} feedback acknowledged, errors:
{errors}**; p95 latency per window {min(p95, default=0):.2f}-{max(p95, default=0):.2f} s; server resident memory
{rss[0]:.0f} MB at the first sample, {max(rss):.0f} MB at most, {rss[-1]:.0f} MB at the end; {last.gate_decisions}
gate decision(s), released adapter version at the end v{last.live_version}.
"""


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--minutes", type=float, default=10.0)
    parser.add_argument("--clients", type=int, default=16)
    parser.add_argument("--core", default=None, help="a HF directory, or tiny (a tiny random Llama); default: bundled")
    parser.add_argument("--sample-seconds", type=float, default=5.0)
    parser.add_argument("--min-feedback", type=int, default=32, help="new feedback that starts a learning run")
    parser.add_argument("--docs", action="store_true", help="write the Soak section of docs/benchmarks.md and the plot")
    args = parser.parse_args()
    work = Path(tempfile.mkdtemp(prefix="apiary-soak-"))
    print(f"work directory: {work}", flush=True)
    core = tiny_core(work / "tiny-core") if args.core == "tiny" else (Path(args.core) if args.core else None)
    report = soak(args.minutes * 60, args.clients, core, work, args.sample_seconds, args.min_feedback)
    print(json.dumps({k: v for k, v in asdict(report).items() if k not in ("samples", "acknowledged")}, indent=1))
    if args.docs:
        from apiary.bench.report import DOCS, write_section

        report.core = args.core or "bundled SmolLM2-135M-Instruct"
        (DOCS / "soak.json").write_text(json.dumps(asdict(report) | {"acknowledged": len(report.acknowledged)}, indent=1))
        plot(report, DOCS / "soak.png")
        command = f"python -m apiary.bench.soak --minutes {args.minutes:g} --clients {args.clients}" + (
            f" --core {args.core}" if args.core else "") + " --docs"
        write_section(TITLE, markdown(report, command))


if __name__ == "__main__":
    os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
    main()
