"""/zones/{zone_id}/managed_headers: list, edit and disable the zone's Managed Transforms."""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, Depends, Request, Response
from fastapi.responses import JSONResponse
from pydantic import BaseModel, ConfigDict, StrictBool, StrictStr

from mtlsgate.api.auth import principal_from_request
from mtlsgate.api.common import path_hex_id, store_of
from mtlsgate.api.envelope import ok
from mtlsgate.services import managed_headers as svc
from mtlsgate.services.common import utcnow
from mtlsgate.services.permissions import Principal

router = APIRouter(prefix="/zones/{zone_id}/managed_headers")
Auth = Annotated[Principal, Depends(principal_from_request)]


class TransformBody(BaseModel):
    model_config = ConfigDict(extra="forbid")

    id: StrictStr
    enabled: StrictBool
    # Read-only fields of a transform as GET shows it: accepted and ignored.
    has_conflict: StrictBool | None = None
    conflicts_with: list[StrictStr] | None = None


class EditBody(BaseModel):
    model_config = ConfigDict(extra="forbid")

    # Both required (as in the schema): `[]` says "change none of these" on purpose.
    managed_request_headers: list[TransformBody]
    managed_response_headers: list[TransformBody]


def _items(items: list[svc.Transform]) -> list[dict[str, Any]]:
    out: list[dict[str, Any]] = []
    for t in items:
        item: dict[str, Any] = {"id": t.id, "enabled": t.enabled, "has_conflict": t.has_conflict}
        if t.conflicts_with:
            item["conflicts_with"] = list(t.conflicts_with)
        out.append(item)
    return out


def state_json(state: svc.State) -> dict[str, Any]:
    return {
        "managed_request_headers": _items(state.request),
        "managed_response_headers": _items(state.response),
    }


@router.get("", summary="List Managed Transforms")
def list_transforms(request: Request, principal: Auth, zone_id: str) -> JSONResponse:
    path_hex_id(request, zone_id)
    with store_of(request).transaction() as session:
        return ok(state_json(svc.get_state(session, principal, zone_id)))


@router.patch("", summary="Update Managed Transforms")
def edit_transforms(
    request: Request, principal: Auth, zone_id: str, body: EditBody
) -> JSONResponse:
    path_hex_id(request, zone_id)
    with store_of(request).transaction() as session:
        state = svc.edit(
            session,
            principal,
            zone_id,
            [(t.id, t.enabled) for t in body.managed_request_headers],
            [(t.id, t.enabled) for t in body.managed_response_headers],
            now=utcnow(),
        )
        return ok(
            state_json(state),
            messages=[{"code": svc.WARN_NOT_IMPLEMENTED, "message": m} for m in state.notes],
        )


@router.delete("", summary="Disable all Managed Transforms", status_code=204)
def disable_all(request: Request, principal: Auth, zone_id: str) -> Response:
    path_hex_id(request, zone_id)
    with store_of(request).transaction() as session:
        svc.disable_all(session, principal, zone_id, now=utcnow())
    return Response(status_code=204)
