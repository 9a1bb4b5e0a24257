"""The dashboard's pages. Every read and change calls the same service functions as the API, with
the signed-in token's Principal, so the token's permissions are the dashboard's permissions."""

from __future__ import annotations

import hashlib
import hmac
from typing import Annotated, Any

from fastapi import APIRouter, Depends, Request
from fastapi.responses import HTMLResponse, Response
from starlette.datastructures import FormData, UploadFile

from mtlsgate.dashboard import managed_pages
from mtlsgate.dashboard.sessions import new_secret
from mtlsgate.dashboard.web import (
    SIGNIN_COOKIE,
    Ctx,
    SignInRequired,
    check_csrf,
    check_zone,
    clear_cookie,
    current,
    form_text,
    keystore_of,
    plain,
    redirect,
    render,
    sessions_of,
    set_session_cookie,
    store_of,
)
from mtlsgate.errors import BadRequest, Conflict, MtlsgateError, NotFound
from mtlsgate.hostnames import HOSTNAME_NOT_IN_ZONE, in_zone, normalize_hostname
from mtlsgate.services import hostname_associations, mtls_certificates
from mtlsgate.services.accounts import list_visible_zones
from mtlsgate.services.common import utcnow
from mtlsgate.services.permissions import (
    ACCOUNT_SSL_READ,
    ACCOUNT_SSL_WRITE,
    ZONE_SSL_READ,
    ZONE_SSL_WRITE,
)
from mtlsgate.services.tokens import authenticate

router = APIRouter()

MAX_PEM_BYTES = 512 * 1024  # the API's limit for `certificates`
MAX_NAME = 255
MANAGED = "managed"
BYOCA = "byoca"


async def _form(request: Request) -> FormData:
    return await request.form(max_files=1, max_fields=2000)


Form = Annotated[FormData, Depends(_form)]
Signed = Annotated[Ctx, Depends(current)]


refusal = plain


# --- sign-in, sign-out, zone -------------------------------------------------------------------


@router.get("/", include_in_schema=False)
def home(request: Request) -> Response:
    try:
        current(request)
    except SignInRequired:
        return redirect("/sign-in")
    return redirect("/client-certificates")


def _sign_in_page(
    request: Request, *, error: str | None = None, notice: str | None = None, status: int = 200
) -> HTMLResponse:
    token = new_secret()
    response = render(
        request, "sign_in.html", None, csrf=token, error=error, notice=notice, status=status
    )
    response.set_cookie(
        SIGNIN_COOKIE,
        token,
        path="/dash/",
        httponly=True,
        secure=request.url.scheme == "https",
        samesite="strict",
    )
    return response


@router.get("/sign-in")
def sign_in_page(request: Request) -> Response:
    try:
        current(request)
        return redirect("/client-certificates")
    except SignInRequired as exc:
        notice = "You have signed out." if request.query_params.get("signed_out") else exc.reason
        return _sign_in_page(request, notice=notice)


@router.post("/sign-in")
def sign_in(request: Request, form: Form) -> Response:
    check_csrf(form, request.cookies.get(SIGNIN_COOKIE))
    secret = form_text(form, "api_token", max_len=256).strip()
    if not secret:
        return _sign_in_page(request, error="Enter an API token.", status=400)
    with store_of(request).transaction() as db:
        principal = authenticate(db, secret)
        zones = list_visible_zones(db, principal) if principal is not None else []
        first_zone = zones[0].id if zones else None  # ordered by name
    if principal is None:
        return _sign_in_page(
            request,
            error="This API token is not valid: it is unknown or no longer active.",
            status=400,
        )
    # A fresh session id at sign-in: an id planted before sign-in is never promoted.
    sessions_of(request).delete(request.cookies.get("mtlsgate_session"))
    session_id, _ = sessions_of(request).create(secret, first_zone)
    response = redirect("/client-certificates")
    set_session_cookie(request, response, session_id)
    clear_cookie(request, response, SIGNIN_COOKIE)
    return response


@router.post("/sign-out")
def sign_out(request: Request, form: Form) -> Response:
    try:
        ctx = current(request)
    except SignInRequired:
        return redirect("/sign-in")
    check_csrf(form, ctx.csrf)
    sessions_of(request).delete(ctx.session_id)
    response = redirect("/sign-in?signed_out=1")
    clear_cookie(request, response, "mtlsgate_session")
    return response


@router.post("/zone")
def choose_zone(ctx: Signed, form: Form) -> Response:
    check_csrf(form, ctx.csrf)
    wanted = form_text(form, "zone_id", max_len=64)
    if any(z.id == wanted for z in ctx.zones):
        ctx.session.zone_id = wanted
    back = form_text(form, "next", max_len=200)
    # Only a page of the dashboard itself: never an open redirect.
    if not back.startswith("/dash/") or "//" in back or "\\" in back:
        back = "/dash/client-certificates"
    return redirect(back.removeprefix("/dash"))


# --- Client Certificates -----------------------------------------------------------------------


def _zone_write(ctx: Ctx) -> bool:
    return ctx.zone is not None and ctx.principal.can(
        ZONE_SSL_WRITE, account_id=ctx.account_id, zone_id=ctx.zone.id
    )


@router.get("/client-certificates")
def client_certificates(ctx: Signed, request: Request) -> Response:
    tab = BYOCA if request.query_params.get("tab") == BYOCA else MANAGED
    values: dict[str, Any] = {"tab": tab, "error": None}
    with store_of(request).transaction() as db:
        if tab == BYOCA:
            try:
                certs = mtls_certificates.list_certificates(db, ctx.principal, ctx.account_id)
                values["cas"] = [
                    {
                        "cert": c,
                        "label": c.name or c.id,
                        "hostnames": [
                            (h, zone) for h, zone, _ in mtls_certificates.association_rows(db, c.id)
                        ],
                    }
                    for c in certs
                    if c.ca
                ]
            except MtlsgateError as exc:
                values["cas"] = []
                values["error"] = refusal(exc, ACCOUNT_SSL_READ)
            values["can_write"] = ctx.principal.can(ACCOUNT_SSL_WRITE, account_id=ctx.account_id)
        elif ctx.zone is not None:
            try:
                values["hosts"] = hostname_associations.list_hostnames(
                    db, ctx.principal, ctx.zone.id, None
                )
            except MtlsgateError as exc:
                values["hosts"] = []
                values["error"] = refusal(exc, ZONE_SSL_READ)
            values["can_write"] = _zone_write(ctx)
    if tab == MANAGED and ctx.zone is not None and values["error"] is None:
        values["managed_certs"] = managed_pages.list_managed(ctx)
        values["status_words"] = managed_pages.STATUS_WORDS
    return render(request, "client_certificates.html", ctx, active="cc", **values)


def _add_page(
    ctx: Ctx, *, ca: str, errors: dict[str, str], name: str = "", status: int = 200
) -> HTMLResponse:
    return render(
        ctx.request,
        "add_certificate.html",
        ctx,
        active="cc",
        ca=ca,
        errors=errors,
        name=name,
        can_upload=ctx.principal.can(ACCOUNT_SSL_WRITE, account_id=ctx.account_id),
        can_issue=_zone_write(ctx),
        managed=managed_pages.default_managed_form(),
        status=status,
    )


@router.get("/client-certificates/add")
def add_certificate_page(ctx: Signed, request: Request) -> Response:
    ca = BYOCA if request.query_params.get("ca") == BYOCA else MANAGED
    return _add_page(ctx, ca=ca, errors={})


def _unprintable(ch: str) -> bool:
    """C0 and C1 controls, DEL, and the bidi embeddings, overrides and isolates (U+202A-202E,
    U+2066-2069), which could make a name read as another one in a list."""
    code = ord(ch)
    return code < 32 or 127 <= code < 160 or 0x202A <= code <= 0x202E or 0x2066 <= code <= 0x2069


def _read_pem(upload: object) -> tuple[str | None, str | None]:
    """(text, error) of the uploaded file."""
    if not isinstance(upload, UploadFile) or not upload.filename:
        return None, "Choose the file that holds your CA certificate (PEM encoded)."
    raw = upload.file.read(MAX_PEM_BYTES + 1)
    if not raw:
        return None, f"The file {upload.filename} is empty."
    if len(raw) > MAX_PEM_BYTES:
        return None, f"The file is too large: at most {MAX_PEM_BYTES // 1024} KiB."
    try:
        return raw.decode("utf-8"), None
    except UnicodeDecodeError:
        return None, (
            f"The file {upload.filename} is not PEM text (it looks binary, perhaps DER). "
            "Convert it with: openssl x509 -inform der -in FILE -out FILE.pem"
        )


@router.post("/client-certificates/add")
def add_certificate(ctx: Signed, form: Form) -> Response:
    check_csrf(form, ctx.csrf)
    ca = BYOCA if form_text(form, "certificate_authority") == BYOCA else MANAGED
    name = form_text(form, "name", max_len=MAX_NAME + 1).strip()
    if ca == MANAGED:
        return managed_pages.issue(
            ctx,
            form,
            can_upload=ctx.principal.can(ACCOUNT_SSL_WRITE, account_id=ctx.account_id),
            can_issue=_zone_write(ctx),
        )
    errors: dict[str, str] = {}
    pem, file_error = _read_pem(form.get("ca_file"))
    if file_error:
        errors["ca_file"] = file_error
    if not name:
        errors["name"] = "Enter a name for the CA."
    elif len(name) > MAX_NAME or any(_unprintable(ch) for ch in name):
        errors["name"] = (
            f"The name must be at most {MAX_NAME} printable characters (no control characters "
            "and no bidirectional-text overrides)."
        )
    if errors or pem is None:
        return _add_page(ctx, ca=ca, errors=errors, name=name, status=400)
    try:
        with store_of(ctx.request).transaction() as db:
            done = mtls_certificates.upload(
                db,
                keystore_of(ctx.request),
                ctx.principal,
                ctx.account_id,
                ca=True,
                certificates=pem,
                name=name,
                private_key=None,
                now=utcnow(),
            )
            cert_id = done.certificate.id
    except MtlsgateError as exc:
        # Errors about the file go next to the file; quota, plan and permission above the form.
        key = "ca_file" if isinstance(exc, BadRequest) else "form"
        return _add_page(
            ctx, ca=ca, errors={key: refusal(exc, ACCOUNT_SSL_WRITE)}, name=name, status=400
        )
    ctx.flash(f"The CA “{name}” was uploaded.")
    for warning in done.warnings:
        ctx.flash(f"Warning about the certificate: {warning.message}.")
    return redirect(f"/client-certificates/byoca/{cert_id}/hostnames?step=associate")


# --- hostnames of a CA (uploaded, or the managed CA's Hosts) -----------------------------------


def _cert_id(value: str) -> str:
    try:
        return hostname_associations.parse_certificate_id(value)
    except MtlsgateError:
        raise NotFound("There is no such certificate.") from None


def _hostnames_page(
    ctx: Ctx,
    *,
    cert_id: str | None,
    step: str,
    hostnames: list[str],
    errors: dict[str, str],
    digest: str,
    typed: str = "",
    notice: str | None = None,
    status: int = 200,
) -> HTMLResponse:
    cert = None
    other_zones: list[tuple[str, str]] = []
    with store_of(ctx.request).transaction() as db:
        if cert_id is not None:
            cert = mtls_certificates.get_certificate(db, ctx.principal, ctx.account_id, cert_id)
            zone_name = ctx.zone.name if ctx.zone else None
            rows = mtls_certificates.association_rows(db, cert_id)
            other_zones = [(h, z) for h, z, _ in rows if z != zone_name]
    if cert_id is None:
        heading = "Edit Hosts"
        action = "/dash/client-certificates/managed/hosts"
        back = "/dash/client-certificates?tab=managed"
    else:
        heading = "Associate Hostnames" if step == "associate" else "Certificate Details"
        action = f"/dash/client-certificates/byoca/{cert_id}/hostnames"
        back = "/dash/client-certificates?tab=byoca"
    return render(
        ctx.request,
        "hostnames.html",
        ctx,
        active="cc",
        heading=heading,
        cert=cert,
        step=step,
        action=action,
        back=back,
        hostnames=hostnames,
        other_zones=other_zones,
        errors=errors,
        typed=typed,
        notice=notice,
        digest=digest,
        can_write=_zone_write(ctx),
        status=status,
    )


def hostnames_digest(hostnames: list[str]) -> str:
    """The fingerprint of a stored hostname list, carried by the page as it was loaded: Save is
    refused when the stored list changed since (another tab, another person, the API)."""
    return hashlib.sha256("\n".join(sorted(hostnames)).encode()).hexdigest()


def _current_hostnames(ctx: Ctx, cert_id: str | None) -> list[str]:
    if ctx.zone is None:
        return []
    with store_of(ctx.request).transaction() as db:
        return hostname_associations.list_hostnames(db, ctx.principal, ctx.zone.id, cert_id)


@router.get("/client-certificates/byoca/{cert_id}/hostnames")
def ca_hostnames_page(ctx: Signed, cert_id: str) -> Response:
    cid = _cert_id(cert_id)
    step = "associate" if ctx.request.query_params.get("step") == "associate" else "details"
    hostnames = _current_hostnames(ctx, cid)
    return _hostnames_page(
        ctx,
        cert_id=cid,
        step=step,
        hostnames=hostnames,
        errors={},
        digest=hostnames_digest(hostnames),
    )


@router.get("/client-certificates/managed/hosts")
def managed_hosts_page(ctx: Signed) -> Response:
    hostnames = _current_hostnames(ctx, None)
    return _hostnames_page(
        ctx,
        cert_id=None,
        step="hosts",
        hostnames=hostnames,
        errors={},
        digest=hostnames_digest(hostnames),
    )


@router.post("/client-certificates/byoca/{cert_id}/hostnames")
def ca_hostnames(ctx: Signed, cert_id: str, form: Form) -> Response:
    return _edit_hostnames(ctx, _cert_id(cert_id), form)


@router.post("/client-certificates/managed/hosts")
def managed_hosts(ctx: Signed, form: Form) -> Response:
    return _edit_hostnames(ctx, None, form)


def _edit_hostnames(ctx: Ctx, cert_id: str | None, form: FormData) -> Response:
    """The list being edited travels in the form (hidden fields): Add and the remove crosses
    change only the page; Save replaces the associations through the service, like the API's
    PUT. Nothing is half-saved. The form names the zone it was opened in and the digest of the
    list as loaded: a zone switched in another tab, or a list changed since, refuses the Save."""
    check_csrf(form, ctx.csrf)
    zone = check_zone(ctx, form)
    digest = form_text(form, "loaded_digest", max_len=64)
    step = form_text(form, "step")
    step = step if step in ("associate", "details", "hosts") else "details"
    hostnames = [h for h in form.getlist("hostnames") if isinstance(h, str)][:1000]
    typed = form_text(form, "new_hostname", max_len=300)
    action = form_text(form, "action")
    removing = form_text(form, "remove", max_len=300)

    def page(
        errors: dict[str, str], typed: str = "", notice: str | None = None, status: int = 200
    ) -> HTMLResponse:
        return _hostnames_page(
            ctx,
            cert_id=cert_id,
            step=step,
            hostnames=hostnames,
            errors=errors,
            typed=typed,
            notice=notice,
            digest=digest,
            status=status,
        )

    if removing:
        hostnames = [h for h in hostnames if h != removing]
        return page(
            errors={},
            typed=typed,
            notice=f"{removing} will be removed when you select Save.",
        )
    if typed.strip() or action == "add":
        try:
            hostname = normalize_hostname(typed)
            if not in_zone(hostname, zone.name):
                raise MtlsgateError(
                    f"{hostname} is not in the zone {zone.name}: choose a hostname of this zone, "
                    "or switch zones.",
                    code=HOSTNAME_NOT_IN_ZONE,
                )
        except MtlsgateError as exc:
            error = refusal(exc, ZONE_SSL_WRITE)
            return page(errors={"new_hostname": error}, typed=typed, status=400)
        if hostname not in hostnames:
            hostnames.append(hostname)
        if action != "save":
            return page(errors={}, notice=f"{hostname} will be added when you select Save.")
    if action != "save":
        return page(errors={}, typed=typed)
    saved: list[str] | None = None
    try:
        with store_of(ctx.request).transaction() as db:
            stored = hostname_associations.list_hostnames(db, ctx.principal, zone.id, cert_id)
            # Checked and written in one transaction: nothing is saved over a newer list.
            if hmac.compare_digest(hostnames_digest(stored), digest):
                saved = hostname_associations.replace_hostnames(
                    db, ctx.principal, zone.id, hostnames, cert_id, now=utcnow()
                )
    except MtlsgateError as exc:
        return page(errors={"hostnames": refusal(exc, ZONE_SSL_WRITE)}, status=400)
    if saved is None:
        return page(
            errors={
                "hostnames": "The hostnames were changed elsewhere since this page was opened "
                "(in another tab, or through the API); nothing was saved. Go back to Client "
                "Certificates and open this page again."
            },
            status=409,
        )
    what = "the Cloudflare-managed CA" if cert_id is None else "this CA"
    ctx.flash(
        f"Saved: {len(saved)} hostname(s) of {zone.name} now use {what} for mTLS"
        + (f": {', '.join(saved)}." if saved else ".")
    )
    if cert_id is None:
        return redirect("/client-certificates?tab=managed")
    return redirect("/client-certificates?tab=byoca")


# --- delete an uploaded CA ---------------------------------------------------------------------


def _delete_page(
    ctx: Ctx, cert_id: str, *, error: str | None = None, status: int = 200
) -> Response:
    with store_of(ctx.request).transaction() as db:
        cert = mtls_certificates.get_certificate(db, ctx.principal, ctx.account_id, cert_id)
        in_use = [(h, z) for h, z, _ in mtls_certificates.association_rows(db, cert_id)]
    return render(
        ctx.request,
        "delete_ca.html",
        ctx,
        active="cc",
        cert=cert,
        in_use=in_use,
        error=error,
        can_write=ctx.principal.can(ACCOUNT_SSL_WRITE, account_id=ctx.account_id),
        status=status,
    )


@router.get("/client-certificates/byoca/{cert_id}/delete")
def delete_ca_page(ctx: Signed, cert_id: str) -> Response:
    return _delete_page(ctx, _cert_id(cert_id))


@router.post("/client-certificates/byoca/{cert_id}/delete")
def delete_ca(ctx: Signed, cert_id: str, form: Form) -> Response:
    check_csrf(form, ctx.csrf)
    cid = _cert_id(cert_id)
    try:
        with store_of(ctx.request).transaction() as db:
            cert = mtls_certificates.delete_certificate(db, ctx.principal, ctx.account_id, cid)
            label = cert.name or cert.id
    except Conflict:
        # The page lists the hostnames that remain and says to remove them first.
        return _delete_page(ctx, cid, status=409)
    except MtlsgateError as exc:
        if isinstance(exc, NotFound):
            raise
        return _delete_page(ctx, cid, error=refusal(exc, ACCOUNT_SSL_WRITE), status=exc.status)
    ctx.flash(f"The CA “{label}” was deleted.")
    return redirect("/client-certificates?tab=byoca")
