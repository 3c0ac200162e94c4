"""What every page needs: who is asking (sessions, localhost, login), the CSRF check on forms, and
rendering a template into a response with the headers that keep a page from being framed or made
to run a script it did not ship (Content-Security-Policy: scripts only from /ui/static).

Templates are Jinja2 with autoescaping on for every template, so text that came from a model or a
person (a completion holding <script>, an onerror= attribute) is written as text, never as markup.
"""

from __future__ import annotations

from urllib.parse import parse_qsl

from fastapi import Request
from fastapi.responses import HTMLResponse, RedirectResponse
from jinja2 import Environment, PackageLoader, StrictUndefined

from apiary.serve.limits import RateLimiter
from apiary.serve.service import Service
from apiary.serve.tenants import Tenants
from apiary.store.browse import Scope
from apiary.store.store import LOCAL_TENANT
from apiary.web.session import COOKIE, CSRF_FIELD, CSRF_HEADER, Session, Sessions, local_host

PREFIX = "/ui"
SIGN_INS_PER_MINUTE = 10  # wrong keys one client address may try a minute (key guessing); right ones do not count
MAX_FORM = 256 * 1024  # bytes of a form body
HEADERS = {
    "Content-Security-Policy": "default-src 'self'; script-src 'self'; style-src 'self' 'unsafe-inline'; "
                               "img-src 'self' data:; frame-ancestors 'none'; form-action 'self'; base-uri 'none'",
    "X-Frame-Options": "DENY", "X-Content-Type-Options": "nosniff", "Referrer-Policy": "same-origin",
    "Cache-Control": "no-store",
}


class PageRefused(Exception):
    """A page or form the visitor may not have; `status` and `message` say why (shown as a page)."""

    def __init__(self, status: int, message: str):
        super().__init__(message)
        self.status, self.message = status, message


class SignIn(Exception):
    """The visitor has no session of a tenant: send them to the login page."""


class TooManySignIns(Exception):
    """Too many wrong keys from one address: it may try again after `seconds`."""

    def __init__(self, seconds: int):
        super().__init__(f"too many wrong keys from your address: this server takes {SIGN_INS_PER_MINUTE} a minute; "
                         f"try again in {seconds} s")
        self.seconds = seconds


class Ui:
    """The pages' shared state: the service they read and act through, the tenants, the sessions, the templates,
    and the limit on sign-in attempts per client address."""

    def __init__(self, service: Service, tenants: Tenants, sessions: Sessions | None = None):
        self.service, self.tenants = service, tenants
        self.sessions = sessions or Sessions(service.store.session_secret())
        self.sign_ins = RateLimiter(SIGN_INS_PER_MINUTE)
        self.templates = Environment(loader=PackageLoader("apiary.web", "templates"), autoescape=True,
                                     undefined=StrictUndefined, trim_blocks=True, lstrip_blocks=True)

    @property
    def store(self):
        return self.service.store

    def scope(self, session: Session) -> Scope:
        return Scope.of(self.store, session.tenant)

    def anonymous(self, request: Request) -> Session:
        """The visitor's session, signed in or not (a fresh one, set on the response, if none)."""
        if self.tenants.open and not local_host(request.headers.get("host")):
            raise PageRefused(403, "this server has no API keys, so its pages answer only to localhost")
        session = self.sessions.read(request.cookies.get(COOKIE))
        if session is None or (self.tenants.open and session.tenant != LOCAL_TENANT):
            session = self.sessions.new(LOCAL_TENANT if self.tenants.open else "")
        return session

    def visitor(self, request: Request) -> Session:
        """The signed-in visitor's session; SignIn if there is none (or its tenant lost its keys)."""
        session = self.anonymous(request)
        if not self.tenants.open and session.tenant not in set(self.tenants.keys.values()):
            raise SignIn()
        return session

    def sign_in(self, request: Request, key: str) -> Session:
        """A session of the key's tenant; Unauthorized if the key is wrong, TooManySignIns if the visitor's address
        has tried too many wrong keys in the last minute (then even a right key waits: guessing gains nothing)."""
        address = request.client.host if request.client else ""
        wait = self.sign_ins.retry_after(address)
        if wait is not None:
            raise TooManySignIns(wait)
        session = self.sessions.new(self.tenants.tenant("Bearer " + key.strip()))
        self.sign_ins.refund(address)  # a right key does not count against the address
        return session

    async def form(self, request: Request, session: Session) -> dict[str, str]:
        """A POSTed form's fields, after the CSRF check (403 if its token does not match the session)."""
        body = await request.body()
        if len(body) > MAX_FORM:
            raise PageRefused(413, f"the form is larger than {MAX_FORM} bytes")
        try:
            fields = dict(parse_qsl(body.decode(), keep_blank_values=True))
        except UnicodeDecodeError:
            raise PageRefused(400, "the form is not UTF-8 text") from None
        token = fields.pop(CSRF_FIELD, None) or request.headers.get(CSRF_HEADER)
        if not self.sessions.csrf_ok(session, token):
            raise PageRefused(403, "this form did not come from this server's page (its CSRF token is missing or "
                                   "wrong); reload the page and try again")
        return fields

    def render(self, request: Request, session: Session, template: str, status: int = 200, **context) -> HTMLResponse:
        html = self.templates.get_template(template).render(
            tenant=session.tenant, open=self.tenants.open, csrf=self.sessions.csrf(session), prefix=PREFIX,
            path=request.url.path, **context)
        return self.respond(request, HTMLResponse(html, status_code=status), session)

    def respond(self, request: Request, response, session: Session | None = None):
        """Add the page headers, and set the session cookie where the visitor's cookie does not hold `session`
        (a new visitor, a sign-in, a sign-out)."""
        response.headers.update(HEADERS)
        if session is not None and request.cookies.get(COOKIE) != self.sessions.cookie(session):
            response.set_cookie(COOKIE, self.sessions.cookie(session), httponly=True, samesite="strict", path=PREFIX)
        return response

    def redirect(self, request: Request, to: str, session: Session | None = None) -> RedirectResponse:
        return self.respond(request, RedirectResponse(to, status_code=303), session)


def is_htmx(request: Request) -> bool:
    """Whether htmx asked (it wants the part of the page it swaps, not the whole page)."""
    return request.headers.get("hx-request") == "true"

