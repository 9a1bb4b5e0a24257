"""Revocation for uploaded CAs: their CRL and settings, and the account deny-list.

- /accounts/{account_id}/mtls_certificates/{id}/crl: PUT (upload), GET, DELETE
- /accounts/{account_id}/mtls_certificates/{id}/crl_settings: PATCH (stale policy, fetching)
- /accounts/{account_id}/mtls_deny_list: GET, POST; /{entry_id}: DELETE
docs/revocation.md has the semantics; docs/api.md the formats.
"""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, Depends, Request
from fastapi.responses import JSONResponse
from pydantic import BaseModel, ConfigDict, Field, StrictBool, StrictStr

from mtlsgate.api.auth import principal_from_request
from mtlsgate.api.common import iso, path_hex_id, path_uuid, store_of
from mtlsgate.api.envelope import ok, ok_list
from mtlsgate.services import crls as svc
from mtlsgate.services import deny_list
from mtlsgate.services.common import utcnow
from mtlsgate.services.permissions import Principal
from mtlsgate.store.models import DenyListEntry

router = APIRouter(prefix="/accounts/{account_id}")
Auth = Annotated[Principal, Depends(principal_from_request)]
CRL_PATH = "/mtls_certificates/{mtls_certificate_id}/crl"


class CrlBody(BaseModel):
    model_config = ConfigDict(extra="forbid")

    crl: StrictStr = Field(max_length=1024 * 1024)


class SettingsBody(BaseModel):
    model_config = ConfigDict(extra="forbid")

    stale_policy: StrictStr | None = None
    fetch: StrictBool | None = None
    # An explicit null clears it (back to the CA certificate's distribution points).
    fetch_url: StrictStr | None = Field(default=None, max_length=svc.MAX_URL + 1)


class DenyBody(BaseModel):
    model_config = ConfigDict(extra="forbid")

    serial_number: StrictStr | None = Field(default=None, max_length=128)
    fingerprint_sha256: StrictStr | None = Field(default=None, max_length=128)
    reason: StrictStr | None = Field(default=None, max_length=deny_list.MAX_REASON)


def crl_json(view: svc.CrlView) -> dict[str, Any]:
    crl, setting = view.crl, view.setting
    return {
        "mtls_certificate_id": view.cert.id,
        "status": view.status,
        "stale": view.status == "stale",
        "stale_policy": view.stale_policy,
        "enforced": view.enforced,
        "issuer": crl.issuer if crl else None,
        # Decimal text: CRL numbers may exceed what JSON numbers carry exactly.
        "crl_number": crl.crl_number if crl else None,
        "this_update": iso(crl.this_update, micro=False) if crl else None,
        "next_update": iso(crl.next_update, micro=False) if crl and crl.next_update else None,
        "revoked_count": crl.revoked_count if crl else 0,
        "source": crl.source if crl else None,
        "source_url": crl.source_url if crl else None,
        "updated_on": iso(crl.updated_on) if crl else None,
        "fetch": {
            "enabled": bool(setting and setting.fetch),
            "url": setting.fetch_url if setting else None,
            "urls": svc.fetch_urls(view.cert, setting.fetch_url if setting else None),
            "last_fetch_at": iso(setting.last_fetch_at)
            if setting and setting.last_fetch_at
            else None,
            "last_fetch_status": setting.last_fetch_status if setting else None,
            "next_fetch_at": iso(setting.next_fetch_at)
            if setting and setting.fetch and setting.next_fetch_at
            else None,
        },
    }


def _ids(request: Request, account_id: str, cert_id: str) -> str:
    path_hex_id(request, account_id)
    return path_uuid(request, cert_id)


@router.put(CRL_PATH, summary="Upload a CRL for an uploaded CA")
def put_crl(
    request: Request, principal: Auth, account_id: str, mtls_certificate_id: str, body: CrlBody
) -> JSONResponse:
    cert_id = _ids(request, account_id, mtls_certificate_id)
    with store_of(request).transaction() as session:
        view = svc.put_crl(session, principal, account_id, cert_id, body.crl, now=utcnow())
        return ok(crl_json(view))


@router.get(CRL_PATH, summary="An uploaded CA's CRL status")
def get_crl(
    request: Request, principal: Auth, account_id: str, mtls_certificate_id: str
) -> JSONResponse:
    cert_id = _ids(request, account_id, mtls_certificate_id)
    with store_of(request).transaction() as session:
        return ok(crl_json(svc.get_crl(session, principal, account_id, cert_id, now=utcnow())))


@router.delete(CRL_PATH, summary="Delete an uploaded CA's CRL")
def delete_crl(
    request: Request, principal: Auth, account_id: str, mtls_certificate_id: str
) -> JSONResponse:
    cert_id = _ids(request, account_id, mtls_certificate_id)
    with store_of(request).transaction() as session:
        return ok(crl_json(svc.delete_crl(session, principal, account_id, cert_id, now=utcnow())))


@router.patch(
    "/mtls_certificates/{mtls_certificate_id}/crl_settings",
    summary="Set an uploaded CA's stale-CRL policy and CRL fetching",
)
def patch_settings(
    request: Request,
    principal: Auth,
    account_id: str,
    mtls_certificate_id: str,
    body: SettingsBody,
) -> JSONResponse:
    cert_id = _ids(request, account_id, mtls_certificate_id)
    with store_of(request).transaction() as session:
        view = svc.update_settings(
            session,
            principal,
            account_id,
            cert_id,
            stale_policy=body.stale_policy,
            fetch=body.fetch,
            fetch_url=body.fetch_url,
            clear_fetch_url="fetch_url" in body.model_fields_set and body.fetch_url is None,
            now=utcnow(),
        )
        return ok(crl_json(view))


def entry_json(entry: DenyListEntry) -> dict[str, Any]:
    return {
        "id": entry.id,
        "serial_number": entry.serial_number,
        "fingerprint_sha256": entry.fingerprint_sha256,
        "reason": entry.reason,
        "created_on": iso(entry.created_on),
    }


@router.get("/mtls_deny_list", summary="List the account's client-certificate deny-list")
def list_deny(request: Request, principal: Auth, account_id: str) -> JSONResponse:
    path_hex_id(request, account_id)
    with store_of(request).transaction() as session:
        return ok_list(
            [entry_json(e) for e in deny_list.list_entries(session, principal, account_id)]
        )


@router.post("/mtls_deny_list", summary="Deny a client certificate by serial or fingerprint")
def add_deny(request: Request, principal: Auth, account_id: str, body: DenyBody) -> JSONResponse:
    path_hex_id(request, account_id)
    with store_of(request).transaction() as session:
        entry = deny_list.add_entry(
            session,
            principal,
            account_id,
            serial_number=body.serial_number,
            fingerprint_sha256=body.fingerprint_sha256,
            reason=body.reason,
        )
        return ok(entry_json(entry))


@router.delete("/mtls_deny_list/{entry_id}", summary="Remove a deny-list entry")
def delete_deny(request: Request, principal: Auth, account_id: str, entry_id: str) -> JSONResponse:
    path_hex_id(request, account_id)
    path_hex_id(request, entry_id)
    with store_of(request).transaction() as session:
        return ok(entry_json(deny_list.delete_entry(session, principal, account_id, entry_id)))
