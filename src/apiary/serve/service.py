"""What the server does, without HTTP: answer chats, take feedback, list workers, keep routes live.

Every reply is an episode in the store (origin "serve", unscored, with the tenant, the worker and
the adapter and core versions that wrote it), recorded before its first token is sent, so its id
is the response id. Feedback, and documents added to a worker, are validated and stored before they
are acknowledged. A watcher thread keeps the engine's routes equal to the store: the current core
version for "core", each worker's live adapter version (released by `learn`, by the gate, or by a
rollback) for "worker:NAME".
"""

from __future__ import annotations

import hashlib
import json
import logging
import re
import threading
import time
from dataclasses import dataclass, field

from apiary.hive.feedback_learning import FeedbackLearning, LearningConfig
from apiary.hive.hive import Hive
from apiary.models.bf16 import SERVING_PRECISIONS, check_precision
from apiary.models.decoder import Request, check_prefill_chunk
from apiary.models.prompt_format import prompt_ids
from apiary.serve.engine import Engine, Route
from apiary.serve.metrics import Metrics
from apiary.store.documents import BadDocument, unlearned
from apiary.store.feedback import FeedbackError, from_dict
from apiary.store.records import Episode, Feedback
from apiary.store.store import LOCAL_TENANT

log = logging.getLogger("apiary.serve")
CORE = "core"
WORKER = "worker:"
ROLES = {"system", "user", "assistant"}
MAX_DOCUMENTS = 16  # documents one request may add (each at most the job's max_chars; openapi.DOCUMENTS says it too)


class ServeError(Exception):
    """A request the server refuses; `status` is the HTTP status that says why."""

    def __init__(self, status: int, message: str):
        super().__init__(message)
        self.status, self.message = status, message


@dataclass
class ServeConfig:
    max_batch: int = 32  # rows decoded together per core version
    # prompt tokens a joining request is read by per decoding step (0: whole, the running rows waiting): 64 keeps
    # a running reply's pause to one 64-token forward (~0.25 s for the 135M core on 2 cores) and reads most chat
    # prompts in one forward, as without chunks
    prefill_chunk: int = 64
    # "bf16": answer from a bfloat16 copy of each core (models.bf16.for_serving); "int8": the same with int8 weights
    # for products of few rows (a few requests at once)
    precision: str = "float32"
    max_prompt_tokens: int = 4096
    max_tokens: int = 1024  # the most completion tokens one request may ask for
    default_max_tokens: int = 256
    watch_seconds: float = 1.0  # how often the store is checked for releases and rollbacks
    learn: bool = True  # workers learn from feedback in the background
    requests_per_minute: int = 0  # per tenant, answered 429 past it (serve.limits); 0: no limit
    generation_timeout: float = 120.0  # seconds a reply may take, queue included; past it: 504 (or an error event)
    body_timeout: float = 30.0  # seconds a request's body may take to arrive; past it: 408, nothing read or written
    learning: LearningConfig = field(default_factory=LearningConfig)

    def __post_init__(self) -> None:
        check_prefill_chunk(self.prefill_chunk)
        check_precision(self.precision, SERVING_PRECISIONS)
        rate = self.requests_per_minute
        if not isinstance(rate, int) or isinstance(rate, bool) or rate < 0:
            raise ValueError(f"the rate limit is a whole number of requests a minute >= 0 (0: none), got {rate!r}")
        for name, timeout in (("generation", self.generation_timeout), ("body", self.body_timeout)):
            if not isinstance(timeout, (int, float)) or isinstance(timeout, bool) or not 0 < timeout < float("inf"):
                raise ValueError(f"the {name} timeout is a number of seconds > 0, got {timeout!r}")


@dataclass
class Chat:
    """A validated chat completion request."""

    model: str
    messages: list[dict]
    max_tokens: int
    temperature: float
    top_p: float
    stop: list[str]
    stream: bool
    include_usage: bool = False  # stream_options.include_usage: a last chunk with the token counts


@dataclass
class Reply:
    episode_id: int
    model: str
    route: Route
    prompt_tokens: int
    request: Request
    stop: list[str]

    def text(self, tokenizer) -> tuple[str, str]:
        """The reply so far, cut at the first stop string, and its finish reason."""
        text = tokenizer.decode(self.request.tokens, skip_special_tokens=True)
        cut = min((text.find(s) for s in self.stop if s in text), default=-1)
        if cut >= 0:
            return text[:cut], "stop"
        return text, self.request.finish_reason or "length"


class Service:
    def __init__(self, hive_path, core: str | None = None, config: ServeConfig | None = None, template: str | None = None):
        self.config = config or ServeConfig()
        self.hive = Hive(hive_path, core=core, template=template)  # its cores are the engine's; learning uses a Hive of its own
        self.store = self.hive.store
        current = self.hive.core  # every core version shares the base's tokenizer, stop tokens and context
        self.tokenizer, self.stop_ids = current.tokenizer, tuple(current.stop_token_ids)
        self.context = current.model.config.max_position_embeddings
        self.metrics = Metrics()
        self.engine = Engine(self.config.max_batch, prefill_chunk=self.config.prefill_chunk, precision=self.config.precision)
        self._stop = threading.Event()
        self.sync()
        self._watcher = threading.Thread(target=self._watch, name="apiary-watch", daemon=True)
        self._watcher.start()
        self.learning = None
        if self.config.learn:
            self.learning = FeedbackLearning(lambda: Hive(hive_path, core=core, template=template), self.config.learning,
                                             self.metrics.learned)
            self.learning.start()

    def close(self) -> None:
        self._stop.set()
        self._watcher.join()
        if self.learning is not None:
            self.learning.stop()
        self.engine.stop()

    # -- routes ---------------------------------------------------------------------------------
    def sync(self) -> None:
        """Make every route match the store: the current core, each worker's live adapter version."""
        wanted = {CORE: (self.store.current_core(), None, 0)}
        for w in self.store.workers():
            wanted[WORKER + w.name] = (w.core_version, w.name, w.live_version)
        for model, (core_version, worker, version) in wanted.items():
            route = self.engine.route(model)
            if route is not None and (route.core_version, route.adapter_version) == (core_version, version):
                continue
            directory = self.store.fetched(self.store.adapter_dir(worker, version)) if version else None
            self.engine.deploy(model, self.hive.core_at(core_version), directory, version)
            self.metrics.swaps.labels(kind(model)).inc()
            log.info("%s now served by core v%d%s", model, core_version, f" + adapter v{version}" if version else "")

    def _watch(self) -> None:
        while not self._stop.wait(self.config.watch_seconds):
            try:
                self.sync()
            except Exception:  # noqa: BLE001 - keep serving the routes that are live
                log.exception("could not bring the served versions up to date")

    # -- chat -----------------------------------------------------------------------------------
    def parse_chat(self, tenant: str, data) -> Chat:
        """Validate a chat completion body (OpenAI's shape); ServeError(400/404) says what is wrong."""
        if not isinstance(data, dict):
            raise ServeError(400, "the body must be a JSON object")
        for key in ("model", "messages"):
            if key not in data:
                raise ServeError(400, f"missing required field '{key}'")
        model = data["model"]
        if not isinstance(model, str) or not self.visible(tenant, model):
            raise ServeError(404, f"model {model!r} not found; this server has: {', '.join(self.models(tenant))}")
        n = data.get("n", 1)
        if n != 1:
            raise ServeError(400, "'n' must be 1: ask again for another sample")
        max_tokens = data.get("max_completion_tokens", data.get("max_tokens"))
        max_tokens = min(self.config.default_max_tokens, self.config.max_tokens) if max_tokens is None else max_tokens
        stop = data.get("stop") or []
        stop = [stop] if isinstance(stop, str) else stop
        options = data.get("stream_options") or {}
        if not isinstance(options, dict):
            raise ServeError(400, "'stream_options' must be an object such as {\"include_usage\": true}")
        chat = Chat(model=model, messages=_messages(data["messages"]), max_tokens=max_tokens,
                    temperature=_number(data, "temperature", 1.0, 0.0, 2.0), top_p=_number(data, "top_p", 1.0, 0.0, 1.0),
                    stop=stop, stream=bool(data.get("stream", False)),
                    include_usage=bool(options.get("include_usage", False)))
        if not isinstance(max_tokens, int) or isinstance(max_tokens, bool) or not 1 <= max_tokens <= self.config.max_tokens:
            raise ServeError(400, f"'max_tokens' must be an integer from 1 to {self.config.max_tokens}, got {max_tokens!r}")
        if not isinstance(stop, list) or len(stop) > 4 or not all(isinstance(s, str) and s for s in stop):
            raise ServeError(400, "'stop' must be a non-empty string or a list of up to 4 of them")
        if chat.top_p == 0.0:
            raise ServeError(400, "'top_p' must be greater than 0")
        return chat

    def start(self, tenant: str, chat: Chat, on_token=None, on_done=None) -> Reply:
        """Queue the chat on its model's live route and record its episode; returns at once."""
        prompt = prompt_ids(self.tokenizer, chat.messages)
        if len(prompt) > self.config.max_prompt_tokens:
            raise ServeError(400, f"the prompt is {len(prompt)} tokens; this server takes at most "
                                  f"{self.config.max_prompt_tokens}")
        if len(prompt) + chat.max_tokens > self.context:
            raise ServeError(400, f"the prompt ({len(prompt)} tokens) plus max_tokens ({chat.max_tokens}) exceeds the "
                                  f"model's context of {self.context} tokens")
        request = Request(prompt=prompt, max_new_tokens=chat.max_tokens, temperature=chat.temperature, top_p=chat.top_p,
                          stop_ids=self.stop_ids, on_token=on_token, on_done=on_done,
                          done=self._stop_check(chat.stop), deadline=time.monotonic() + self.config.generation_timeout)
        try:
            route = self.engine.submit(chat.model, request)
        except KeyError:
            raise ServeError(404, f"model {chat.model!r} is not being served") from None
        worker = chat.model[len(WORKER):] if chat.model.startswith(WORKER) else None
        record = self.store.worker(worker) if worker else None
        episode = Episode(job=record.job if record else "chat", task_id="serve:" + _digest(chat.messages),
                          messages=chat.messages, completion="", score=None, origin="serve", worker=worker,
                          adapter_version=route.adapter_version, tenant=tenant)
        try:
            episode_id = self.store.add_episodes([episode])[0]
        except Exception:
            request.cancelled = True
            raise
        self.metrics.prompt_tokens.labels(kind(chat.model)).inc(len(prompt))
        return Reply(episode_id=episode_id, model=chat.model, route=route, prompt_tokens=len(prompt), request=request,
                     stop=chat.stop)

    def finish(self, reply: Reply) -> tuple[str, str]:
        """Store the finished reply's text; returns (text, finish_reason)."""
        text, reason = reply.text(self.tokenizer)
        self.store.finish_episode(reply.episode_id, text)
        self.metrics.completion_tokens.labels(kind(reply.model)).inc(len(reply.request.tokens))
        return text, reason

    def _stop_check(self, stop: list[str]):
        if not stop:
            return None
        return lambda tokens: any(s in self.tokenizer.decode(tokens[-16:], skip_special_tokens=True) for s in stop)

    # -- feedback, models, workers ----------------------------------------------------------------
    def feedback(self, tenant: str, data) -> Feedback:
        """Validate and store one piece of feedback on a response of this tenant; it is in the store
        when this returns."""
        if not isinstance(data, dict):
            raise ServeError(400, "the body must be a JSON object")
        data = dict(data)
        if "id" not in data and "episode_id" not in data:
            raise ServeError(400, "missing required field 'id' (the response id)")
        data["episode_id"] = _response_id(data.pop("id", data.get("episode_id")))
        if data.get("prefer") is not None:
            data["prefer"] = _response_id(data["prefer"])
        for episode_id in (data["episode_id"], data.get("prefer")):
            if episode_id is not None and not self._owns(tenant, episode_id):
                raise ServeError(404, f"no response {episode_id}")
        try:
            item = self.store.add_feedback([from_dict(data)])[0]
        except FeedbackError as err:
            raise ServeError(400, str(err)) from None
        self.metrics.feedback.labels(item.kind).inc()
        if self.learning is not None:
            self.learning.wake()
        return item

    def add_documents(self, tenant: str, data) -> dict:
        """Validate and store documents for one of this tenant's workers whose job is a documents job, all or
        none (Hive.add_documents); they are in the hive, and in the worker's job, when this returns, and
        learned in the background."""
        if not isinstance(data, dict):
            raise ServeError(400, "the body must be a JSON object")
        for key in ("model", "documents"):
            if key not in data:
                raise ServeError(400, f"missing required field '{key}'")
        unknown = sorted(set(data) - {"model", "documents"})
        if unknown:
            raise ServeError(400, f"unknown field(s) {', '.join(unknown)}; expected model and documents")
        model, items = data["model"], data["documents"]
        if not isinstance(model, str) or not self.visible(tenant, model):
            raise ServeError(404, f"model {model!r} not found; this server has: {', '.join(self.models(tenant))}")
        if not model.startswith(WORKER):
            raise ServeError(400, f"{model} does not learn documents: documents are added to a worker ('worker:NAME') "
                                  "whose job is a documents job (docs:PATH)")
        if not isinstance(items, list) or not 1 <= len(items) <= MAX_DOCUMENTS or not all(isinstance(i, dict) for i in items):
            raise ServeError(400, f"'documents' must be a list of 1 to {MAX_DOCUMENTS} {{\"name\", \"text\"}} objects")
        unknown = sorted({key for i in items for key in i} - {"name", "text"})
        if unknown:
            raise ServeError(400, f"unknown field(s) {', '.join(unknown)} in a document; a document is a name and a text")
        try:
            added = self.hive.add_documents(model[len(WORKER):], [(i.get("name"), i.get("text")) for i in items])
        except BadDocument as err:
            raise ServeError(400, str(err)) from None
        except ValueError:  # its documents job cannot be built (a folder gone, a file spoilt): the operator's to mend
            log.exception("the documents job of %s cannot be read", model)
            raise ServeError(500, f"the documents of {model} cannot be read on this server; its log says why") from None
        if self.learning is not None:
            self.learning.wake()
        return {"object": "documents", "model": model, "learning": self.learning is not None,
                "documents": [{"name": a.name, "characters": a.characters, "replaced": a.replaced} for a in added]}

    def models(self, tenant: str) -> list[str]:
        return [CORE] + [WORKER + w.name for w in self.store.workers() if (w.tenant or LOCAL_TENANT) == tenant]

    def visible(self, tenant: str, model: str) -> bool:
        return model in self.models(tenant)

    def workers(self, tenant: str) -> list[dict]:
        """The tenant's workers: job, core version, live and latest adapter versions, the live
        version's held-out score, unlearned feedback and documents, and the latest gate decision. On a hive that
        shares its artifacts the documents are counted in this node's folder when background learning runs (its
        loop brings the folder up to date every poll), and read from the artifact URL only when it does not, so a
        request does not list the URL once per worker."""
        rows = []
        shared = None if self.learning is not None else self.store.shared
        for w in self.store.workers():
            if (w.tenant or LOCAL_TENANT) != tenant:
                continue
            live = w.live_version
            evals = [e for e in self.store.evals(w.name) if e.adapter_version == live and e.core_version == w.core_version]
            if live == 0:
                evals = [e for e in self.store.evals(None)
                         if e.worker is None and e.job == w.job and e.core_version == w.core_version]
            decisions = self.store.decisions_like(f"worker:{w.name}:")
            route = self.engine.route(WORKER + w.name)
            rows.append({"id": WORKER + w.name, "name": w.name, "job": w.job, "core_version": w.core_version,
                         "live_version": live, "served_version": route.adapter_version if route else None,
                         "latest_version": w.latest_version,
                         "heldout": {"score": evals[-1].score, "n": evals[-1].n, "adapter_version": evals[-1].adapter_version}
                         if evals else None,
                         "unlearned_feedback": self.store.count_feedback(w.name, unconsumed=True),
                         "unlearned_documents": len(unlearned(self.store.root, w.name, shared)),
                         "last_gate": _gate_summary(decisions[-1]) if decisions else None,
                         "learning": bool(self.learning and self.learning.busy)})
        return rows

    def _owns(self, tenant: str, episode_id: int) -> bool:
        episode = self.store.episode(episode_id)
        return episode is not None and (episode.tenant or LOCAL_TENANT) == tenant


def _gate_summary(decision) -> dict:
    evidence = decision.evidence
    return {"candidate": decision.candidate, "passed": decision.passed, "reasons": decision.reasons,
            "heldout": evidence.get("candidate"), "live_heldout": evidence.get("released"),
            "retention_kl": evidence.get("retention_kl"), "flips": evidence.get("flips"), "at": decision.created_at.isoformat()}


def kind(model: str) -> str:
    """A model's metrics label: "core" or "worker" (never the worker's name)."""
    return "worker" if model.startswith(WORKER) else "core"


def _messages(messages) -> list[dict]:
    if not isinstance(messages, list) or not messages:
        raise ServeError(400, "'messages' must be a non-empty list of {role, content} objects")
    out = []
    for n, m in enumerate(messages):
        if not isinstance(m, dict) or not isinstance(m.get("role"), str) or m["role"] not in ROLES:  # a list is unhashable
            raise ServeError(400, f"messages[{n}]: 'role' must be one of {', '.join(sorted(ROLES))}")
        content = m.get("content")
        if isinstance(content, list):  # OpenAI content parts: only text is understood here
            if not all(isinstance(p, dict) and p.get("type") == "text" and isinstance(p.get("text"), str) for p in content):
                raise ServeError(400, f"messages[{n}]: only text content parts are supported")
            content = "".join(p["text"] for p in content)
        if not isinstance(content, str):
            raise ServeError(400, f"messages[{n}]: 'content' must be a string")
        out.append({"role": m["role"], "content": content})
    return out


def _number(data: dict, key: str, default: float, low: float, high: float) -> float:
    value = data.get(key)
    if value is None:
        return default
    if not isinstance(value, (int, float)) or isinstance(value, bool) or not low <= value <= high:
        raise ServeError(400, f"'{key}' must be a number from {low:g} to {high:g}, got {value!r}")
    return float(value)


def _response_id(value) -> int:
    """A response id as sent back to us: 12, "12" (the `id` of a completion)."""
    if isinstance(value, int) and not isinstance(value, bool):
        return value
    if isinstance(value, str) and re.fullmatch(r"[0-9]+", value.strip(), re.ASCII):  # not isdigit: "²" is a digit
        return int(value)
    raise ServeError(400, f"a response id is the 'id' of a chat completion (digits), got {value!r}")


def _digest(messages: list[dict]) -> str:
    return hashlib.sha1(json.dumps(messages, sort_keys=True).encode()).hexdigest()[:16]
