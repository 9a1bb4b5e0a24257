"""Cloudflare-managed client certificates in the dashboard: issue (a key and CSR generated for
the user, shown once, or the user's own CSR), revoke and restore — all through
services/client_certificates.py, as the API does."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Depends, Request
from fastapi.responses import Response
from starlette.datastructures import FormData

from mtlsgate.dashboard.web import (
    Ctx,
    check_csrf,
    check_zone,
    current,
    form_text,
    keystore_of,
    plain,
    redirect,
    render,
    store_of,
)
from mtlsgate.errors import MtlsgateError, NotFound
from mtlsgate.pki.managed_ca import MAX_VALIDITY_DAYS, generate_key_and_csr
from mtlsgate.services import client_certificates as svc
from mtlsgate.services.common import utcnow
from mtlsgate.services.permissions import ZONE_SSL_WRITE
from mtlsgate.store.models import ClientCertificate

router = APIRouter()

# (days, label) offered by "Certificate Validity"; the default is Cloudflare's, 10 years.
VALIDITY_CHOICES = ((365, "1 year"), (730, "2 years"), (1825, "5 years"), (3650, "10 years"))
DEFAULT_VALIDITY = MAX_VALIDITY_DAYS
KEY_TYPES = (("ec", "ECDSA P-256"), ("rsa", "RSA 2048"))
STATUS_WORDS = {
    svc.ACTIVE: "Active",
    svc.PENDING_REVOCATION: "Revocation pending (the edges are applying it; already refused)",
    svc.REVOKED: "Revoked",
    svc.PENDING_REACTIVATION: "Restore pending (the edges are applying it)",
}


async def _form(request: Request) -> FormData:
    return await request.form(max_files=0, max_fields=100)


Form = Annotated[FormData, Depends(_form)]
Signed = Annotated[Ctx, Depends(current)]


def _plain(exc: MtlsgateError) -> str:
    return plain(exc, ZONE_SSL_WRITE)


def _zone(ctx: Ctx) -> str:
    if ctx.zone is None:
        raise NotFound("This API token sees no zone.")
    return ctx.zone.id


def list_managed(ctx: Ctx) -> list[ClientCertificate]:
    """The zone's managed certificates (the first 50, oldest first) for the managed tab."""
    with store_of(ctx.request).transaction() as db:
        page, _ = svc.list_certificates(
            db,
            ctx.principal,
            _zone(ctx),
            status="all",
            page=1,
            per_page=svc.MAX_PER_PAGE,
            now=utcnow(),
        )
        return list(page.items)


def issue(ctx: Ctx, form: FormData, *, can_upload: bool, can_issue: bool) -> Response:
    """The managed branch of Add Certificate (the caller checked the CSRF token)."""
    zone_id = check_zone(ctx, form).id
    source = form_text(form, "key_source")
    csr = form_text(form, "csr", max_len=70_000)
    common_name = form_text(form, "common_name", max_len=100).strip()
    key_type = form_text(form, "key_type")
    try:
        validity = int(form_text(form, "validity_days") or DEFAULT_VALIDITY)
    except ValueError:
        validity = -1
    errors: dict[str, str] = {}
    private_key: str | None = None
    try:
        if source == "generate":
            generated = generate_key_and_csr(common_name, key_type=key_type)
            csr, private_key = generated.csr_pem, generated.private_key_pem
        with store_of(ctx.request).transaction() as db:
            view = svc.issue(
                db,
                keystore_of(ctx.request),
                ctx.principal,
                zone_id,
                csr=csr,
                validity_days=validity,
                now=utcnow(),
            )
            cert = view.certificate
    except MtlsgateError as exc:
        field = {
            "csr": "csr",
            "validity_days": "validity_days",
        }.get(exc.pointer or "", "common_name" if source == "generate" else "csr")
        if exc.status == 403:
            field = "form"
        errors[field] = _plain(exc)
        return render(
            ctx.request,
            "add_certificate.html",
            ctx,
            active="cc",
            ca="managed",
            errors=errors,
            name="",
            can_upload=can_upload,
            can_issue=can_issue,
            managed=_managed_form_values(source, common_name, key_type, validity, csr),
            status=400,
        )
    if private_key is not None:
        ctx.session.issued_keys = {cert.id: private_key}  # only the latest one waits
    # Redirect after POST: reloading the page shows the certificate, never issues another.
    return redirect(f"/client-certificates/managed/{cert.id}/issued")


@router.get("/client-certificates/managed/{cert_id}/issued")
def issued_page(ctx: Signed, cert_id: str) -> Response:
    with store_of(ctx.request).transaction() as db:
        view = svc.get_certificate(db, ctx.principal, _zone(ctx), cert_id[:64], now=utcnow())
    private_key = ctx.session.issued_keys.pop(view.certificate.id, None)
    return render(
        ctx.request,
        "issued.html",
        ctx,
        active="cc",
        cert=view.certificate,
        ca_name=view.ca_name,
        private_key=private_key,
    )


def _managed_form_values(
    source: str, common_name: str, key_type: str, validity: int, csr: str
) -> dict[str, object]:
    return {
        "source": source if source in ("generate", "csr") else "generate",
        "common_name": common_name,
        "key_type": key_type,
        "validity": validity if any(d == validity for d, _ in VALIDITY_CHOICES) else 3650,
        "csr": csr if source == "csr" else "",
        "key_types": KEY_TYPES,
        "validity_choices": VALIDITY_CHOICES,
    }


def default_managed_form() -> dict[str, object]:
    return _managed_form_values("generate", "", "ec", DEFAULT_VALIDITY, "")


def _cert_for(ctx: Ctx, cert_id: str) -> ClientCertificate:
    with store_of(ctx.request).transaction() as db:
        return svc.get_certificate(db, ctx.principal, _zone(ctx), cert_id, now=utcnow()).certificate


@router.get("/client-certificates/managed/{cert_id}/revoke")
def revoke_page(ctx: Signed, cert_id: str) -> Response:
    return render(
        ctx.request,
        "revoke.html",
        ctx,
        active="cc",
        cert=_cert_for(ctx, cert_id[:64]),
        status_words=STATUS_WORDS,
    )


@router.post("/client-certificates/managed/{cert_id}/revoke")
def revoke(ctx: Signed, cert_id: str, form: Form) -> Response:
    return _change(ctx, cert_id[:64], form, revoke=True)


@router.post("/client-certificates/managed/{cert_id}/restore")
def restore(ctx: Signed, cert_id: str, form: Form) -> Response:
    return _change(ctx, cert_id[:64], form, revoke=False)


def _change(ctx: Ctx, cert_id: str, form: FormData, *, revoke: bool) -> Response:
    check_csrf(form, ctx.csrf)
    zone_id = check_zone(ctx, form).id
    try:
        with store_of(ctx.request).transaction() as db:
            change = svc.revoke if revoke else svc.reactivate
            cert = change(db, ctx.principal, zone_id, cert_id, now=utcnow()).certificate
            what = f"{cert.common_name} (serial {cert.serial_number})"
    except NotFound:
        raise
    except MtlsgateError as exc:
        ctx.flash(_plain(exc))
        return redirect("/client-certificates?tab=managed")
    ctx.flash(
        f"The certificate {what} was revoked: the edge refuses it from now on."
        if revoke
        else f"The certificate {what} was restored."
    )
    return redirect("/client-certificates?tab=managed")
