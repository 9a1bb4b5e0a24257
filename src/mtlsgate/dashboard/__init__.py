"""The dashboard: server-rendered pages at /dash/ on the API port (docs/dashboard.md)."""

from __future__ import annotations

import logging

from fastapi import FastAPI, Request
from fastapi.responses import HTMLResponse, RedirectResponse, Response
from fastapi.staticfiles import StaticFiles
from starlette.exceptions import HTTPException as StarletteHTTPException
from starlette.middleware.base import BaseHTTPMiddleware, RequestResponseEndpoint

from mtlsgate.dashboard.events_pages import router as events_router
from mtlsgate.dashboard.explain_pages import router as explain_router
from mtlsgate.dashboard.managed_pages import router as managed_router
from mtlsgate.dashboard.pages import router
from mtlsgate.dashboard.rules_pages import router as rules_router
from mtlsgate.dashboard.sessions import SessionStore
from mtlsgate.dashboard.web import (
    HERE,
    PREFIX,
    SECURITY_HEADERS,
    CsrfRefused,
    SignInRequired,
    ZoneChanged,
    redirect,
    render,
    templates,
)
from mtlsgate.errors import Forbidden, MtlsgateError
from mtlsgate.store.db import Store
from mtlsgate.store.keystore import KeyStore

log = logging.getLogger("mtlsgate.dashboard")


class _SecurityHeaders(BaseHTTPMiddleware):
    async def dispatch(self, request: Request, call_next: RequestResponseEndpoint) -> Response:
        try:
            response = await call_next(request)
        except Exception as exc:
            # Caught here, inside this middleware, so the error page gets the security headers
            # and the exception goes no further (the server's handler would log its traceback,
            # whose frames can hold form input, and a form may hold a token). The type only.
            log.error("dashboard: %s on %s", type(exc).__name__, request.url.path)
            response = _error_page(
                request, 500, "Internal error", "The dashboard failed; the server log says more."
            )
        for name, value in SECURITY_HEADERS.items():
            response.headers.setdefault(name, value)
        return response


def create_dashboard(store: Store, keystore: KeyStore) -> FastAPI:
    dash = FastAPI(openapi_url=None, docs_url=None, redoc_url=None, redirect_slashes=False)
    dash.state.store = store
    dash.state.keystore = keystore
    dash.state.sessions = SessionStore()
    dash.include_router(router)
    dash.include_router(rules_router)
    dash.include_router(managed_router)
    dash.include_router(events_router)
    dash.include_router(explain_router)
    dash.mount("/static", StaticFiles(directory=HERE / "static"), name="static")

    @dash.exception_handler(SignInRequired)
    def _sign_in(request: Request, exc: SignInRequired) -> Response:
        return redirect("/sign-in")

    @dash.exception_handler(CsrfRefused)
    def _csrf(request: Request, exc: CsrfRefused) -> Response:
        return _error_page(
            request,
            403,
            "The form was refused",
            "It did not carry this session's security (CSRF) token, so it may not have come from "
            "this dashboard. Nothing was changed. Go back, reload the page and try again.",
        )

    @dash.exception_handler(ZoneChanged)
    def _zone_changed(request: Request, exc: ZoneChanged) -> Response:
        return _error_page(
            request,
            409,
            "The zone changed",
            "The zone changed since this page was opened; nothing was saved. The zone was "
            "switched in another tab or window: go back to the page, reload it and try again.",
        )

    @dash.exception_handler(MtlsgateError)
    def _domain(request: Request, exc: MtlsgateError) -> Response:
        if isinstance(exc, Forbidden):
            return _error_page(
                request, 403, "Not allowed", "Your API token does not allow this page."
            )
        return _error_page(request, exc.status, "Something is wrong", exc.message)

    @dash.exception_handler(StarletteHTTPException)
    def _http(request: Request, exc: StarletteHTTPException) -> Response:
        if exc.status_code == 404:
            return _error_page(request, 404, "Not found", "There is no such page.")
        if exc.status_code == 405:
            return _error_page(request, 405, "Not allowed", "This page does not take that method.")
        return _error_page(request, exc.status_code, "Error", str(exc.detail))

    dash.add_middleware(_SecurityHeaders)
    return dash


def _error_page(request: Request, status: int, title: str, message: str) -> HTMLResponse:
    return render(request, "error.html", None, status=status, title=title, message=message)


def too_large_page(request_path: str, limit: int) -> HTMLResponse:
    """The answer to an upload over the body limit (api/app.py BodyLimit, before the dashboard
    sees the request): a page in plain words, with the dashboard's security headers."""
    html = templates.get_template("error.html").render(
        ctx=None,
        csrf="",
        flashes=[],
        path=request_path,
        title="The upload is too large",
        message=(
            f"A form sent to the dashboard may hold at most {limit // (1024 * 1024)} MiB "
            f"({limit} bytes); nothing was saved. A CA certificate file is far smaller: "
            "check that you chose the right file, then go back and try again."
        ),
    )
    headers = {"cache-control": "no-store", "connection": "close", **SECURITY_HEADERS}
    return HTMLResponse(html, status_code=413, headers=headers)


def mount_dashboard(app: FastAPI, store: Store, keystore: KeyStore) -> None:
    """Serve the dashboard under /dash/ of `app` (the API's application)."""

    @app.get(PREFIX, include_in_schema=False)
    def _slash() -> RedirectResponse:
        return RedirectResponse(PREFIX + "/", status_code=308)

    dash = create_dashboard(store, keystore)
    # Explain needs the edge's configuration loader, which `serve` hands to the API app.
    dash.state.explain_loader = getattr(app.state, "explain_loader", None)
    app.mount(PREFIX, dash)
