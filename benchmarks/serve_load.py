"""Serving: throughput and latency under load, and a worker learning from feedback sent over HTTP.

1. Load. `apiary serve` (a real server process on localhost) with continuous batching, and the
   same server with one request at a time (--max-batch 1) as the baseline, in the same run; 1, 4
   and 16 concurrent clients (the official `openai` client, one thread each) ask the core general
   questions (greedy, up to --max-tokens tokens). Figures: completion tokens/s, p50/p95 latency.
2. Feedback end to end. A worker on chain_sum (two one-digit terms) is served; a client asks it 64
   training questions and sends each reply's correction (the right answer) to /v1/feedback; the
   server learns from them in the background, the gate decides, and the worker's held-out score
   is read back from /v1/workers before and after.

Writes the "Serving" section of docs/benchmarks.md and docs/serve_load.json / .png.
Run: python benchmarks/serve_load.py
"""

from __future__ import annotations

import argparse
import json
import os
import signal
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

import httpx
import matplotlib
import openai

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402

sys.path.insert(0, str(Path(__file__).resolve().parent))
from report import DOCS, machine, write_section  # noqa: E402

from apiary import Hive  # noqa: E402
from apiary.evals.retention import anchor_prompts  # noqa: E402

TITLE = "Serving: load, and learning from feedback over HTTP"
ONE_DIGIT = ["min_terms=2", "max_terms=2", "min_digits=1", "max_digits=1"]
APIARY = str(Path(sys.executable).parent / "apiary")


class Server:
    """`apiary serve` in a child process; stopped (SIGINT, like Ctrl-C) on exit."""

    def __init__(self, hive: Path, port: int, *args: str, log: Path):
        self.url = f"http://127.0.0.1:{port}"
        self.log = open(log, "w")
        self.process = subprocess.Popen([APIARY, "serve", "--hive", str(hive), "--port", str(port), *args],
                                        stdout=self.log, stderr=subprocess.STDOUT)

    def __enter__(self) -> "Server":
        deadline = time.time() + 300
        while time.time() < deadline:
            if self.process.poll() is not None:
                raise RuntimeError(f"the server exited; see {self.log.name}")
            try:
                if httpx.get(self.url + "/health", timeout=2).status_code == 200:
                    return self
            except httpx.HTTPError:
                pass
            time.sleep(0.5)
        raise RuntimeError("the server did not start in 5 minutes")

    def __exit__(self, *exc) -> None:
        self.process.send_signal(signal.SIGINT)
        self.process.wait(60)
        self.log.close()


def load(url: str, clients: int, requests_each: int, prompts: list[str], max_tokens: int) -> dict:
    """`clients` threads, each sending `requests_each` chats one after another."""
    latencies, tokens, errors = [], [], []

    def client(k: int) -> None:
        c = openai.OpenAI(base_url=url + "/v1", api_key="local", max_retries=0, timeout=900)
        for j in range(requests_each):
            prompt = prompts[(k * requests_each + j) % len(prompts)]
            started = time.perf_counter()
            try:
                reply = c.chat.completions.create(model="core", messages=[{"role": "user", "content": prompt}],
                                                  max_tokens=max_tokens, temperature=0)
            except openai.OpenAIError as err:
                errors.append(str(err))
                continue
            latencies.append(time.perf_counter() - started)
            tokens.append(reply.usage.completion_tokens)

    started = time.perf_counter()
    threads = [threading.Thread(target=client, args=(k,)) for k in range(clients)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    wall = time.perf_counter() - started
    latencies.sort()
    return {"clients": clients, "requests": len(latencies), "errors": len(errors), "completion_tokens": sum(tokens),
            "wall_s": wall, "tokens_per_s": sum(tokens) / wall, "p50_s": statistics.median(latencies),
            "p95_s": latencies[min(len(latencies) - 1, int(round(0.95 * (len(latencies) - 1))))],
            "mean_completion_tokens": statistics.mean(tokens)}


def load_suite(work: Path, levels: list[int], requests: dict[int, int], max_tokens: int) -> dict:
    prompts = anchor_prompts()
    results = {}
    for name, args in [("batched", ["--max-batch", "32"]), ("one_at_a_time", ["--max-batch", "1"])]:
        with Server(work / f"hive-{name}", 8731, *args, "--no-learn", log=work / f"{name}.log") as server:
            load(server.url, 1, 1, prompts, 8)  # warm up
            results[name] = []
            for clients in levels:
                figure = load(server.url, clients, requests[clients], prompts, max_tokens)
                results[name].append(figure)
                print(f"{name:14s} {clients:2d} clients: {figure['tokens_per_s']:6.1f} tok/s, "
                      f"p50 {figure['p50_s']:.2f} s, p95 {figure['p95_s']:.2f} s", flush=True)
    return results


def feedback_suite(work: Path, n: int, min_feedback: int, timeout_s: float) -> dict:
    hive_dir = work / "hive-feedback"
    hive = Hive(hive_dir)
    job = hive.job("rg:chain_sum", ONE_DIGIT)
    hive.deploy("rg:chain_sum", "sums", overrides=ONE_DIGIT)
    hive.eval(jobs=[job])  # the core's held-out score on the job: what /v1/workers shows before learning
    tasks = job.source.train(0, n)
    with Server(hive_dir, 8732, "--min-feedback", str(min_feedback), log=work / "feedback.log") as server:
        headers = {"Authorization": "Bearer local"}
        before = httpx.get(server.url + "/v1/workers", headers=headers).json()["data"][0]
        c = openai.OpenAI(base_url=server.url + "/v1", api_key="local", max_retries=0, timeout=900)
        started, right = time.perf_counter(), 0
        for task in tasks:
            reply = c.chat.completions.create(model="worker:sums", messages=job.messages(task), max_tokens=job.max_tokens,
                                              temperature=0)
            right += job.score(task, reply.choices[0].message.content)
            answer = httpx.post(server.url + "/v1/feedback", headers=headers, json={"id": reply.id, "correction": task.answer})
            answer.raise_for_status()
        sent = time.perf_counter()
        after = before
        while time.perf_counter() - sent < timeout_s:
            after = httpx.get(server.url + "/v1/workers", headers=headers).json()["data"][0]
            if after["last_gate"] is not None and after["served_version"] == after["live_version"]:
                break
            time.sleep(2)
        decided = time.perf_counter()
        check = c.chat.completions.create(model="worker:sums", messages=job.messages(tasks[0]), max_tokens=8, temperature=0)
        metrics = [line for line in httpx.get(server.url + "/metrics").text.splitlines()
                   if line.startswith(("apiary_gate_decisions_total", "apiary_learning_steps_total", "apiary_feedback_total"))]
    return {"corrections": n, "served_right_before_feedback": right / n, "before": before, "after": after,
            "seconds_to_send": sent - started, "seconds_feedback_to_decision": decided - sent,
            "adapter_version_serving_after": check.model_extra["apiary"]["adapter_version"], "metrics": metrics}


def plot(fig: dict, path: Path) -> None:
    figure, (left, right) = plt.subplots(1, 2, figsize=(10, 4))
    for name, rows in fig["load"].items():
        clients = [r["clients"] for r in rows]
        left.plot(clients, [r["tokens_per_s"] for r in rows], marker="o", label=name)
        right.plot(clients, [r["p95_s"] for r in rows], marker="o", label=f"{name} p95")
        right.plot(clients, [r["p50_s"] for r in rows], marker="x", linestyle="--", label=f"{name} p50")
    left.set(xlabel="concurrent clients", ylabel="completion tokens/s", xscale="log", title="throughput")
    right.set(xlabel="concurrent clients", ylabel="seconds", xscale="log", yscale="log", title="latency")
    for ax in (left, right):
        ax.set_xticks(clients, [str(c) for c in clients])
        ax.legend()
        ax.grid(alpha=0.3)
    figure.tight_layout()
    figure.savefig(path, dpi=120)


def markdown(fig: dict, command: str) -> str:
    batched, base = fig["load"]["batched"], fig["load"]["one_at_a_time"]
    rows = "\n".join(f"| {b['clients']} | {b['tokens_per_s']:.1f} | {b['p50_s']:.2f} | {b['p95_s']:.2f} | "
                     f"{o['tokens_per_s']:.1f} | {o['p50_s']:.2f} | {o['p95_s']:.2f} | {b['requests']} |"
                     for b, o in zip(batched, base))
    top, single = batched[-1], batched[0]
    speedup, latency = top["tokens_per_s"] / base[-1]["tokens_per_s"], top["p95_s"] / single["p50_s"]
    fb = fig["feedback"]
    gate = fb["after"]["last_gate"] or {}
    before_h, after_h = fb["before"]["heldout"], fb["after"]["heldout"]
    return f"""## {TITLE}

Command: `{command}`
Machine: {fig['machine']}. Core: bundled SmolLM2-135M-Instruct, float32. Server: `apiary serve` in its own
process on localhost; clients: the official `openai` client, one thread each, greedy, up to {fig['max_tokens']}
completion tokens per request, general questions (the 82 anchor prompts).

| clients | batched tok/s | p50 (s) | p95 (s) | one-at-a-time tok/s | p50 (s) | p95 (s) | requests |
| --- | --- | --- | --- | --- | --- | --- | --- |
{rows}

![throughput and latency against concurrent clients](serve_load.png)

At {top['clients']} clients continuous batching gives **{speedup:.1f}x** the one-at-a-time throughput
(target: at least 4x) with p95 latency **{latency:.2f}x** the single-client latency (p50 at 1 client; target: at
most 2x).

**Learning from feedback over HTTP.** A worker on chain_sum answered {fb['corrections']} training questions
through `/v1/chat/completions` ({fb['served_right_before_feedback']:.2f} of them right) and received {fb['corrections']}
corrections through `/v1/feedback` ({fb['seconds_to_send']:.0f} s). The server learned from them in the
background, and the gate decided {fb['seconds_feedback_to_decision']:.0f} s after the last correction:
**{'released' if gate.get('passed') else 'refused'}** {gate.get('candidate')} (held-out {gate.get('heldout')} against live
{gate.get('live_heldout')}; retention KL {gate.get('retention_kl')}; flips {gate.get('flips')}){'' if gate.get('passed') else '; reasons: ' + '; '.join(gate.get('reasons', []))}.
Held-out score read back from `/v1/workers`: before {before_h}, after {after_h}; responses after the
decision came from adapter v{fb['adapter_version_serving_after']}.
"""


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--max-tokens", type=int, default=64)
    parser.add_argument("--corrections", type=int, default=64)
    parser.add_argument("--skip-feedback", action="store_true")
    parser.add_argument("--from-json", type=Path, help="rewrite the docs from a saved figures file")
    args = parser.parse_args()
    levels, requests = [1, 4, 16], {1: 6, 4: 12, 16: 32}
    if args.from_json:
        fig = json.loads(args.from_json.read_text())
    else:
        work = Path(tempfile.mkdtemp(prefix="apiary-serve-"))
        print(f"work directory: {work}", flush=True)
        fig = {"machine": machine(), "max_tokens": args.max_tokens, "levels": levels, "requests": requests,
               "load": load_suite(work, levels, requests, args.max_tokens)}
        fig["feedback"] = None if args.skip_feedback else feedback_suite(work, args.corrections, args.corrections, 3600)
        (DOCS / "serve_load.json").write_text(json.dumps(fig, indent=2))
    plot(fig, DOCS / "serve_load.png")
    if fig["feedback"] is not None:
        write_section(TITLE, markdown(fig, "python benchmarks/serve_load.py"))
    print(json.dumps({k: v for k, v in fig.items() if k != "load"}, indent=2, default=str))


if __name__ == "__main__":
    os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
    main()
