"""/zones/{zone_id}/custom_certificates: upload, list, get, edit, delete the zone's edge
certificates. The private key is sealed at rest and never returned."""

from __future__ import annotations

import json
from datetime import datetime
from typing import Annotated, Any

from fastapi import APIRouter, Depends, Query, Request
from fastapi.responses import JSONResponse
from pydantic import BaseModel, ConfigDict, Field, StrictStr

from mtlsgate.api.auth import principal_from_request
from mtlsgate.api.common import iso, keystore_of, path_hex_id, store_of
from mtlsgate.api.envelope import ok, ok_page
from mtlsgate.errors import BadRequest, quote
from mtlsgate.services import custom_certificates as svc
from mtlsgate.services.common import paginate, utcnow
from mtlsgate.services.permissions import Principal
from mtlsgate.store.models import CustomCertificate

router = APIRouter(prefix="/zones/{zone_id}/custom_certificates")
Auth = Annotated[Principal, Depends(principal_from_request)]

STATUSES = ("active", "expired", "deleted", "pending", "initializing")


class GeoRestrictions(BaseModel):
    model_config = ConfigDict(extra="forbid")

    label: StrictStr


class UploadBody(BaseModel):
    model_config = ConfigDict(extra="forbid")

    certificate: StrictStr = Field(max_length=512 * 1024)
    private_key: StrictStr = Field(max_length=64 * 1024)
    bundle_method: StrictStr | None = None
    type: StrictStr | None = None
    geo_restrictions: GeoRestrictions | None = None
    policy: StrictStr | None = Field(default=None, max_length=4096)


class EditBody(BaseModel):
    model_config = ConfigDict(extra="forbid")

    certificate: StrictStr | None = Field(default=None, max_length=512 * 1024)
    private_key: StrictStr | None = Field(default=None, max_length=64 * 1024)
    bundle_method: StrictStr | None = None
    type: StrictStr | None = None
    geo_restrictions: GeoRestrictions | None = None
    policy: StrictStr | None = Field(default=None, max_length=4096)


def _options(body: UploadBody | EditBody) -> svc.Options:
    return svc.Options(
        bundle_method=body.bundle_method,
        type=body.type,
        geo_restrictions=body.geo_restrictions.label if body.geo_restrictions else None,
        policy=body.policy,
    )


def _status(cert: CustomCertificate, now: datetime) -> str:
    return "expired" if cert.expires_on < now else "active"


def certificate_json(cert: CustomCertificate, now: datetime) -> dict[str, Any]:
    out: dict[str, Any] = {
        "id": cert.id,
        "zone_id": cert.zone_id,
        "hosts": json.loads(cert.hosts),
        "issuer": cert.issuer,
        "signature": cert.signature,
        "status": _status(cert, now),
        "bundle_method": cert.bundle_method,
        "type": cert.type,
        "priority": 0,
        "expires_on": iso(cert.expires_on, micro=False),
        "uploaded_on": iso(cert.uploaded_on),
        "modified_on": iso(cert.modified_on),
    }
    if cert.geo_restrictions is not None:
        out["geo_restrictions"] = {"label": cert.geo_restrictions}
    if cert.policy is not None:
        out["policy_restrictions"] = cert.policy
    return out


def _messages(done: svc.Written) -> list[dict[str, Any]]:
    return [{"code": w.code, "message": w.message} for w in done.warnings]


@router.post("", summary="Create SSL configuration")
def upload(request: Request, principal: Auth, zone_id: str, body: UploadBody) -> JSONResponse:
    path_hex_id(request, zone_id)
    now = utcnow()
    with store_of(request).transaction() as session:
        done = svc.upload(
            session,
            keystore_of(request),
            principal,
            zone_id,
            certificate=body.certificate,
            private_key=body.private_key,
            options=_options(body),
            now=now,
        )
        return ok(certificate_json(done.certificate, now), messages=_messages(done))


@router.get("", summary="List SSL configurations")
def list_certificates(
    request: Request,
    principal: Auth,
    zone_id: str,
    page: Annotated[int, Query()] = 1,
    per_page: Annotated[int, Query()] = 20,
    status: Annotated[str | None, Query()] = None,
    match: Annotated[str, Query()] = "all",
) -> JSONResponse:
    path_hex_id(request, zone_id)
    if status is not None and status not in STATUSES:
        raise BadRequest(f"status must be one of {', '.join(STATUSES)}, got {quote(status)}")
    if match not in ("all", "any"):
        raise BadRequest(f"match must be all or any, got {quote(match)}")
    now = utcnow()
    with store_of(request).transaction() as session:
        certs = svc.list_certificates(session, principal, zone_id)
        if status is not None:
            certs = [c for c in certs if _status(c, now) == status]
        result = paginate(certs, page, per_page, max_per_page=1000)
        return ok_page(result, [certificate_json(c, now) for c in result.items])


@router.get("/{custom_certificate_id}", summary="SSL configuration details")
def get_certificate(
    request: Request, principal: Auth, zone_id: str, custom_certificate_id: str
) -> JSONResponse:
    path_hex_id(request, zone_id)
    cert_id = path_hex_id(request, custom_certificate_id)
    with store_of(request).transaction() as session:
        cert = svc.get_certificate(session, principal, zone_id, cert_id)
        return ok(certificate_json(cert, utcnow()))


@router.patch("/{custom_certificate_id}", summary="Edit SSL configuration")
def edit_certificate(
    request: Request, principal: Auth, zone_id: str, custom_certificate_id: str, body: EditBody
) -> JSONResponse:
    path_hex_id(request, zone_id)
    cert_id = path_hex_id(request, custom_certificate_id)
    now = utcnow()
    with store_of(request).transaction() as session:
        done = svc.edit(
            session,
            keystore_of(request),
            principal,
            zone_id,
            cert_id,
            certificate=body.certificate,
            private_key=body.private_key,
            options=_options(body),
            now=now,
        )
        return ok(certificate_json(done.certificate, now), messages=_messages(done))


@router.delete("/{custom_certificate_id}", summary="Delete SSL configuration")
def delete_certificate(
    request: Request, principal: Auth, zone_id: str, custom_certificate_id: str
) -> JSONResponse:
    path_hex_id(request, zone_id)
    cert_id = path_hex_id(request, custom_certificate_id)
    with store_of(request).transaction() as session:
        return ok({"id": svc.delete(session, principal, zone_id, cert_id)})
