"""/zones/{zone_id}/certificate_authorities/hostname_associations: list and replace."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Depends, Query, Request
from fastapi.responses import JSONResponse
from pydantic import BaseModel, ConfigDict, StrictStr

from mtlsgate.api.auth import principal_from_request
from mtlsgate.api.common import path_hex_id, store_of
from mtlsgate.api.envelope import ok
from mtlsgate.services import hostname_associations as svc
from mtlsgate.services.common import utcnow
from mtlsgate.services.permissions import Principal

router = APIRouter(prefix="/zones/{zone_id}/certificate_authorities/hostname_associations")
Auth = Annotated[Principal, Depends(principal_from_request)]


class ReplaceBody(BaseModel):
    model_config = ConfigDict(extra="forbid")

    # Required here although the schema marks it optional: a body without it would silently
    # remove every association; `[]` says that on purpose.
    hostnames: list[StrictStr]
    mtls_certificate_id: StrictStr | None = None


def _result(hostnames: list[str], cert_id: str | None) -> dict[str, object]:
    out: dict[str, object] = {"hostnames": hostnames}
    if cert_id is not None:
        out["mtls_certificate_id"] = svc.parse_certificate_id(cert_id)
    return out


@router.get("", summary="List hostname associations")
def list_associations(
    request: Request,
    principal: Auth,
    zone_id: str,
    mtls_certificate_id: Annotated[str | None, Query()] = None,
) -> JSONResponse:
    path_hex_id(request, zone_id)
    with store_of(request).transaction() as session:
        names = svc.list_hostnames(session, principal, zone_id, mtls_certificate_id)
        return ok(_result(names, mtls_certificate_id))


@router.put("", summary="Replace hostname associations")
def replace_associations(
    request: Request, principal: Auth, zone_id: str, body: ReplaceBody
) -> JSONResponse:
    path_hex_id(request, zone_id)
    with store_of(request).transaction() as session:
        names = svc.replace_hostnames(
            session,
            principal,
            zone_id,
            body.hostnames,
            body.mtls_certificate_id,
            now=utcnow(),
        )
        return ok(_result(names, body.mtls_certificate_id))
