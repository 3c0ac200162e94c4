"""Serving: throughput and latency under load, and a worker learning from feedback sent over HTTP.

1. Load. `apiary serve` (a real server process on localhost) with continuous batching, and the
   same server with one request at a time (--max-batch 1) as the baseline, in the same run; 1, 4
   and 16 concurrent clients (the official `openai` client, one thread each) ask the core general
   questions (greedy, up to --max-tokens tokens). Figures: completion tokens/s, p50/p95 latency.
   Then a staggered load (16 clients starting 0.5 s apart, streamed replies) once per
   --prefill-chunks setting (default 0, 16 and 64: joining prompts read whole, or 16 / 64 tokens
   per decoding step; the anchor prompts are 34-47 tokens, so 64 reads them in one chunk and 16 in
   three), compared in one run; figures add the longest pause in a reply.
2. Feedback end to end. A worker on chain_sum (two one-digit terms) is served; a client asks it 64
   training questions and sends each reply's correction (the right answer) to /v1/feedback; the
   server learns from them in the background, the gate decides, and the worker's held-out score
   is read back from /v1/workers before and after.

Writes the "Serving" section of docs/benchmarks.md and docs/serve_load.json / .png.
Run: python -m apiary.bench.serve_load
"""

from __future__ import annotations

import argparse
import datetime
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
import openai

from apiary import Hive
from apiary.bench.report import DOCS, machine, write_section
from apiary.bench.serve_load_report import TITLE, markdown, plot
from apiary.hive.recipes import ARITH
from apiary.learners.anchor import anchor_prompts

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


def load(url: str, clients: int, requests_each: int, prompts: list[str], max_tokens: int, stagger_s: float = 0.0,
         stream: bool = False) -> dict:
    """`clients` threads, each sending `requests_each` chats one after another (client k starts after
    k x `stagger_s` seconds, so that replies do not start and end in waves); streamed replies also
    give the longest pause between two pieces of each reply."""
    latencies, tokens, errors, pauses = [], [], [], []

    def client(k: int) -> None:
        time.sleep(k * stagger_s)
        c = openai.OpenAI(base_url=url + "/v1", api_key="local", max_retries=0, timeout=900)
        for j in range(requests_each):
            prompt = prompts[(k * requests_each + j) % len(prompts)]
            started = time.perf_counter()
            try:
                if stream:
                    used, pause = _streamed(c, prompt, max_tokens)
                    pauses.append(pause)
                else:
                    used = c.chat.completions.create(model="core", messages=[{"role": "user", "content": prompt}],
                                                     max_tokens=max_tokens, temperature=0).usage.completion_tokens
            except openai.OpenAIError as err:
                errors.append(str(err))
                continue
            latencies.append(time.perf_counter() - started)
            tokens.append(used)

    started = time.perf_counter()
    threads = [threading.Thread(target=client, args=(k,)) for k in range(clients)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    wall = time.perf_counter() - started
    figure = {"clients": clients, "requests": len(latencies), "errors": len(errors), "completion_tokens": sum(tokens),
              "wall_s": wall, "tokens_per_s": sum(tokens) / wall, "p50_s": statistics.median(latencies),
              "p95_s": _p95(latencies), "mean_completion_tokens": statistics.mean(tokens)}
    if pauses:
        figure |= {"p95_longest_pause_s": _p95(pauses), "max_pause_s": max(pauses)}
    return figure


def _p95(values: list[float]) -> float:
    values = sorted(values)
    return values[min(len(values) - 1, int(round(0.95 * (len(values) - 1))))]


def _streamed(c: openai.OpenAI, prompt: str, max_tokens: int) -> tuple[int, float]:
    """One streamed chat: its completion tokens, and the longest pause between two pieces of it."""
    stream = c.chat.completions.create(model="core", messages=[{"role": "user", "content": prompt}], max_tokens=max_tokens,
                                       temperature=0, stream=True, stream_options={"include_usage": True})
    used, arrivals = 0, []
    for chunk in stream:
        if chunk.choices and chunk.choices[0].delta.content:
            arrivals.append(time.perf_counter())
        if chunk.usage is not None:
            used = chunk.usage.completion_tokens
    return used, max((b - a for a, b in zip(arrivals, arrivals[1:])), default=0.0)


def load_suite(work: Path, levels: list[int], requests: dict[int, int], max_tokens: int) -> dict:
    """Each level: `levels[i]` clients sending `requests[clients]` requests each."""
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


def steady_suite(work: Path, clients: int, requests_each: int, max_tokens: int, chunks: list[int],
                 precisions: list[str] = ("float32",)) -> list[dict]:
    """The batched server under a long, staggered load, where requests join and leave the batch all
    the time: once per prefill chunk setting (0: joining prompts read whole while the batch waits) and
    serving precision, each beside the same server's single-client latency (6 requests, one at a time)."""
    figures = []
    for precision in precisions:
        for chunk in chunks:
            with Server(work / f"hive-steady-{chunk}-{precision}", 8733, "--max-batch", "32", "--prefill-chunk", str(chunk),
                        "--precision", precision, "--no-learn", log=work / f"steady-{chunk}-{precision}.log") as server:
                load(server.url, 1, 1, anchor_prompts(), 8)
                single = load(server.url, 1, 6, anchor_prompts(), max_tokens)
                figure = load(server.url, clients, requests_each, anchor_prompts(), max_tokens, stagger_s=0.5, stream=True)
            figures.append(figure | {"prefill_chunk": chunk, "precision": precision, "single_p50_s": single["p50_s"],
                                     "date": datetime.date.today().isoformat()})
            print(f"steady chunk {chunk:3d} {precision} {clients:2d} clients: {figure['tokens_per_s']:6.1f} tok/s, "
                  f"p50 {figure['p50_s']:.2f} s, p95 {figure['p95_s']:.2f} s (single client p50 {single['p50_s']:.2f} s), "
                  f"p95 longest pause {figure['p95_longest_pause_s']:.2f} s", flush=True)
    return figures


def merged_steady(old: list[dict], new: list[dict]) -> list[dict]:
    """The steady runs kept in docs/serve_load.json: the new ones, and the old ones of other settings."""
    key = lambda st: (st["prefill_chunk"], st.get("precision", "float32"))  # noqa: E731
    done = {key(st) for st in new}
    return [st for st in old if key(st) not in done] + new


def feedback_suite(work: Path, n: int, min_feedback: int, timeout_s: float, gate_flags: list[str], seed: int = 0) -> dict:
    work.mkdir(parents=True, exist_ok=True)
    hive_dir = work / "hive-feedback"
    hive = Hive(hive_dir)
    job = hive.job(ARITH.spec, ARITH.overrides)
    hive.deploy(ARITH.spec, "sums", overrides=ARITH.overrides)
    hive.eval(jobs=[job])  # the core's held-out score on the job: what /v1/workers shows before learning
    tasks = job.source.train(seed * n, n)  # another seed: other questions, so other corrections
    with Server(hive_dir, 8732, "--min-feedback", str(min_feedback), *gate_flags, log=work / "feedback.log") as server:
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
    return {"gate_flags": gate_flags, "corrections": n, "served_right_before_feedback": right / n, "before": before, "after": after,
            "seconds_to_send": sent - started, "seconds_feedback_to_decision": decided - sent,
            "adapter_version_serving_after": check.model_extra["apiary"]["adapter_version"], "metrics": metrics}


# each part names its settings, whatever the server's defaults (since 2026-12-01: distil_back on, corrections by
# self_distill at 2e-4)
FEEDBACK_PARTS = {"feedback": ["--text-learner", "separate", "--no-distil-back", "--lr", "corrections=1e-3"],
                  "self_distill": ["--text-learner", "self_distill", "--no-distil-back", "--lr", "self_distill=1e-4"],
                  "distil_back": ["--text-learner", "separate", "--distil-back", "--lr", "corrections=1e-3"],
                  "distil_back_lr2e-4": ["--text-learner", "separate", "--distil-back", "--lr", "corrections=2e-4"],
                  "distil_back_lr5e-4": ["--text-learner", "separate", "--distil-back", "--lr", "corrections=5e-4"],
                  "distil_back_lr7e-4": ["--text-learner", "separate", "--distil-back", "--lr", "corrections=7e-4"],
                  "self_distill_distil_back": ["--text-learner", "self_distill", "--distil-back", "--lr",
                                               "self_distill=2e-4"],
                  "self_distill_distil_back_lr3e-4": ["--text-learner", "self_distill", "--distil-back", "--lr",
                                                      "self_distill=3e-4"]}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--max-tokens", type=int, default=64)
    parser.add_argument("--corrections", type=int, default=64)
    parser.add_argument("--prefill-chunks", default="0,16,64",
                        help="the steady load runs once per setting of `apiary serve --prefill-chunk` (0: off)")
    parser.add_argument("--precisions", default="float32",
                        help="the steady load also runs once per `apiary serve --precision` given (float32, bf16, int8)")
    parser.add_argument("--parts", default="load,steady,feedback,self_distill,distil_back,specialist",
                        help="which to run (the others are kept from docs/serve_load.json): load, steady, feedback "
                             "(default gate), self_distill (default gate, corrections learned by self-distillation), "
                             "distil_back (default gate, SFT then distilled back toward the core), distil_back_lr2e-4 "
                             "(the same, SFT at lr 2e-4), distil_back_lr5e-4, distil_back_lr7e-4, self_distill_distil_back "
                             "(self-distillation at lr 2e-4 with distil_back), self_distill_distil_back_lr3e-4 (the same at 3e-4), "
                             "specialist (the gate on the worker's job only: retention checks off)")
    parser.add_argument("--seed", type=int, default=0,
                        help="the feedback parts learn from the seed-th 64 training questions' corrections; "
                             "a seed > 0 is stored beside seed 0's run (PART_sSEED)")
    args = parser.parse_args()
    parts = set(args.parts.split(","))
    path = DOCS / "serve_load.json"
    fig = json.loads(path.read_text()) if path.exists() else {}
    if isinstance(fig.get("steady"), dict):  # written before --prefill-chunk: one run, prompts read whole
        fig["steady"] = [fig["steady"] | {"prefill_chunk": 0}]
    work = Path(tempfile.mkdtemp(prefix="apiary-serve-"))
    print(f"work directory: {work}", flush=True)
    fig |= {"machine": machine(), "max_tokens": args.max_tokens, "levels": [1, 4, 16],
            "requests": {1: 6, 4: 4, 16: 3}}  # requests per client
    if "load" in parts:
        fig["load"] = load_suite(work, fig["levels"], {int(k): v for k, v in fig["requests"].items()}, args.max_tokens)
    if "steady" in parts:
        fig["steady"] = merged_steady(fig.get("steady", []), steady_suite(
            work, 16, 10, args.max_tokens, [int(c) for c in args.prefill_chunks.split(",")], args.precisions.split(",")))
    for part in FEEDBACK_PARTS:
        if part in parts:
            key = part + (f"_s{args.seed}" if args.seed else "")
            fig[key] = feedback_suite(work / key, args.corrections, args.corrections, 3600, FEEDBACK_PARTS[part], args.seed)
    if "specialist" in parts:
        fig["specialist"] = feedback_suite(work / "specialist", args.corrections, args.corrections, 3600,
                                           ["--max-kl", "1000", "--max-flips", "1", "--text-learner", "separate",
                                            "--no-distil-back", "--lr", "corrections=1e-3"])
    path.write_text(json.dumps(fig, indent=2))
    plot(fig, DOCS / "serve_load.png")
    write_section(TITLE, markdown(fig, "python -m apiary.bench.serve_load", FEEDBACK_PARTS))
    print(json.dumps({k: v for k, v in fig.items() if k != "load"}, indent=2, default=str))


if __name__ == "__main__":
    os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
    main()
