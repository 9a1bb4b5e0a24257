"""/zones/{zone_id}/mtls/explain: what the edge would decide for a client certificate chain."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Depends, Request
from fastapi.responses import JSONResponse
from pydantic import BaseModel, ConfigDict, Field, StrictStr

from mtlsgate.api.auth import principal_from_request
from mtlsgate.api.common import keystore_of, path_hex_id, store_of
from mtlsgate.api.envelope import ok
from mtlsgate.services import explain as svc
from mtlsgate.services.permissions import Principal

router = APIRouter(prefix="/zones/{zone_id}/mtls/explain")
Auth = Annotated[Principal, Depends(principal_from_request)]


class ExplainBody(BaseModel):
    model_config = ConfigDict(extra="forbid")

    hostname: StrictStr = Field(max_length=1024)
    # "" explains a client that sends no certificate.
    certificates: StrictStr = Field(max_length=512 * 1024)
    path: StrictStr | None = None
    method: StrictStr | None = Field(default=None, max_length=32)


@router.post("", summary="Explain the edge's verdict for a client certificate chain")
def explain(request: Request, principal: Auth, zone_id: str, body: ExplainBody) -> JSONResponse:
    path_hex_id(request, zone_id)
    parsed = svc.parse_request(body.hostname, body.certificates, body.path, body.method)
    loader: svc.ExplainLoader | None = getattr(request.app.state, "explain_loader", None)
    # Read-only: nothing is written, so the transaction only gives one consistent read.
    with store_of(request).transaction() as session:
        result = svc.explain(session, keystore_of(request), principal, zone_id, parsed, loader)
    return ok(result)
