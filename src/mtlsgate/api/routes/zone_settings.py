"""/zones/{zone_id}/settings: the zone settings mtlsgate implements (only `ssl`)."""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, Depends, Request
from fastapi.responses import JSONResponse
from pydantic import BaseModel, ConfigDict

from mtlsgate.api.auth import principal_from_request
from mtlsgate.api.common import iso, path_hex_id, store_of
from mtlsgate.api.envelope import ok, ok_list
from mtlsgate.services import zone_settings as svc
from mtlsgate.services.common import utcnow
from mtlsgate.services.permissions import Principal

router = APIRouter(prefix="/zones/{zone_id}/settings")
Auth = Annotated[Principal, Depends(principal_from_request)]


class EditBody(BaseModel):
    model_config = ConfigDict(extra="forbid")

    # Any JSON here: the service names the accepted values in its refusal.
    value: Any


def setting_json(setting: svc.Setting) -> dict[str, Any]:
    return {
        "id": setting.id,
        "value": setting.value,
        "editable": True,
        "modified_on": iso(setting.modified_on) if setting.modified_on is not None else None,
    }


@router.get("", summary="Get all zone settings")
def list_settings(request: Request, principal: Auth, zone_id: str) -> JSONResponse:
    path_hex_id(request, zone_id)
    with store_of(request).transaction() as session:
        return ok_list([setting_json(s) for s in svc.list_settings(session, principal, zone_id)])


@router.get("/{setting_id}", summary="Get zone setting")
def get_setting(request: Request, principal: Auth, zone_id: str, setting_id: str) -> JSONResponse:
    path_hex_id(request, zone_id)
    with store_of(request).transaction() as session:
        return ok(setting_json(svc.get_setting(session, principal, zone_id, setting_id)))


@router.patch("/{setting_id}", summary="Edit zone setting")
def edit_setting(
    request: Request, principal: Auth, zone_id: str, setting_id: str, body: EditBody
) -> JSONResponse:
    path_hex_id(request, zone_id)
    with store_of(request).transaction() as session:
        setting = svc.edit_setting(
            session, principal, zone_id, setting_id, body.value, now=utcnow()
        )
        return ok(setting_json(setting))
