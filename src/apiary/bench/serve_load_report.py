"""The serving benchmark's plot and its section of docs/benchmarks.md (bench.serve_load runs it)."""

from __future__ import annotations

from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402

TITLE = "Serving: load, and learning from feedback over HTTP"


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


def markdown(fig: dict, command: str, parts: dict) -> str:
    """The section of docs/benchmarks.md; `parts`: the feedback runs by name (serve_load.FEEDBACK_PARTS)."""
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

{_learning(fig, parts)}"""


def _learning(fig: dict, parts: dict) -> str:
    """The feedback-over-HTTP runs' paragraphs."""
    return f"""**Learning from feedback over HTTP.** A worker on chain_sum (two one-digit terms; 100 held-out problems)
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

{_seeds(fig, parts)}

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


def _seeds(fig: dict, parts: dict) -> str:
    """The runs on other corrections (`--seed N`: the next 64 training questions), one line each."""
    lines = []
    for key in sorted(k for k in fig if k.rpartition("_s")[0] in parts):
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
