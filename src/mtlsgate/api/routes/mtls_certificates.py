"""/accounts/{account_id}/mtls_certificates: upload, list, get, delete, associations."""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, Depends, Request
from fastapi.responses import JSONResponse
from pydantic import BaseModel, ConfigDict, Field, StrictBool, StrictStr, field_validator

from mtlsgate.api.auth import principal_from_request
from mtlsgate.api.common import iso, keystore_of, path_hex_id, path_uuid, store_of
from mtlsgate.api.envelope import ok, ok_list
from mtlsgate.errors import BadRequest, shorten
from mtlsgate.services import mtls_certificates as svc
from mtlsgate.services.common import utcnow
from mtlsgate.services.permissions import Principal
from mtlsgate.store.models import MtlsCertificate

router = APIRouter(prefix="/accounts/{account_id}/mtls_certificates")
Auth = Annotated[Principal, Depends(principal_from_request)]

# The `service` name an association with a hostname reports (docs/api.md).
HOSTNAME_SERVICE = "hostname_client_auth"


class UploadBody(BaseModel):
    model_config = ConfigDict(extra="forbid")

    ca: StrictBool
    certificates: StrictStr = Field(max_length=512 * 1024)
    name: StrictStr | None = Field(default=None, max_length=255)
    private_key: StrictStr | None = Field(default=None, max_length=64 * 1024)

    @field_validator("name")
    @classmethod
    def _printable_name(cls, v: str | None) -> str | None:
        if v is not None and any(ord(ch) < 32 or ord(ch) == 127 for ch in v):
            raise ValueError("must not contain control characters")
        return v


def certificate_json(cert: MtlsCertificate, *, with_updated_at: bool = False) -> dict[str, Any]:
    out: dict[str, Any] = {
        "id": cert.id,
        "name": cert.name,
        "ca": cert.ca,
        "type": cert.type,
        "certificates": cert.certificates,
        "issuer": cert.issuer,
        "serial_number": cert.serial_number,
        "signature": cert.signature,
        "expires_on": iso(cert.expires_on, micro=False),
        "uploaded_on": iso(cert.uploaded_on),
    }
    if with_updated_at:
        out["updated_at"] = iso(cert.updated_at)
    return out


def _types(request: Request) -> list[str]:
    # The SDK repeats the key; the OpenAPI schema says comma-separated: accept both.
    values = [v.strip() for raw in request.query_params.getlist("type") for v in raw.split(",")]
    values = [v for v in values if v]
    bad = [v for v in values if v not in svc.CERT_TYPES]
    if bad:
        raise BadRequest(
            f"type must be one of {', '.join(svc.CERT_TYPES)}; got {shorten(', '.join(bad))}"
        )
    return values


@router.post("", summary="Upload mTLS certificate")
def upload(request: Request, principal: Auth, account_id: str, body: UploadBody) -> JSONResponse:
    path_hex_id(request, account_id)
    with store_of(request).transaction() as session:
        done = svc.upload(
            session,
            keystore_of(request),
            principal,
            account_id,
            ca=body.ca,
            certificates=body.certificates,
            name=body.name,
            private_key=body.private_key,
            now=utcnow(),
        )
        return ok(
            certificate_json(done.certificate, with_updated_at=True),
            messages=[{"code": w.code, "message": w.message} for w in done.warnings],
        )


@router.get("", summary="List mTLS certificates")
def list_certificates(request: Request, principal: Auth, account_id: str) -> JSONResponse:
    path_hex_id(request, account_id)
    types = _types(request)
    with store_of(request).transaction() as session:
        certs = svc.list_certificates(session, principal, account_id, types=types)
        return ok_list([certificate_json(c) for c in certs])


@router.get("/{mtls_certificate_id}", summary="mTLS certificate details")
def get_certificate(
    request: Request, principal: Auth, account_id: str, mtls_certificate_id: str
) -> JSONResponse:
    path_hex_id(request, account_id)
    cert_id = path_uuid(request, mtls_certificate_id)
    with store_of(request).transaction() as session:
        return ok(certificate_json(svc.get_certificate(session, principal, account_id, cert_id)))


@router.delete("/{mtls_certificate_id}", summary="Delete mTLS certificate")
def delete_certificate(
    request: Request, principal: Auth, account_id: str, mtls_certificate_id: str
) -> JSONResponse:
    # The schema declares an empty JSON body; SDKs send none. Both are fine: it is not read.
    path_hex_id(request, account_id)
    cert_id = path_uuid(request, mtls_certificate_id)
    with store_of(request).transaction() as session:
        cert = svc.delete_certificate(session, principal, account_id, cert_id)
        return ok(certificate_json(cert))


@router.get("/{mtls_certificate_id}/associations", summary="List mTLS certificate associations")
def list_associations(
    request: Request, principal: Auth, account_id: str, mtls_certificate_id: str
) -> JSONResponse:
    path_hex_id(request, account_id)
    cert_id = path_uuid(request, mtls_certificate_id)
    with store_of(request).transaction() as session:
        rows = svc.list_associations(session, principal, account_id, cert_id)
        return ok_list(
            [
                {
                    "service": HOSTNAME_SERVICE,
                    "status": "active",
                    "hostname": hostname,
                    "zone_id": assoc.zone_id,
                    "zone_name": zone_name,
                    "deployed_on": iso(assoc.deployed_on),
                }
                for hostname, zone_name, assoc in rows
            ]
        )
