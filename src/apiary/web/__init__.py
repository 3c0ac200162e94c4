"""The hive in a browser: server-rendered pages on `apiary serve`'s app, under /ui.

Overview (core lineage, releases, gate decisions, workers), a worker's page (held-out score per
version, learning curves, retention, feedback learned, a run in progress), Episodes (filters and full
transcripts), the feedback inbox, and actions (rollback, learn now, export). Jinja2 templates and
htmx (vendored in static/, no CDN) ship inside the package; charts are SVG drawn by matplotlib on
the server. The pages are a thin shell: they read through the store and the hive, and write only
through the same doors as the CLI and the HTTP API.
"""

from __future__ import annotations

from fastapi import FastAPI, Request
from fastapi.responses import HTMLResponse

from apiary.serve.service import Service
from apiary.serve.tenants import Tenants
from apiary.web.actions import add_actions
from apiary.web.inbox import add_inbox
from apiary.web.pages import add_pages
from apiary.web.session import Sessions
from apiary.web.ui import HEADERS, PREFIX, PageRefused, SignIn, Ui


def mount_pages(app: FastAPI, service: Service, tenants: Tenants, sessions: Sessions | None = None) -> Ui:
    """Add the pages to the server's app (same service, same tenants)."""
    ui = Ui(service, tenants, sessions)

    @app.exception_handler(SignIn)
    async def sign_in(request: Request, _err: SignIn):
        return ui.redirect(request, PREFIX + "/login")

    @app.exception_handler(PageRefused)
    async def refused(_request: Request, err: PageRefused):
        html = ui.templates.get_template("refused.html").render(status=err.status, message=err.message, prefix=PREFIX)
        return HTMLResponse(html, status_code=err.status, headers=HEADERS)

    add_pages(app, ui)
    add_inbox(app, ui)
    add_actions(app, ui)
    return ui
