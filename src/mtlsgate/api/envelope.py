"""The one place the v4 envelope is built, for results and for every kind of error."""

from __future__ import annotations

import logging
from collections.abc import Sequence
from typing import Any

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from starlette.exceptions import HTTPException as StarletteHTTPException

from mtlsgate.errors import MtlsgateError, quote, shorten
from mtlsgate.services.common import Page

log = logging.getLogger("mtlsgate.api")

MALFORMED_JSON = 1002
INVALID_BODY = 1001
ROUTE_NOT_FOUND = 7003
NO_ROUTE = 7000
METHOD_NOT_ALLOWED = 7001
BODY_TOO_LARGE = 1413
INTERNAL = 1000


class ApiError(MtlsgateError):
    """An error raised by the HTTP layer itself (auth headers, ids in paths), with an optional
    Cloudflare-style `error_chain`."""

    def __init__(
        self,
        message: str,
        *,
        code: int,
        status: int,
        chain: Sequence[tuple[int, str]] = (),
    ) -> None:
        super().__init__(message, code=code, status=status)
        self.chain = list(chain)


def ok(result: Any, *, messages: Sequence[dict[str, Any]] = (), status: int = 200) -> JSONResponse:
    return JSONResponse(
        {"success": True, "errors": [], "messages": list(messages), "result": result},
        status_code=status,
    )


def ok_page(page: Page[Any], items: list[Any]) -> JSONResponse:
    return JSONResponse(
        {
            "success": True,
            "errors": [],
            "messages": [],
            "result": items,
            "result_info": {
                "page": page.page,
                "per_page": page.per_page,
                "count": len(items),
                "total_count": page.total_count,
                "total_pages": page.total_pages,
            },
        }
    )


def ok_list(items: list[Any]) -> JSONResponse:
    """A single-page collection (the SDK's SinglePage endpoints)."""
    n = len(items)
    return JSONResponse(
        {
            "success": True,
            "errors": [],
            "messages": [],
            "result": items,
            "result_info": {
                "page": 1,
                "per_page": max(n, 1),
                "count": n,
                "total_count": n,
                "total_pages": 1,
            },
        }
    )


def error_response(
    status: int, errors: list[dict[str, Any]], headers: dict[str, str] | None = None
) -> JSONResponse:
    return JSONResponse(
        {"success": False, "errors": errors, "messages": [], "result": None},
        status_code=status,
        headers=headers,
    )


def _error_item(code: int, message: str, pointer: str | None = None) -> dict[str, Any]:
    item: dict[str, Any] = {"code": code, "message": message}
    if pointer:
        item["source"] = {"pointer": pointer}
    return item


def route_not_found(path: str) -> JSONResponse:
    return error_response(
        404,
        [
            _error_item(
                ROUTE_NOT_FOUND,
                f"Could not route to {path}, perhaps your object identifier is invalid?",
            ),
            _error_item(NO_ROUTE, "No route for that URI"),
        ],
    )


def _validation_message(err: dict[str, Any]) -> tuple[str, str | None]:
    loc = [str(p) for p in err.get("loc", ()) if p != "body"]
    field = ".".join(loc)
    kind = err.get("type", "")
    if kind == "json_invalid":
        detail = err.get("ctx", {}).get("error", "")
        return f"Malformed JSON in request body: {detail}".rstrip(": "), None
    if kind == "missing" and not field:
        return "A JSON request body is required", None
    if kind == "missing":
        return f"{field} is required", "/" + "/".join(loc)
    if kind == "extra_forbidden":
        return f"unknown field {quote(field)}", "/" + "/".join(loc)
    if kind in ("model_attributes_type", "dict_type", "model_type") and not field:
        return "The request body must be a JSON object", None
    msg = str(err.get("msg", "is invalid"))
    return (f"{shorten(field)}: {msg}" if field else msg), ("/" + "/".join(loc) if loc else None)


def install_error_handlers(app: FastAPI) -> None:
    @app.exception_handler(MtlsgateError)
    async def _domain(_req: Request, exc: MtlsgateError) -> JSONResponse:
        item = _error_item(exc.code, exc.message, exc.pointer)
        chain = getattr(exc, "chain", None)
        if chain:
            item["error_chain"] = [{"code": c, "message": m} for c, m in chain]
        return error_response(exc.status, [item])

    @app.exception_handler(RequestValidationError)
    async def _invalid(_req: Request, exc: RequestValidationError) -> JSONResponse:
        items = []
        for err in exc.errors():
            message, pointer = _validation_message(dict(err))
            code = MALFORMED_JSON if err.get("type") == "json_invalid" else INVALID_BODY
            items.append(_error_item(code, message, pointer))
        return error_response(400, items)

    @app.exception_handler(StarletteHTTPException)
    async def _http(req: Request, exc: StarletteHTTPException) -> JSONResponse:
        if exc.status_code == 404:
            return route_not_found(req.url.path)
        if exc.status_code == 405:
            return error_response(
                405,
                [
                    _error_item(
                        METHOD_NOT_ALLOWED,
                        f"Method {req.method} not available for that URI.",
                    )
                ],
                headers=dict(exc.headers or {}),
            )
        if exc.status_code == 400:
            # FastAPI's own parse failure (e.g. a body that is not UTF-8): a malformed body.
            return error_response(
                400, [_error_item(MALFORMED_JSON, "Malformed JSON in request body: not UTF-8 JSON")]
            )
        return error_response(exc.status_code, [_error_item(INTERNAL, str(exc.detail))])

    @app.exception_handler(Exception)
    async def _unexpected(req: Request, exc: Exception) -> JSONResponse:
        # The traceback goes to the server log only; the client gets the envelope.
        log.exception("unhandled error on %s %s", req.method, req.url.path)
        return error_response(
            500, [_error_item(INTERNAL, "Internal error; the server log has details")]
        )
