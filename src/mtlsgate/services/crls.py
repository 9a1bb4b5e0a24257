"""CRLs of uploaded CAs: upload, show, delete; the per-CA stale policy and fetch settings.

The checks on a CRL itself are pure (pki/crl.py); here: which CA, account scoping and
permissions, the replacement rule against the stored CRL, and one config-version bump per change
so the edge rebuilds its revocation index (docs/revocation.md).
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from urllib.parse import urlsplit

from cryptography import x509
from sqlalchemy import select
from sqlalchemy.orm import Session

from mtlsgate.errors import BadRequest, NotFound, quote
from mtlsgate.pki.crl import CrlError, ParsedCrl, check_replacement, distribution_points, is_stale
from mtlsgate.pki.crl import parse_crl as parse_crl_pure
from mtlsgate.services.accounts import visible_account
from mtlsgate.services.permissions import ACCOUNT_SSL_READ, ACCOUNT_SSL_WRITE, Principal
from mtlsgate.store.db import bump_config_version
from mtlsgate.store.models import MtlsCertificate, UploadedCaCrl, UploadedCaRevocationSetting

STALE_POLICIES = ("fail_open", "fail_closed")
DEFAULT_POLICY = "fail_open"
MAX_URL = 2048

# Error codes (docs/api.md): stable, clients may match on them.
CRL_REFUSED = 1530  # not a CRL, wrong issuer, bad signature, no number, delta CRL, ...
CRL_NOT_NEWER = 1531  # the replacement rule: the stored CRL has an equal or higher number
CRL_NOT_A_CA = 1532  # the uploaded certificate is not a CA (ca: false)
CRL_NONE = 1533  # DELETE when no CRL is stored
CRL_FETCH_URL = 1534  # fetching asked for without a usable http:// URL


@dataclass(frozen=True)
class CrlView:
    """What GET .../crl shows: the stored CRL (if any) and the CA's revocation settings."""

    cert: MtlsCertificate
    crl: UploadedCaCrl | None
    setting: UploadedCaRevocationSetting | None
    now: datetime

    @property
    def stale_policy(self) -> str:
        return self.setting.stale_policy if self.setting else DEFAULT_POLICY

    @property
    def status(self) -> str:
        """ "current", "stale" (past nextUpdate) or "missing"."""
        if self.crl is None:
            return "missing"
        return "stale" if is_stale(self.crl.next_update, self.now) else "current"

    @property
    def enforced(self) -> str:
        """What the edge does for this CA's clients: "crl" (listed serials are revoked),
        "all_revoked" (fail_closed with a stale or missing CRL) or "none" (fail_open, no CRL)."""
        if self.status == "current":
            return "crl"
        if self.stale_policy == "fail_closed":
            return "all_revoked"
        return "crl" if self.crl is not None else "none"


def ca_certificate(cert: MtlsCertificate) -> x509.Certificate:
    """The trust anchor of an upload: its first certificate (docs/api.md)."""
    return x509.load_pem_x509_certificates(cert.certificates.encode())[0]


def _uploaded_ca(
    session: Session, principal: Principal, account_id: str, cert_id: str, permission: str
) -> MtlsCertificate:
    visible_account(session, principal, account_id)
    principal.require(permission, account_id=account_id)
    cert = session.get(MtlsCertificate, cert_id)
    if cert is None or cert.account_id != account_id:
        raise NotFound("mTLS certificate not found", code=1404)
    if not cert.ca:
        raise BadRequest(
            "CRLs apply to uploaded CA certificates only; this certificate was uploaded with "
            '"ca": false',
            code=CRL_NOT_A_CA,
        )
    return cert


def _view(session: Session, cert: MtlsCertificate, now: datetime) -> CrlView:
    return CrlView(
        cert=cert,
        crl=session.get(UploadedCaCrl, cert.id),
        setting=session.get(UploadedCaRevocationSetting, cert.id),
        now=now,
    )


def get_crl(
    session: Session, principal: Principal, account_id: str, cert_id: str, *, now: datetime
) -> CrlView:
    cert = _uploaded_ca(session, principal, account_id, cert_id, ACCOUNT_SSL_READ)
    return _view(session, cert, now)


def put_crl(
    session: Session,
    principal: Principal,
    account_id: str,
    cert_id: str,
    crl: str,
    *,
    now: datetime,
) -> CrlView:
    cert = _uploaded_ca(session, principal, account_id, cert_id, ACCOUNT_SSL_WRITE)
    try:
        parsed = parse_crl_pure(crl, ca_certificate(cert), now=now)
    except CrlError as exc:
        raise BadRequest(f"CRL refused: {exc.message}", code=CRL_REFUSED) from None
    store_crl(session, cert, parsed, source="uploaded", url=None, now=now)
    return _view(session, cert, now)


def store_crl(
    session: Session,
    cert: MtlsCertificate,
    parsed: ParsedCrl,
    *,
    source: str,
    url: str | None,
    now: datetime,
) -> bool:
    """Store a checked CRL under the replacement rule. True when it changed the stored CRL;
    False for the stored CRL itself again; BadRequest for an older or conflicting one."""
    # Lock the CA row: two uploads (or an upload and a fetch) compare against the same state.
    session.execute(
        select(MtlsCertificate.id).where(MtlsCertificate.id == cert.id).with_for_update()
    )
    row = session.get(UploadedCaCrl, cert.id)
    try:
        changed = check_replacement(
            int(row.crl_number) if row else None,
            parsed.crl_number,
            same_bytes=row is not None and row.der == parsed.der,
        )
    except CrlError as exc:
        raise BadRequest(f"CRL refused: {exc.message}", code=CRL_NOT_NEWER) from None
    if not changed:
        return False
    if row is None:
        row = UploadedCaCrl(mtls_certificate_id=cert.id, account_id=cert.account_id)
        session.add(row)
    row.der = parsed.der
    row.issuer = parsed.issuer
    row.crl_number = str(parsed.crl_number)
    row.this_update = parsed.this_update
    row.next_update = parsed.next_update
    row.revoked_count = len(parsed.revoked_serials)
    row.source = source
    row.source_url = url
    row.updated_on = now
    setting = session.get(UploadedCaRevocationSetting, cert.id)
    if setting is not None:
        setting.stale_noticed = None  # a new nextUpdate: the scheduler watches it afresh
    session.flush()
    bump_config_version(session)
    return True


def delete_crl(
    session: Session, principal: Principal, account_id: str, cert_id: str, *, now: datetime
) -> CrlView:
    cert = _uploaded_ca(session, principal, account_id, cert_id, ACCOUNT_SSL_WRITE)
    row = session.get(UploadedCaCrl, cert.id)
    if row is None:
        raise NotFound("No CRL is stored for this CA", code=CRL_NONE)
    session.delete(row)
    session.flush()
    bump_config_version(session)
    return _view(session, cert, now)


def update_settings(
    session: Session,
    principal: Principal,
    account_id: str,
    cert_id: str,
    *,
    stale_policy: str | None,
    fetch: bool | None,
    fetch_url: str | None,
    clear_fetch_url: bool,
    now: datetime,
) -> CrlView:
    cert = _uploaded_ca(session, principal, account_id, cert_id, ACCOUNT_SSL_WRITE)
    setting = session.get(UploadedCaRevocationSetting, cert.id)
    if setting is None:
        setting = UploadedCaRevocationSetting(
            mtls_certificate_id=cert.id,
            account_id=account_id,
            stale_policy=DEFAULT_POLICY,
            fetch=False,
        )
        session.add(setting)
    if stale_policy is not None:
        if stale_policy not in STALE_POLICIES:
            raise BadRequest(
                f"stale_policy must be one of {', '.join(STALE_POLICIES)}; "
                f"got {quote(stale_policy)}"
            )
        setting.stale_policy = stale_policy
    if clear_fetch_url:
        setting.fetch_url = None
    elif fetch_url is not None:
        setting.fetch_url = check_fetch_url(fetch_url)
    if fetch is not None:
        setting.fetch = fetch
    if setting.fetch:
        if fetch_urls(cert, setting.fetch_url) == []:
            raise BadRequest(
                "fetching needs an http:// URL: this CA certificate has no http:// CRL "
                'distribution point; give one as "fetch_url"',
                code=CRL_FETCH_URL,
            )
        if fetch or fetch_url is not None:
            setting.next_fetch_at = now  # fetch soon after it is switched on or re-pointed
            setting.fetch_etag = setting.fetch_last_modified = None
    setting.modified_on = now
    session.flush()
    bump_config_version(session)
    return _view(session, cert, now)


def check_fetch_url(url: str) -> str:
    if len(url) > MAX_URL:
        raise BadRequest(f"fetch_url is longer than {MAX_URL} characters", code=CRL_FETCH_URL)
    try:
        parts = urlsplit(url)
        parts.port  # noqa: B018 - raises ValueError on a bad port
    except ValueError:
        raise BadRequest(
            f"fetch_url is not a valid URL: {quote(url)}", code=CRL_FETCH_URL
        ) from None
    if parts.scheme.lower() != "http" or not parts.hostname:
        raise BadRequest(
            "fetch_url must be an http:// URL (CRLs are signed and published over plain HTTP)",
            code=CRL_FETCH_URL,
        )
    if parts.username is not None or any(ch.isspace() or ord(ch) < 32 for ch in url):
        raise BadRequest("fetch_url must not carry credentials or whitespace", code=CRL_FETCH_URL)
    return url


def fetch_urls(cert: MtlsCertificate, explicit: str | None) -> list[str]:
    """Where to fetch the CA's CRL from: the explicit URL, else its distribution points."""
    if explicit:
        return [explicit]
    return distribution_points(ca_certificate(cert))
