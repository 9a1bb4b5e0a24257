"""/zones/{zone_id}/client_certificates: certificates signed by the account's managed CA."""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, Depends, Query, Request
from fastapi.responses import JSONResponse
from pydantic import BaseModel, ConfigDict, Field, StrictBool, StrictInt, StrictStr

from mtlsgate.api.auth import principal_from_request
from mtlsgate.api.common import iso, keystore_of, path_hex_id, store_of
from mtlsgate.api.envelope import ok, ok_page
from mtlsgate.errors import BadRequest
from mtlsgate.pki.managed_ca import MAX_CSR_CHARS
from mtlsgate.services import client_certificates as svc
from mtlsgate.services.common import Page, utcnow
from mtlsgate.services.permissions import Principal
from mtlsgate.store.models import ClientCertificate

router = APIRouter(prefix="/zones/{zone_id}/client_certificates")
Auth = Annotated[Principal, Depends(principal_from_request)]


class CreateBody(BaseModel):
    model_config = ConfigDict(extra="forbid")

    csr: StrictStr = Field(max_length=MAX_CSR_CHARS)
    # Bounds are checked by the service (pki.managed_ca.check_validity_days) so the message
    # names them; here only the type.
    validity_days: StrictInt


class ReactivateBody(BaseModel):
    model_config = ConfigDict(extra="forbid")

    reactivate: StrictBool = True


def certificate_json(cert: ClientCertificate, ca: tuple[str, str]) -> dict[str, Any]:
    return {
        "id": cert.id,
        "certificate": cert.certificate_pem,
        "certificate_authority": {"id": ca[0], "name": ca[1]},
        "common_name": cert.common_name,
        "country": cert.country,
        "state": cert.state,
        "location": cert.location,
        "organization": cert.organization,
        "organizational_unit": cert.organizational_unit,
        # As the anchor returns it (reference 4.3): CRLF line endings.
        "csr": cert.csr.replace("\r\n", "\n").replace("\n", "\r\n"),
        "expires_on": iso(cert.expires_on, micro=False),
        "issued_on": iso(cert.issued_on, micro=False),
        "fingerprint_sha256": cert.fingerprint_sha256,
        "serial_number": cert.serial_number,
        "signature": cert.signature,
        "ski": cert.ski,
        "status": cert.status,
        "validity_days": cert.validity_days,
    }


def _view_json(view: svc.CertificateView) -> dict[str, Any]:
    return certificate_json(view.certificate, (view.ca_id, view.ca_name))


@router.post("", summary="Create Client Certificate")
def create(request: Request, principal: Auth, zone_id: str, body: CreateBody) -> JSONResponse:
    path_hex_id(request, zone_id)
    with store_of(request).transaction() as session:
        view = svc.issue(
            session,
            keystore_of(request),
            principal,
            zone_id,
            csr=body.csr,
            validity_days=body.validity_days,
            now=utcnow(),
        )
        return ok(_view_json(view))


@router.get("", summary="List Client Certificates")
def list_certificates(
    request: Request,
    principal: Auth,
    zone_id: str,
    status: Annotated[str | None, Query()] = None,
    page: Annotated[int, Query()] = 1,
    per_page: Annotated[int, Query()] = svc.DEFAULT_PER_PAGE,
) -> JSONResponse:
    path_hex_id(request, zone_id)
    for name in ("limit", "offset"):
        if name in request.query_params:
            # Their interplay with page/per_page is undocumented (reference 12.6): refuse rather
            # than guess.
            raise BadRequest(
                f"{name} is not supported on this list; use page and per_page", pointer=name
            )
    with store_of(request).transaction() as session:
        result, cas = svc.list_certificates(
            session, principal, zone_id, status=status, page=page, per_page=per_page, now=utcnow()
        )
        items = [certificate_json(c, cas[c.managed_ca_id]) for c in result.items]
        return ok_page(Page(items, result.page, result.per_page, result.total_count), items)


@router.get("/{client_certificate_id}", summary="Client Certificate Details")
def get_certificate(
    request: Request, principal: Auth, zone_id: str, client_certificate_id: str
) -> JSONResponse:
    path_hex_id(request, zone_id)
    cert_id = path_hex_id(request, client_certificate_id)
    with store_of(request).transaction() as session:
        return ok(
            _view_json(svc.get_certificate(session, principal, zone_id, cert_id, now=utcnow()))
        )


@router.delete("/{client_certificate_id}", summary="Revoke Client Certificate")
def revoke(
    request: Request, principal: Auth, zone_id: str, client_certificate_id: str
) -> JSONResponse:
    path_hex_id(request, zone_id)
    cert_id = path_hex_id(request, client_certificate_id)
    with store_of(request).transaction() as session:
        return ok(_view_json(svc.revoke(session, principal, zone_id, cert_id, now=utcnow())))


@router.patch("/{client_certificate_id}", summary="Reactivate Client Certificate")
def reactivate(
    request: Request,
    principal: Auth,
    zone_id: str,
    client_certificate_id: str,
    body: ReactivateBody | None = None,
) -> JSONResponse:
    path_hex_id(request, zone_id)
    cert_id = path_hex_id(request, client_certificate_id)
    # The 2023 schema sends no body, newer SDKs `{"reactivate": true}`: both mean reactivate.
    if body is not None and not body.reactivate:
        raise BadRequest(
            "reactivate must be true (or the body left out); to revoke, use DELETE",
            pointer="reactivate",
        )
    with store_of(request).transaction() as session:
        return ok(_view_json(svc.reactivate(session, principal, zone_id, cert_id, now=utcnow())))
