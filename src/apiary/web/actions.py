"""What a person can do from the pages besides feedback: roll a worker (or, on a server without keys, the
core) back, ask a worker to learn from its pending feedback now, download the tenant's data, sign in
and out. Every form is CSRF-checked (`Ui.form`); rollbacks go through `Hive.rollback`, as
`apiary rollback` does, and a running server serves the version within a second (its watcher)."""

from __future__ import annotations

import io
import json
import zipfile

from fastapi import FastAPI, Request
from fastapi.responses import Response
from starlette.concurrency import run_in_threadpool

from apiary.serve.tenants import Unauthorized
from apiary.store.browse import EpisodeFilter, Scope, find_episodes
from apiary.web.ui import PREFIX, PageRefused, TooManySignIns, Ui

EXPORT_PAGE = 1000  # episodes read at a time while writing an export


def rollback_worker(ui: Ui, scope: Scope, name: str, fields: dict[str, str]) -> str:
    """Make an earlier live adapter version of the tenant's worker live again; the words for the page."""
    if not scope.owns_worker(name):
        raise PageRefused(404, f"no worker named {name!r}")
    version = _version(fields)
    try:
        ui.service.hive.rollback(version, worker=name)
    except ValueError as err:
        return f"refused: {err}"
    return f"rolled back: worker {name} now serves adapter v{version} (the server switches within a second)"


def rollback_core(ui: Ui, fields: dict[str, str]) -> str:
    """Make an earlier released core version current again (only on a server without keys: the core is shared)."""
    if not ui.tenants.open:
        raise PageRefused(403, "the core is shared by every tenant: roll it back with `apiary rollback` on the hive's "
                               "machine")
    try:
        current = ui.service.hive.rollback(_version(fields))
    except ValueError as err:
        return f"refused: {err}"
    return f"rolled back: the current core is now v{current}"


def _version(fields: dict[str, str]) -> int:
    text = fields.get("version", "").strip()
    if not text.isascii() or not text.isdigit():
        raise PageRefused(400, f"a version is a whole number, got {text!r}")
    return int(text)


def learn_now(ui: Ui, scope: Scope, name: str) -> str:
    if not scope.owns_worker(name):
        raise PageRefused(404, f"no worker named {name!r}")
    if ui.service.learning is None:
        return "this server does not learn (it was started with --no-learn); run `apiary learn` on the hive instead"
    pending = [f for f in ui.store.feedback(name, unconsumed=True) if not f.conflict]
    if not pending:
        return "no pending feedback to learn from"
    ui.service.learning.learn_now(name)
    return (f"learning from {len(pending)} piece(s) of pending feedback has been asked for; the new version goes "
            "through the gate and is served only if it passes")


def export_zip(ui: Ui, scope: Scope) -> bytes:
    """The tenant's workers, episodes and feedback as JSONL files in one zip (the whole hive: `apiary export`)."""
    workers = [w for w in ui.store.workers() if scope.owns_worker(w.name)]
    episodes, offset = [], 0
    while True:
        page, _total = find_episodes(ui.store, scope, EpisodeFilter(limit=EXPORT_PAGE, offset=offset))
        episodes += page
        offset += EXPORT_PAGE
        if len(page) < EXPORT_PAGE:
            break
    feedback = ui.store.feedback(episode_ids=[e.id for e in episodes]) if episodes else []
    out = io.BytesIO()
    with zipfile.ZipFile(out, "w", zipfile.ZIP_DEFLATED) as archive:
        for name, rows in (("workers", workers), ("episodes", episodes[::-1]), ("feedback", feedback)):
            archive.writestr(f"{name}.jsonl", "".join(json.dumps(r.model_dump(mode="json")) + "\n" for r in rows))
    return out.getvalue()


def add_actions(app: FastAPI, ui: Ui) -> None:
    @app.post(PREFIX + "/workers/{name}/rollback", include_in_schema=False)
    async def worker_rollback(request: Request, name: str):
        session = ui.visitor(request)
        fields = await ui.form(request, session)
        said = await run_in_threadpool(rollback_worker, ui, ui.scope(session), name, fields)
        return ui.render(request, session, "said.html", said=said)

    @app.post(PREFIX + "/workers/{name}/learn", include_in_schema=False)
    async def worker_learn(request: Request, name: str):
        session = ui.visitor(request)
        await ui.form(request, session)
        said = await run_in_threadpool(learn_now, ui, ui.scope(session), name)
        return ui.render(request, session, "said.html", said=said)

    @app.post(PREFIX + "/core/rollback", include_in_schema=False)
    async def core_rollback(request: Request):
        session = ui.visitor(request)
        said = await run_in_threadpool(rollback_core, ui, await ui.form(request, session))
        return ui.render(request, session, "said.html", said=said)

    @app.get(PREFIX + "/export.zip", include_in_schema=False)
    async def export(request: Request):
        session = ui.visitor(request)
        body = await run_in_threadpool(export_zip, ui, ui.scope(session))
        headers = {"Content-Disposition": f'attachment; filename="apiary-{session.tenant}.zip"'}
        return ui.respond(request, Response(body, media_type="application/zip", headers=headers), session)

    @app.get(PREFIX + "/login", include_in_schema=False)
    async def login_page(request: Request):
        if ui.tenants.open:
            return ui.redirect(request, PREFIX)
        return ui.render(request, ui.anonymous(request), "login.html", error=None)

    @app.post(PREFIX + "/login", include_in_schema=False)
    async def login(request: Request):
        session = ui.anonymous(request)
        fields = await ui.form(request, session)
        try:
            signed_in = ui.sign_in(request, fields.get("key", ""))
        except Unauthorized as err:
            return ui.render(request, session, "login.html", status=401, error=str(err))
        except TooManySignIns as err:
            refused = ui.render(request, session, "login.html", status=429, error=str(err))
            refused.headers["Retry-After"] = str(err.seconds)
            return refused
        return ui.redirect(request, PREFIX, signed_in)

    @app.post(PREFIX + "/logout", include_in_schema=False)
    async def logout(request: Request):
        session = ui.anonymous(request)
        await ui.form(request, session)
        return ui.redirect(request, PREFIX + "/login", ui.sessions.new(""))
