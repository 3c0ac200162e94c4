"""The pages people read: Overview, a worker, Episodes and one episode's transcript, and the static
files (htmx, the style sheet). Every handler reads through `views` and `store.browse`, scoped to the
visitor's tenant; a worker or episode of another tenant is answered 404, as one that does not exist."""

from __future__ import annotations

from datetime import datetime
from importlib.resources import files

from fastapi import FastAPI, Request
from fastapi.responses import Response
from starlette.concurrency import run_in_threadpool

from apiary.serve.service import WORKER
from apiary.store.browse import EpisodeFilter, facets, find_episodes
from apiary.web import charts, views
from apiary.web.ui import PREFIX, PageRefused, Ui, is_htmx

STATIC = {"htmx.min.js": "text/javascript", "style.css": "text/css", "htmx-LICENSE.txt": "text/plain"}
CHARTS = {"heldout": lambda page: charts.heldout_chart(page["heldout"]),
          "curves": lambda page: charts.curve_chart(page["curve"]),
          "retention": lambda page: charts.retention_chart(page["gates"])}


def served_versions(ui: Ui) -> dict[str, int | None]:
    """Worker -> the adapter version its route serves right now (None: not served yet)."""
    routes = ui.service.engine.routes()
    return {model[len(WORKER):]: route.adapter_version for model, route in routes.items() if model.startswith(WORKER)}


def add_pages(app: FastAPI, ui: Ui) -> None:
    """Overview and a worker's page, with its run and charts."""
    @app.get(PREFIX, include_in_schema=False)
    @app.get(PREFIX + "/", include_in_schema=False)
    async def overview(request: Request):
        session = ui.visitor(request)
        figures = await run_in_threadpool(views.overview, ui.store, ui.scope(session), served_versions(ui))
        return ui.render(request, session, "overview.html", **figures)

    @app.get(PREFIX + "/workers/{name}", include_in_schema=False)
    async def worker(request: Request, name: str):
        session = ui.visitor(request)
        page = await run_in_threadpool(views.worker_page, ui.store, ui.scope(session), name)
        if page is None:
            raise PageRefused(404, f"no worker named {name!r}")
        return ui.render(request, session, "worker.html", served=served_versions(ui).get(name),
                         learning=ui.service.learning, **page)

    @app.get(PREFIX + "/workers/{name}/run", include_in_schema=False)
    async def run(request: Request, name: str):
        session = ui.visitor(request)
        if not ui.scope(session).owns_worker(name):
            raise PageRefused(404, f"no worker named {name!r}")
        progress = await run_in_threadpool(views.run_progress, ui.store, name)
        return ui.render(request, session, "run.html", run=progress, name=name)

    @app.get(PREFIX + "/workers/{name}/{chart}.svg", include_in_schema=False)
    async def chart(request: Request, name: str, chart: str):
        session = ui.visitor(request)
        page = await run_in_threadpool(views.worker_page, ui.store, ui.scope(session), name)
        if page is None or chart not in CHARTS:
            raise PageRefused(404, f"no chart {chart!r} of a worker {name!r}")
        svg = await run_in_threadpool(CHARTS[chart], page)
        return ui.respond(request, Response(svg, media_type="image/svg+xml"), session)

    add_browsing(app, ui)


def add_browsing(app: FastAPI, ui: Ui) -> None:
    """Episodes, one episode, and the static files."""
    @app.get(PREFIX + "/episodes", include_in_schema=False)
    async def episodes(request: Request):
        session = ui.visitor(request)
        wanted = episode_filter(dict(request.query_params))
        scope = ui.scope(session)
        found, total = await run_in_threadpool(find_episodes, ui.store, scope, wanted)
        template = "episode_rows.html" if is_htmx(request) else "episodes.html"
        return ui.render(request, session, template, episodes=found, total=total, wanted=wanted,
                         choices=await run_in_threadpool(facets, ui.store, scope), query=request.url.query)

    @app.get(PREFIX + "/episodes/{episode_id}", include_in_schema=False)
    async def episode(request: Request, episode_id: int):
        session = ui.visitor(request)
        found = await run_in_threadpool(ui.store.episode, episode_id)
        if not ui.scope(session).owns(found):
            raise PageRefused(404, f"no episode {episode_id}")
        feedback = await run_in_threadpool(ui.store.feedback, None, None, [episode_id])
        return ui.render(request, session, "episode.html", episode=found, feedback=feedback)

    @app.get(PREFIX + "/static/{name}", include_in_schema=False)
    async def static(name: str):
        if name not in STATIC:
            raise PageRefused(404, f"no file {name!r}")
        body = (files("apiary.web") / "static" / name).read_bytes()
        return Response(body, media_type=STATIC[name], headers={"Cache-Control": "max-age=3600"})


def episode_filter(query: dict[str, str]) -> EpisodeFilter:
    """The Episodes page's filters from its query string; a malformed one is a 400 that names it."""
    def number(key: str, low: float, high: float) -> float | None:
        text = query.get(key, "").strip()
        if not text:
            return None
        try:
            value = float(text)
        except ValueError:
            raise PageRefused(400, f"{key} must be a number, got {text!r}") from None
        if not low <= value <= high:
            raise PageRefused(400, f"{key} must be from {low:g} to {high:g}, got {text!r}")
        return value

    def moment(key: str) -> datetime | None:
        text = query.get(key, "").strip()
        try:
            return datetime.fromisoformat(text) if text else None
        except ValueError:
            raise PageRefused(400, f"{key} must be a date such as 2026-11-30, got {text!r}") from None

    until = moment("until")
    if until is not None and len(query["until"].strip()) == 10:  # a day: up to its end
        until = until.replace(hour=23, minute=59, second=59)
    return EpisodeFilter(worker=query.get("worker") or None, job=query.get("job") or None,
                         origin=query.get("origin") or None, min_score=number("min_score", 0, 1),
                         max_score=number("max_score", 0, 1), since=moment("since"), until=until,
                         offset=int(number("offset", 0, 1e9) or 0))
