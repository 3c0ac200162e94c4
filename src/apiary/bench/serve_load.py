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
import matplotlib
import openai

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402

from apiary.bench.report import DOCS, machine, write_section  # noqa: E402

from apiary import Hive  # noqa: E402
from apiary.hive.recipes import ARITH  # noqa: E402
from apiary.learners.anchor import anchor_prompts  # noqa: E402

TITLE = "Serving: load, and learning from feedback over HTTP"
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
    per_client = {int(k): v for k, v in fig["requests"].items()}
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
most 2x). Here each client sends {per_client[top['clients']]} requests; the 16 clients start together, so their
replies mostly start and end in waves and are prefilled together. {_steady(fig, base[-1], single)}

**Learning from feedback over HTTP.** A worker on chain_sum (two one-digit terms; 100 held-out problems)
answers {fig['feedback']['corrections']} training questions through `/v1/chat/completions` and receives the
correction of each through `/v1/feedback`; the server learns from them in the background
(`--min-feedback {fig['feedback']['corrections']}`: one run, corrections learner, 3 epochs; each run below names its
settings), the gate decides, and
the held-out score is read back from `/v1/workers`.

{_feedback("Default gate, SFT at lr 1e-3 without distil_back (the server's settings before 2026-12-01)", fig["feedback"])}

{_feedback("Default gate, corrections learned by self-distillation from context (`--text-learner self_distill`: "
           "12 steps of on-policy reverse KL toward the worker shown the correction as a hint after the question, lr 1e-4)", fig.get("self_distill"))}

{_feedback("Default gate, corrections by SFT, then distilled back (`--distil-back`: a phase of 5 updates of on-policy "
           "distillation toward the core on general prompts after every 5 steps and at the end, lr 2e-4)", fig.get("distil_back"))}

{_feedback("The same with SFT at lr 2e-4 instead of 1e-3 (`--distil-back --lr corrections=2e-4`)",
           fig.get("distil_back_lr2e-4"))}

{_feedback("The same with SFT at lr 5e-4 (`--distil-back --lr corrections=5e-4`)", fig.get("distil_back_lr5e-4"))}

{_feedback("The same with SFT at lr 7e-4 (`--distil-back --lr corrections=7e-4`)", fig.get("distil_back_lr7e-4"))}

{_feedback("Self-distillation from context at lr 2e-4, distilled back (`--text-learner self_distill --distil-back --lr "
           "self_distill=2e-4`; the server's default for corrections since 2026-12-01)", fig.get("self_distill_distil_back"))}

{_feedback("The same at lr 3e-4 (`--text-learner self_distill --distil-back --lr self_distill=3e-4`)",
           fig.get("self_distill_distil_back_lr3e-4"))}

{_seeds(fig)}

{_feedback("Specialist gate (`--max-kl 1000 --max-flips 1`: retention not checked, only the worker's job; "
           "an earlier run, whose flips are counted on the first, 135-item retention suite)",
           fig.get("specialist"))}
"""


def _steady(fig: dict, base: dict, single: dict) -> str:
    figures = fig.get("steady")
    if not figures:
        return ""
    st = figures[0]
    streamed = ", streamed" if "p95_longest_pause_s" in st else ""
    text = (f"Under a longer, staggered load ({st['clients']} clients starting 0.5 s apart, {st['requests']} "
            f"requests{streamed}), where requests join and leave the running batch all the time:")
    for st in figures:
        how = (f"`--prefill-chunk {st['prefill_chunk']}` (a joining prompt read at most {st['prefill_chunk']} tokens "
               "per decoding step)" if st["prefill_chunk"] else "`--prefill-chunk 0` (a joining prompt read whole, the "
               "batch waiting)")
        if st.get("precision", "float32") != "float32":
            how += f" with `--precision {st['precision']}`"
        if "date" in st:
            how += f" ({st['date']})"
        own = (f"; {st['p95_s'] / st['single_p50_s']:.2f}x this server's own single-client p50 of "
               f"{st['single_p50_s']:.2f} s" if "single_p50_s" in st else "")
        pause = (f", longest pause in a reply p95 {st['p95_longest_pause_s']:.2f} s (max {st['max_pause_s']:.2f} s)"
                 if "p95_longest_pause_s" in st else "")
        text += (f" {how}: **{st['tokens_per_s']:.1f} tokens/s** ({st['tokens_per_s'] / base['tokens_per_s']:.1f}x one at "
                 f"a time), p50 {st['p50_s']:.2f} s, **p95 {st['p95_s']:.2f} s ({st['p95_s'] / single['p50_s']:.2f}x "
                 f"single-client{own})**{pause}.")
    return text + (" On 2 CPU cores a forward's cost grows with its tokens, so chunks spread a joining prompt's "
                   "prefill over the running replies' steps (shorter pauses) rather than removing it. A run with a "
                   "date is compared with its own server's single-client latency too; the others, from before "
                   "2026-12-03, ran on the machine's earlier CPU.")


def _feedback(title: str, fb: dict | None) -> str:
    if not fb:
        return ""
    gate = fb["after"]["last_gate"] or {}
    flips = gate.get("flips") or {}
    verdict = "released" if gate.get("passed") else "refused"
    reasons = "" if gate.get("passed") else f" ({'; '.join(gate.get('reasons', []))})"
    return (f"- {title}: the {fb['corrections']} corrections were sent in {fb['seconds_to_send']:.0f} s (the worker "
            f"answered {fb['served_right_before_feedback']:.2f} of the questions right); the gate decided "
            f"{fb['seconds_feedback_to_decision']:.0f} s after the last one: **{verdict}** {gate.get('candidate')}{reasons}. "
            f"Candidate held-out {_one(gate.get('heldout'))} against live {_one(gate.get('live_heldout'))}; retention KL "
            f"{(gate.get('retention_kl') or 0):.3f}, {flips.get('right_to_wrong')} of {flips.get('items')} retention items "
            f"flipped right to wrong. `/v1/workers` held-out: **{fb['before']['heldout']['score']:.2f} before, "
            f"{fb['after']['heldout']['score']:.2f} after** (live adapter v{fb['after']['live_version']}); a request after "
            f"the decision was answered by adapter v{fb['adapter_version_serving_after']}. Metrics: "
            f"{', '.join(m.replace('apiary_', '') for m in fb['metrics'])}.")


def _seeds(fig: dict) -> str:
    """The runs on other corrections (`--seed N`: the next 64 training questions), one line each."""
    lines = []
    for key in sorted(k for k in fig if k.rpartition("_s")[0] in FEEDBACK_PARTS):
        (part, _, seed), fb = key.rpartition("_s"), fig[key]
        gate = fb["after"]["last_gate"] or {}
        flips = gate.get("flips") or {}
        lines.append(f"- `{part}`, seed {seed}: candidate held-out {_one(gate.get('heldout'))} "
                     f"against live {_one(gate.get('live_heldout'))}, retention KL {(gate.get('retention_kl') or 0):.3f}, "
                     f"{flips.get('right_to_wrong')} of {flips.get('items')} flipped: "
                     f"**{'released' if gate.get('passed') else 'refused'}**; `/v1/workers` "
                     f"{fb['before']['heldout']['score']:.2f} before, {fb['after']['heldout']['score']:.2f} after.")
    return ("The same runs on other corrections (`--seed N`):\n\n" + "\n".join(lines)) if lines else ""


def _one(scores: dict | None) -> str:
    return ", ".join(f"{v:.2f}" for v in (scores or {}).values())


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
                        help="the steady load also runs once per `apiary serve --precision` given (float32, bf16)")
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
    write_section(TITLE, markdown(fig, "python -m apiary.bench.serve_load"))
    print(json.dumps({k: v for k, v in fig.items() if k != "load"}, indent=2, default=str))


if __name__ == "__main__":
    os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
    main()
