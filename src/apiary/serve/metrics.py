"""Prometheus metrics of a server: requests, latency, tokens, feedback, learning steps, gate decisions.

Labels never name a worker or a tenant (one tenant must not learn another's worker names from
/metrics): models are labelled "core" or "worker"."""

from __future__ import annotations

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, generate_latest


class Metrics:
    def __init__(self):
        self.registry = CollectorRegistry()
        r = self.registry
        self.requests = Counter("apiary_requests", "HTTP requests answered", ["endpoint", "status"], registry=r)
        self.latency = Histogram("apiary_request_latency_seconds", "Chat completion latency (request to last token)",
                                 ["model"], registry=r,
                                 buckets=(0.05, 0.1, 0.25, 0.5, 1, 2, 4, 8, 16, 32, 64, 128))
        self.prompt_tokens = Counter("apiary_prompt_tokens", "Prompt tokens read", ["model"], registry=r)
        self.completion_tokens = Counter("apiary_completion_tokens", "Completion tokens written", ["model"], registry=r)
        self.feedback = Counter("apiary_feedback", "Feedback accepted", ["kind"], registry=r)
        self.learning_steps = Counter("apiary_learning_steps", "Adapter updates made while serving", registry=r)
        self.gate = Counter("apiary_gate_decisions", "Gate decisions on adapter versions learned while serving",
                            ["passed"], registry=r)
        self.swaps = Counter("apiary_adapter_swaps", "Routes switched to a new core or adapter version", ["model"],
                             registry=r)
        self.running = Gauge("apiary_requests_in_flight", "Chat completions being answered", registry=r)

    def text(self) -> bytes:
        return generate_latest(self.registry)

    def learned(self, outcome: dict) -> None:
        self.learning_steps.inc(outcome["learn"]["steps"])
        if outcome["gate"] is not None:
            self.gate.labels(str(outcome["gate"]["passed"]).lower()).inc()
