"""The dashboard's plumbing: who is signed in, CSRF checks, rendering, security headers.

Pages live in pages.py; this module holds what every page needs and nothing about certificates.
"""

from __future__ import annotations

import hmac
import logging
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from fastapi import Request
from fastapi.responses import HTMLResponse, RedirectResponse, Response
from jinja2 import Environment, FileSystemLoader, select_autoescape
from starlette.datastructures import FormData

from mtlsgate.api.common import keystore_of as keystore_of  # (pages import them from here)
from mtlsgate.api.common import store_of as store_of
from mtlsgate.dashboard.sessions import DashSession, SessionStore, same_secret
from mtlsgate.errors import Forbidden, MtlsgateError, NotFound
from mtlsgate.services.accounts import list_visible_zones
from mtlsgate.services.permissions import Principal
from mtlsgate.services.tokens import authenticate

log = logging.getLogger("mtlsgate.dashboard")

PREFIX = "/dash"
SESSION_COOKIE = "mtlsgate_session"
# Before sign-in there is no session: the sign-in form's CSRF token is a double-submit cookie.
SIGNIN_COOKIE = "mtlsgate_signin"
HERE = Path(__file__).parent

templates = Environment(
    loader=FileSystemLoader(HERE / "templates"),
    autoescape=select_autoescape(default=True),
    trim_blocks=True,
    lstrip_blocks=True,
)

# Everything the pages use comes from mtlsgate itself; nothing inline, nothing from elsewhere.
SECURITY_HEADERS = {
    "content-security-policy": (
        "default-src 'self'; script-src 'self'; style-src 'self'; img-src 'self' data:; "
        "form-action 'self'; frame-ancestors 'none'; base-uri 'none'; object-src 'none'"
    ),
    "x-content-type-options": "nosniff",
    "x-frame-options": "DENY",
    "referrer-policy": "same-origin",
}


class SignInRequired(Exception):
    """No (valid) session: the handler sends the browser to the sign-in page."""

    def __init__(self, reason: str | None = None) -> None:
        super().__init__(reason or "sign in")
        self.reason = reason


class CsrfRefused(Exception):
    """A form came without the CSRF token of the session (or of the sign-in cookie)."""


class ZoneChanged(Exception):
    """A form acting on a zone was opened in another zone than the session's current one (the
    zone was switched in another tab): refused, so Save never writes to the wrong zone."""


# The hidden field every form acting on a zone carries: the zone the page was rendered for.
ZONE_FIELD = "form_zone"


@dataclass(frozen=True)
class ZoneRef:
    id: str
    name: str


@dataclass
class Ctx:
    """A signed-in request: the session, the token's Principal (re-read from the store on every
    request, so a revoked token ends the session), and the zones the token sees."""

    request: Request
    session_id: str
    session: DashSession
    principal: Principal
    zones: list[ZoneRef]
    zone: ZoneRef | None

    @property
    def account_id(self) -> str:
        return self.principal.account_id

    @property
    def csrf(self) -> str:
        return self.session.csrf

    def flash(self, message: str) -> None:
        self.session.flashes.append(message)


def sessions_of(request: Request) -> SessionStore:
    sessions: SessionStore = request.app.state.sessions
    return sessions


def current(request: Request) -> Ctx:
    """The signed-in context, or SignInRequired."""
    sessions = sessions_of(request)
    session_id = request.cookies.get(SESSION_COOKIE)
    sess = sessions.get(session_id)
    if sess is None or session_id is None:
        raise SignInRequired()
    with store_of(request).transaction() as db:
        principal = authenticate(db, sess.api_token)
        if principal is None:
            sessions.delete(session_id)
            raise SignInRequired("Your API token is no longer valid. Sign in again.")
        zones = [ZoneRef(z.id, z.name) for z in list_visible_zones(db, principal)]
    zone = next((z for z in zones if z.id == sess.zone_id), zones[0] if zones else None)
    return Ctx(request, session_id, sess, principal, zones, zone)


def plain(exc: MtlsgateError, needs: str) -> str:
    """A service error in plain words; a permission refusal names the permission it lacks."""
    if isinstance(exc, Forbidden):
        return f"Your API token does not allow this: it needs the “{needs}” permission."
    # Service messages start lower-case (they read well after "error:"); here they stand alone.
    return exc.message[:1].upper() + exc.message[1:]


def check_csrf(form: FormData, expected: str | None) -> None:
    if expected is None or not same_secret(expected, form.get("csrf_token")):
        raise CsrfRefused()


def check_zone(ctx: Ctx, form: FormData) -> ZoneRef:
    """The session's current zone, if the form was made for it; ZoneChanged otherwise."""
    if ctx.zone is None:
        raise NotFound("This API token sees no zone.")
    given = form.get(ZONE_FIELD)
    if not isinstance(given, str) or not hmac.compare_digest(given, ctx.zone.id):
        raise ZoneChanged()
    return ctx.zone


def form_text(form: FormData, name: str, *, max_len: int = 4096) -> str:
    value = form.get(name)
    return value[:max_len] if isinstance(value, str) else ""


def is_tls(request: Request) -> bool:
    return request.url.scheme == "https"


def render(
    request: Request,
    template: str,
    ctx: Ctx | None,
    *,
    status: int = 200,
    **values: Any,
) -> HTMLResponse:
    flashes = ctx.session.pop_flashes() if ctx is not None else []
    html = templates.get_template(template).render(
        ctx=ctx,
        csrf=ctx.csrf if ctx is not None else values.pop("csrf", ""),
        flashes=flashes,
        path=request.url.path,
        zone_field=ZONE_FIELD,
        **values,
    )
    return HTMLResponse(html, status_code=status, headers={"cache-control": "no-store"})


def redirect(path: str) -> RedirectResponse:
    # 303: after a POST the browser follows with a GET (no "resubmit the form?" prompt).
    return RedirectResponse(PREFIX + path, status_code=303)


def set_session_cookie(request: Request, response: Response, session_id: str) -> None:
    response.set_cookie(
        SESSION_COOKIE,
        session_id,
        path=PREFIX + "/",
        httponly=True,
        secure=is_tls(request),
        samesite="strict",
    )


def clear_cookie(request: Request, response: Response, name: str) -> None:
    response.delete_cookie(
        name, path=PREFIX + "/", httponly=True, secure=is_tls(request), samesite="strict"
    )
