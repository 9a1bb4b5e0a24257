"""The explain tool: paste a client's chain, choose a hostname, see what the edge would decide
(services/explain.py, exactly what POST /zones/{zone_id}/mtls/explain answers; docs/explain.md)."""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, Depends, Request
from fastapi.responses import Response
from starlette.datastructures import FormData

from mtlsgate.dashboard.web import (
    Ctx,
    check_csrf,
    current,
    form_text,
    keystore_of,
    plain,
    render,
    store_of,
)
from mtlsgate.errors import MtlsgateError, NotFound
from mtlsgate.services import explain as svc
from mtlsgate.services.permissions import ZONE_SSL_READ

router = APIRouter()
Signed = Annotated[Ctx, Depends(current)]
# Which field an error belongs next to, from the pointer the service gives.
FIELDS = {
    "/hostname": "hostname",
    "/certificates": "certificates",
    "/path": "path",
    "/method": "method",
}


async def _form(request: Request) -> FormData:
    return await request.form(max_files=0, max_fields=20)


Form = Annotated[FormData, Depends(_form)]


def _page(
    ctx: Ctx,
    *,
    values: dict[str, str],
    errors: dict[str, str],
    result: Any = None,
    status: int = 200,
) -> Response:
    return render(
        ctx.request,
        "explain.html",
        ctx,
        active="explain",
        values=values,
        errors=errors,
        result=result,
        status=status,
    )


@router.get("/explain")
def explain_page(ctx: Signed) -> Response:
    host = f"api.{ctx.zone.name}" if ctx.zone else ""
    return _page(
        ctx, values={"hostname": host, "certificates": "", "path": "/", "method": "GET"}, errors={}
    )


@router.post("/explain")
def explain(ctx: Signed, form: Form) -> Response:
    check_csrf(form, ctx.csrf)
    if ctx.zone is None:
        raise NotFound("This API token sees no zone.")
    values = {
        "hostname": form_text(form, "hostname", max_len=1024),
        "certificates": form_text(form, "certificates", max_len=512 * 1024),
        "path": form_text(form, "path", max_len=8192) or "/",
        "method": form_text(form, "method", max_len=32) or "GET",
    }
    loader: svc.ExplainLoader | None = ctx.request.app.state.explain_loader
    try:
        parsed = svc.parse_request(
            values["hostname"], values["certificates"], values["path"], values["method"]
        )
        with store_of(ctx.request).transaction() as db:
            result = svc.explain(
                db, keystore_of(ctx.request), ctx.principal, ctx.zone.id, parsed, loader
            )
    except MtlsgateError as exc:
        field = FIELDS.get(exc.pointer or "", "form")
        if "PRIVATE KEY" in values["certificates"]:
            values["certificates"] = ""  # a pasted private key is never sent back to the page
        return _page(ctx, values=values, errors={field: plain(exc, ZONE_SSL_READ)}, status=400)
    return _page(ctx, values=values, errors={}, result=result)
