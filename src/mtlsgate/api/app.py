"""create_app(): the FastAPI application serving /client/v4 and /healthz."""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any

from fastapi import FastAPI
from fastapi.responses import JSONResponse, PlainTextResponse
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from mtlsgate import __version__
from mtlsgate.api.envelope import (
    BODY_TOO_LARGE,
    INVALID_BODY,
    NO_ROUTE,
    ROUTE_NOT_FOUND,
    error_response,
    install_error_handlers,
)
from mtlsgate.api.routes import (
    access_settings,
    client_certificates,
    crls,
    custom_certificates,
    dns_records,
    explain,
    hostname_associations,
    identity,
    managed_headers,
    mtls_certificates,
    request_events,
    rulesets,
    zone_settings,
)
from mtlsgate.errors import shorten
from mtlsgate.services.explain import ExplainLoader
from mtlsgate.store.db import Store
from mtlsgate.store.keystore import KeyStore

API_PREFIX = "/client/v4"
# A JSON string escape for U+0000 (an escaped backslash before "u0000" is not one).
_NUL_ESCAPE = re.compile(rb"(?<!\\)(?:\\\\)*\\u0000")
# A \uD800-\uDFFF escape: JSON admits an unpaired one, which no database (and no UTF-8 response)
# can hold. (A pair decodes to one character; what is left after decoding is unpaired.)
_SURROGATE_ESCAPE = re.compile(rb"\\u[dD][89a-fA-F]")
_SURROGATE = re.compile("[\ud800-\udfff]")
# A decoded path with a control character (`%0A`, `%00`, ...) names no route. Starlette's route
# patterns end in `$`, which matches before a trailing newline: `/dns_records%0A` reached the
# DNS records route (and a POST there wrote). Refused as any unknown path is.
_CONTROL_IN_PATH = re.compile(r"[\x00-\x1f\x7f]")
MAX_BODY_BYTES = 1024 * 1024


def _control_in_path(scope: Scope) -> JSONResponse:
    """The answer to a path with a control character: what a malformed id in a path gets
    (api/common.py), with the path as the client encoded it (no raw newline in the message)."""
    raw = scope.get("raw_path") or scope["path"].encode("utf-8", "surrogateescape")
    shown = _CONTROL_IN_PATH.sub(lambda m: f"%{ord(m.group()):02X}", raw.decode("latin-1"))
    item = {
        "code": ROUTE_NOT_FOUND,
        "message": f"Could not route to {shown}, perhaps your object identifier is invalid?",
        "error_chain": [{"code": NO_ROUTE, "message": "No route for that URI"}],
    }
    return error_response(400, [item])


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
        if _CONTROL_IN_PATH.search(scope["path"]) is not None:
            await _control_in_path(scope)(scope, receive, send)
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
            found = (
                _unstorable_text(body)
                if _NUL_ESCAPE.search(body) is not None
                or _SURROGATE_ESCAPE.search(body) is not None
                else None
            )
            if found is not None:
                # PostgreSQL cannot store NUL in text (the write failed with a 500 there) while
                # SQLite would, and an unpaired surrogate fails any UTF-8 encoding (the write,
                # or the answer that quotes it): refused alike on both, before anything is
                # parsed or written.
                pointer, what = found
                item = {
                    "code": INVALID_BODY,
                    "source": {"pointer": pointer},
                    "message": f"{shorten(pointer) or 'the body'}: text must not contain {what}",
                }
                await error_response(400, [item])(scope, receive, send)  # fmt: skip
                return
        if b"%00" in scope.get("query_string", b"") and scope["path"].startswith(API_PREFIX):
            # (The query's filters reach the database as text: NUL fails on PostgreSQL.)
            item = {"code": INVALID_BODY, "message": "the query string must not contain NUL (%00)"}
            await error_response(400, [item])(scope, receive, send)
            return
        sent = False

        async def replay() -> Message:
            nonlocal sent
            if not sent:
                sent = True
                return {"type": "http.request", "body": body, "more_body": False}
            return await receive()

        await self.app(scope, replay, send)

    async def _too_large(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["path"] == "/dash" or scope["path"].startswith("/dash/"):
            # The dashboard's forms get a page in plain words, not the API's JSON envelope.
            from mtlsgate.dashboard import too_large_page

            await too_large_page(scope["path"], self.limit)(scope, receive, send)
            return
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


def _unstorable(text: str) -> str | None:
    if "\x00" in text:
        return "NUL (\\u0000)"
    m = _SURROGATE.search(text)
    return None if m is None else f"an unpaired surrogate (\\u{ord(m.group()):04x})"


def _unstorable_text(body: bytes) -> tuple[str, str] | None:
    """The JSON pointer of the first string (a key or a value) holding NUL or an unpaired
    surrogate, and which; None when there is none or the body is not JSON (which the route
    then reports as malformed)."""
    try:
        data = json.loads(body)
    except ValueError:
        return None
    todo: list[tuple[str, object]] = [("", data)]
    while todo:
        path, value = todo.pop(0)
        if isinstance(value, str):
            what = _unstorable(value)
            if what is not None:
                return path, what
        elif isinstance(value, dict):
            for key, item in value.items():
                at = path + "/" + str(key).replace("~", "~0").replace("/", "~1")
                what = _unstorable(str(key))
                if what is not None:
                    # (The answer must be encodable: a key with a surrogate is not quoted.)
                    return (path + "/(a key)" if _SURROGATE.search(key) else at), what
                todo.append((at, item))
        elif isinstance(value, list):
            todo += [(f"{path}/{i}", item) for i, item in enumerate(value)]
    return None


def _as_json(scope: Scope) -> Scope:
    """Every API body is JSON: read it as JSON whatever Content-Type says, so `curl -d '{...}'`
    (which sends a form type) works like `curl --json`, and malformed JSON is reported as such."""
    headers = [(k, v) for k, v in scope["headers"] if k != b"content-type"]
    headers.append((b"content-type", b"application/json"))
    return {**scope, "headers": headers}


def create_app(
    store: Store,
    keystore: KeyStore,
    metrics_dir: Path | None = None,
    explain_loader: ExplainLoader | None = None,
) -> FastAPI:
    """`explain_loader` is the edge's configuration loader (edge.runtime.config_sync.load_config),
    passed in by the CLI: the API does not import the edge's runtime (tests/test_layering.py), and
    /mtls/explain must read the configuration exactly as the edge does."""
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
    app.state.explain_loader = explain_loader
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
        client_certificates,
        crls,
        explain,
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

    # The dashboard (docs/dashboard.md) on the same port, over the same services.
    from mtlsgate.dashboard import mount_dashboard

    mount_dashboard(app, store, keystore)
    app.add_middleware(BodyLimit, limit=MAX_BODY_BYTES)
    return app
