"""The HTTP layer: OpenAI's chat completions API plus feedback and documents, over a `Service`. Only translation
lives here: reading bodies, keys to tenants, errors to status codes, replies to JSON and SSE."""

from __future__ import annotations

import asyncio
import json
import socket
import threading
import time
from contextlib import asynccontextmanager

import uvicorn
from fastapi import FastAPI, Request
from fastapi.responses import JSONResponse, Response, StreamingResponse
from starlette.concurrency import run_in_threadpool
from starlette.exceptions import HTTPException

from apiary.serve.limits import RateLimiter
from apiary.serve.openapi import CHAT, DOCUMENTS, FEEDBACK, body
from apiary.serve.service import Chat, Reply, ServeError, Service, kind
from apiary.serve.tenants import Tenants, Unauthorized
from apiary.web import mount_pages
from apiary.web.ui import PREFIX as PAGES

MAX_BODY = 1 << 20  # bytes
LOCALHOST = {"127.0.0.1", "localhost", "::1"}


def create_app(service: Service, tenants: Tenants, max_body: int = MAX_BODY) -> FastAPI:
    @asynccontextmanager
    async def lifespan(_app):
        yield
        await run_in_threadpool(service.close)

    app = FastAPI(title="apiary", lifespan=lifespan)
    metrics = service.metrics

    limiter = RateLimiter(service.config.requests_per_minute)
    app.middleware("http")(_guard(tenants, limiter, metrics, max_body, service.config.body_timeout))

    @app.exception_handler(ServeError)
    async def refused(_request, err: ServeError):
        return _error(err.status, err.message)

    @app.exception_handler(HTTPException)
    async def no_such_route(request: Request, err: HTTPException):  # unknown path or method: OpenAI's error shape too
        return _error(err.status_code, f"{err.detail}: {request.method} {request.url.path}")

    @app.get("/health")
    async def health():  # open to all: no worker names (they belong to tenants)
        routes = service.engine.routes()
        return {"status": "ok", "models": len(routes), "core_version": routes["core"].core_version}

    @app.get("/metrics")
    async def prometheus():
        return Response(metrics.text(), media_type="text/plain; version=0.0.4")

    @app.get("/v1/models")
    async def models(request: Request):
        names = await run_in_threadpool(service.models, request.state.tenant)
        return {"object": "list", "data": [{"id": n, "object": "model", "created": 0, "owned_by": "apiary"} for n in names]}

    @app.get("/v1/workers")
    async def workers(request: Request):
        return {"object": "list", "data": await run_in_threadpool(service.workers, request.state.tenant)}

    @app.post("/v1/feedback", openapi_extra=body(FEEDBACK))
    async def feedback(request: Request):
        item = await run_in_threadpool(service.feedback, request.state.tenant, await _json(request, max_body))
        return {"object": "feedback", "id": item.id, "response_id": str(item.episode_id), "kind": item.kind,
                "conflict": item.conflict}

    @app.post("/v1/documents", openapi_extra=body(DOCUMENTS))
    async def documents(request: Request):
        return await run_in_threadpool(service.add_documents, request.state.tenant, await _json(request, max_body))

    @app.post("/v1/chat/completions", openapi_extra=body(CHAT))
    async def chat_completions(request: Request):
        return await _complete(service, request.state.tenant, await _json(request, max_body))

    app.state.pages = mount_pages(app, service, tenants)  # the browser pages, under /ui (apiary.web): they sign visitors in themselves
    return app


def _guard(tenants: Tenants, limiter: RateLimiter, metrics, max_body: int, body_timeout: float):
    """Middleware: body size, API key and the tenant's rate limit before anything else; every answer counted
    by endpoint and status. The browser pages (/ui) are let through without a key: they check their own
    session cookie. The body is read here, within `body_timeout` seconds (the routes get it from the cache),
    so a client that sends headers and then trickles or never finishes its body gets 408 and the connection
    closed, instead of holding a server slot forever."""

    async def guard(request: Request, call_next):
        endpoint = request.url.path
        length = request.headers.get("content-length") or "0"
        try:
            if not length.isdigit():
                raise ServeError(400, "the Content-Length header is not a number")
            if int(length) > max_body:
                raise ServeError(413, f"the body is larger than {max_body} bytes")
            request.state.tenant = None if endpoint in ("/health", "/metrics") or _page(endpoint) else tenants.tenant(
                request.headers.get("authorization"))
            wait = None if request.state.tenant is None else limiter.retry_after(request.state.tenant)
        except ServeError as err:
            response = _error(err.status, err.message)
        except Unauthorized as err:
            response = _error(401, str(err))
        else:
            if wait is not None:
                response = _too_many(limiter.capacity, wait)
            elif not await _body_within(request, body_timeout):
                response = _error(408, f"the request body did not arrive within this server's body timeout of "
                                       f"{body_timeout:g} s (apiary serve --body-timeout); send it again")
                response.headers["Connection"] = "close"  # the rest of the body may still come: drop the connection
            else:
                response = await call_next(request)
        metrics.requests.labels(PAGES if _page(endpoint) else endpoint, str(response.status_code)).inc()
        return response

    return guard


async def _body_within(request: Request, seconds: float) -> bool:
    """Read the whole body (cached on the request for the route) within `seconds`; False if it did not come."""
    try:
        await asyncio.wait_for(request.body(), seconds)
    except asyncio.TimeoutError:
        return False
    return True


def _page(path: str) -> bool:
    """A browser page: it has no API key header; its session cookie says the tenant (apiary.web)."""
    return path == PAGES or path.startswith(PAGES + "/")


async def _complete(service: Service, tenant: str, body):
    """A chat completion: queued on the engine, awaited without blocking the event loop, as JSON or SSE."""
    chat = await run_in_threadpool(service.parse_chat, tenant, body)
    loop, events = asyncio.get_running_loop(), asyncio.Queue()
    reply = await run_in_threadpool(service.start, tenant, chat,
                                    lambda token: loop.call_soon_threadsafe(events.put_nowait, token),
                                    lambda _r: loop.call_soon_threadsafe(events.put_nowait, None))
    started = time.perf_counter()
    if chat.stream:
        return StreamingResponse(_stream(service, chat, reply, events, started, chat.include_usage),
                                 media_type="text/event-stream")
    try:
        while await events.get() is not None:
            pass
    finally:
        reply.request.cancelled = True  # a no-op once it finished; stops the work if the client left
    text, reason = await run_in_threadpool(service.finish, reply)
    service.metrics.latency.labels(kind(chat.model)).observe(time.perf_counter() - started)
    if reason == "error":
        raise ServeError(500, "generation failed; the error is in the server's log")
    if reason == "timeout":
        raise ServeError(504, _timed_out(service))
    return {"id": str(reply.episode_id), "object": "chat.completion", "created": int(time.time()), "model": chat.model,
            "system_fingerprint": _fingerprint(reply),
            "choices": [{"index": 0, "message": {"role": "assistant", "content": text}, "finish_reason": reason}],
            "usage": _usage(reply), "apiary": _provenance(reply)}


async def _stream(service: Service, chat: Chat, reply: Reply, events: asyncio.Queue, started: float, usage: bool):
    """Server-sent events in OpenAI's chunk format; the text is sent as it is written (held back only
    where a stop string might be starting or a character is not complete yet)."""
    base = {"id": str(reply.episode_id), "object": "chat.completion.chunk", "created": int(time.time()),
            "model": chat.model, "system_fingerprint": _fingerprint(reply), "apiary": _provenance(reply)}

    def chunk(delta: dict, reason: str | None = None, **extra) -> str:
        return f"data: {json.dumps(base | {'choices': [{'index': 0, 'delta': delta, 'finish_reason': reason}]} | extra)}\n\n"

    sent, hold = 0, max((len(s) for s in chat.stop), default=1) - 1
    finished = False
    try:
        yield chunk({"role": "assistant", "content": ""})
        while (token := await events.get()) is not None:
            text, _ = reply.text(service.tokenizer)
            safe = len(text) - hold if not text.endswith("\ufffd") else len(text.rstrip("\ufffd")) - hold
            if safe > sent:
                yield chunk({"content": text[sent:safe]})
                sent = safe
        finished = True
    finally:
        reply.request.cancelled = not finished  # the client went away: stop writing its reply
        text, reason = await run_in_threadpool(service.finish, reply)
    service.metrics.latency.labels(kind(chat.model)).observe(time.perf_counter() - started)
    if text[sent:]:
        yield chunk({"content": text[sent:]})
    if reason == "timeout":  # the status line is long gone: say it in the stream (OpenAI's clients raise on it)
        yield f"data: {json.dumps({'error': {'message': _timed_out(service), 'type': 'timeout', 'code': 504}})}\n\n"
        yield "data: [DONE]\n\n"
        return
    yield chunk({}, reason if reason != "error" else "stop")
    if usage:
        yield f"data: {json.dumps(base | {'choices': [], 'usage': _usage(reply)})}\n\n"
    yield "data: [DONE]\n\n"


async def _json(request: Request, max_body: int):
    body = await request.body()
    if len(body) > max_body:
        raise ServeError(413, f"the body is larger than {max_body} bytes")
    try:
        return json.loads(body)
    except json.JSONDecodeError as err:
        raise ServeError(400, f"malformed JSON: {err.msg} at line {err.lineno} column {err.colno}") from None
    except UnicodeDecodeError:
        raise ServeError(400, "the body is not UTF-8 text") from None


def _timed_out(service: Service) -> str:
    return (f"the reply took longer than this server's generation timeout of {service.config.generation_timeout:g} s "
            "(apiary serve --generation-timeout); ask for fewer max_tokens or try again")


def _error(status: int, message: str) -> JSONResponse:
    kind = {401: "authentication_error", 403: "permission_error", 404: "not_found_error", 408: "timeout",
            413: "request_too_large",
            429: "rate_limit_error", 504: "timeout"}
    return JSONResponse({"error": {"message": message, "type": kind.get(status, "invalid_request_error"), "code": status}},
                        status_code=status)


def _too_many(per_minute: int, wait: int) -> JSONResponse:
    response = _error(429, f"too many requests: this server takes {per_minute} a minute from each tenant; "
                           f"retry after {wait} s")
    response.headers["Retry-After"] = str(wait)
    return response


def _usage(reply: Reply) -> dict:
    n = len(reply.request.tokens)
    return {"prompt_tokens": reply.prompt_tokens, "completion_tokens": n, "total_tokens": reply.prompt_tokens + n}


def _provenance(reply: Reply) -> dict:
    worker = reply.model.split(":", 1)[1] if reply.model.startswith("worker:") else None
    return {"episode_id": reply.episode_id, "worker": worker, "core_version": reply.route.core_version,
            "adapter_version": reply.route.adapter_version}


def _fingerprint(reply: Reply) -> str:
    return f"core-v{reply.route.core_version}" + (f"-adapter-v{reply.route.adapter_version}" if reply.route.adapter_version else "")


def check_host(host: str, tenants: Tenants) -> None:
    """Without API keys the server is for this machine only."""
    if tenants.open and host not in LOCALHOST:
        raise ValueError(f"refusing to listen on {host} without API keys: give --keys FILE (or set APIARY_KEYS), "
                         "or listen on 127.0.0.1")


class ServerThread:
    """A real uvicorn server on a free localhost port, in a background thread (tests, benchmarks)."""

    def __init__(self, app: FastAPI, host: str = "127.0.0.1"):
        self.socket = socket.socket()
        self.socket.bind((host, 0))
        self.port = self.socket.getsockname()[1]
        self.url = f"http://{host}:{self.port}"
        self.server = uvicorn.Server(uvicorn.Config(app, log_level="warning", lifespan="on"))
        self.thread = threading.Thread(target=self.server.run, kwargs={"sockets": [self.socket]}, daemon=True)

    def __enter__(self) -> "ServerThread":
        self.thread.start()
        while not self.server.started:
            if not self.thread.is_alive():
                raise RuntimeError("the server did not start")
            time.sleep(0.02)
        return self

    def __exit__(self, *exc) -> None:
        self.server.should_exit = True
        self.thread.join()
