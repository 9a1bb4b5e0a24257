"""/zones/{zone_id}/access/certificates/settings: Access mTLS hostname settings (client
certificate forwarding to the origin). PUT replaces the list and answers 202, as the newer
schema says."""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, Depends, Request
from fastapi.responses import JSONResponse
from pydantic import BaseModel, ConfigDict, StrictBool, StrictStr

from mtlsgate.api.auth import principal_from_request
from mtlsgate.api.common import path_hex_id, store_of
from mtlsgate.api.envelope import ok_list
from mtlsgate.services import access_settings as svc
from mtlsgate.services.common import utcnow
from mtlsgate.services.permissions import Principal

router = APIRouter(prefix="/zones/{zone_id}/access/certificates/settings")
Auth = Annotated[Principal, Depends(principal_from_request)]


class SettingBody(BaseModel):
    model_config = ConfigDict(extra="forbid")

    hostname: StrictStr
    china_network: StrictBool
    client_certificate_forwarding: StrictBool


class ReplaceBody(BaseModel):
    model_config = ConfigDict(extra="forbid")

    settings: list[SettingBody]


def _json(items: list[svc.HostnameSetting]) -> list[dict[str, Any]]:
    return [
        {
            "hostname": s.hostname,
            "china_network": s.china_network,
            "client_certificate_forwarding": s.client_certificate_forwarding,
        }
        for s in items
    ]


@router.get("", summary="List all mTLS hostname settings for this zone")
def list_settings(request: Request, principal: Auth, zone_id: str) -> JSONResponse:
    path_hex_id(request, zone_id)
    with store_of(request).transaction() as session:
        return ok_list(_json(svc.list_settings(session, principal, zone_id)))


@router.put("", summary="Update an mTLS certificate's hostname settings", status_code=202)
def replace_settings(
    request: Request, principal: Auth, zone_id: str, body: ReplaceBody
) -> JSONResponse:
    path_hex_id(request, zone_id)
    items = [
        svc.HostnameSetting(s.hostname, s.china_network, s.client_certificate_forwarding)
        for s in body.settings
    ]
    with store_of(request).transaction() as session:
        done = svc.replace_settings(session, principal, zone_id, items, now=utcnow())
        response = ok_list(_json(done))
    response.status_code = 202
    return response
