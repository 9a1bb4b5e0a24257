"""create_app(): the FastAPI application serving /client/v4 and /healthz."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from fastapi import FastAPI
from fastapi.responses import JSONResponse, PlainTextResponse
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from mtlsgate import __version__
from mtlsgate.api.envelope import BODY_TOO_LARGE, error_response, install_error_handlers
from mtlsgate.api.routes import (
    access_settings,
    custom_certificates,
    dns_records,
    hostname_associations,
    identity,
    managed_headers,
    mtls_certificates,
    request_events,
    rulesets,
    zone_settings,
)
from mtlsgate.store.db import Store
from mtlsgate.store.keystore import KeyStore

API_PREFIX = "/client/v4"
MAX_BODY_BYTES = 1024 * 1024


class BodyLimit:
    """Refuse bodies over the limit with 413 in the envelope, before any of it is parsed.

    The body is read here (bounded) and replayed to the app, so a chunked upload without a
    Content-Length is held to the same limit.
    """

    def __init__(self, app: ASGIApp, limit: int) -> None:
        self.app = app
        self.limit = limit

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        declared = dict(scope.get("headers", [])).get(b"content-length")
        if declared is not None and declared.isdigit() and int(declared) > self.limit:
            await self._too_large(scope, receive, send)
            return
        chunks: list[bytes] = []
        size = 0
        while True:
            message = await receive()
            if message["type"] == "http.disconnect":
                return
            chunk = message.get("body", b"")
            size += len(chunk)
            if size > self.limit:
                await self._too_large(scope, receive, send)
                return
            chunks.append(chunk)
            if not message.get("more_body", False):
                break
        body = b"".join(chunks)
        if body and scope["path"].startswith(API_PREFIX):
            scope = _as_json(scope)
        sent = False

        async def replay() -> Message:
            nonlocal sent
            if not sent:
                sent = True
                return {"type": "http.request", "body": body, "more_body": False}
            return await receive()

        await self.app(scope, replay, send)

    async def _too_large(self, scope: Scope, receive: Receive, send: Send) -> None:
        response = error_response(
            413,
            [
                {
                    "code": BODY_TOO_LARGE,
                    "message": f"Request body too large: the limit is {self.limit} bytes",
                }
            ],
            # The rest of the body is not read: close rather than leave it in the stream.
            headers={"connection": "close"},
        )
        await response(scope, receive, send)


def _as_json(scope: Scope) -> Scope:
    """Every API body is JSON: read it as JSON whatever Content-Type says, so `curl -d '{...}'`
    (which sends a form type) works like `curl --json`, and malformed JSON is reported as such."""
    headers = [(k, v) for k, v in scope["headers"] if k != b"content-type"]
    headers.append((b"content-type", b"application/json"))
    return {**scope, "headers": headers}


def create_app(store: Store, keystore: KeyStore, metrics_dir: Path | None = None) -> FastAPI:
    app = FastAPI(
        title="mtlsgate API",
        version=__version__,
        description="Cloudflare v4-compatible API for client-certificate (mTLS) management.",
        openapi_url=f"{API_PREFIX}/openapi.json",
        docs_url=f"{API_PREFIX}/docs",
        redoc_url=None,
        # `/accounts/` answers 404 in the envelope, not a redirect with an empty body.
        redirect_slashes=False,
    )
    app.state.store = store
    app.state.keystore = keystore
    app.state.metrics_dir = metrics_dir
    install_error_handlers(app)
    for module in (
        identity,
        mtls_certificates,
        hostname_associations,
        rulesets,
        dns_records,
        zone_settings,
        custom_certificates,
        managed_headers,
        access_settings,
        request_events,
    ):
        app.include_router(module.router, prefix=API_PREFIX)

    @app.get("/metrics", include_in_schema=False)
    def metrics() -> PlainTextResponse:
        # The edge workers write their counters next to the data; summed here (Prometheus).
        from mtlsgate.metrics import render_prometheus

        if app.state.metrics_dir is None:
            return PlainTextResponse("", media_type="text/plain; version=0.0.4")
        return PlainTextResponse(
            render_prometheus(app.state.metrics_dir), media_type="text/plain; version=0.0.4"
        )

    @app.get("/healthz", include_in_schema=False)
    def healthz() -> JSONResponse:
        version = store.config_version()
        payload: dict[str, Any] = {"status": "ok", "config_version": version}
        return JSONResponse(payload)

    app.add_middleware(BodyLimit, limit=MAX_BODY_BYTES)
    return app
