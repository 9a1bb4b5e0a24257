"""Uploaded CAs' CRLs and the account deny-lists, as RevocationIndex parts for the edge.

Called by edge/runtime/config_sync.py when it builds a snapshot (docs/revocation.md, "What the
edge does"). Staleness is decided against the clock at build time; the CRL scheduler in the
`serve` process bumps the config version when a fail_closed CA's CRL passes its nextUpdate, so
the edge rebuilds then (services/crl_fetcher.py).
"""

from __future__ import annotations

from collections import OrderedDict
from collections.abc import Mapping
from datetime import datetime

from cryptography import x509
from cryptography.hazmat.primitives import hashes
from sqlalchemy import select
from sqlalchemy.orm import Session

from mtlsgate.pki.crl import is_stale
from mtlsgate.pki.revocation import IssuerRevocations, RevocationIndex
from mtlsgate.store import models as m

# Parsed revoked-serial sets by (CA id, CRL number): a config change elsewhere must not make
# every worker re-parse every CRL. A stored CRL never changes under the same number.
_CACHE_SIZE = 256
_serials_cache: OrderedDict[tuple[str, str], frozenset[int]] = OrderedDict()


def _serials(ca_id: str, row: m.UploadedCaCrl) -> frozenset[int]:
    key = (ca_id, row.crl_number)
    cached = _serials_cache.get(key)
    if cached is not None:
        _serials_cache.move_to_end(key)
        return cached
    serials = frozenset(r.serial_number for r in x509.load_der_x509_crl(row.der))
    _serials_cache[key] = serials
    if len(_serials_cache) > _CACHE_SIZE:
        _serials_cache.popitem(last=False)
    return serials


def uploaded_issuers(session: Session, now: datetime) -> dict[str, dict[bytes, IssuerRevocations]]:
    """Account id → {SHA-256 of an uploaded CA: its CRL revocations} for the CAs with a CRL
    or a fail_closed policy (a fail_open CA without CRL has nothing to check)."""
    crls = {row.mtls_certificate_id: row for row in session.scalars(select(m.UploadedCaCrl))}
    closed = {
        row.mtls_certificate_id
        for row in session.scalars(select(m.UploadedCaRevocationSetting))
        if row.stale_policy == "fail_closed"
    }
    wanted = set(crls) | closed
    out: dict[str, dict[bytes, IssuerRevocations]] = {}
    if not wanted:
        return out
    certs = session.scalars(
        select(m.MtlsCertificate).where(
            m.MtlsCertificate.id.in_(wanted), m.MtlsCertificate.ca.is_(True)
        )
    )
    for cert in certs:
        anchor = x509.load_pem_x509_certificates(cert.certificates.encode())[0]
        row = crls.get(cert.id)
        fail_closed = cert.id in closed
        if row is None:
            entry = IssuerRevocations(frozenset(), "crl", unavailable="crl_missing")
        else:
            stale = is_stale(row.next_update, now)
            entry = IssuerRevocations(
                _serials(cert.id, row),
                "crl",
                unavailable="crl_stale" if stale and fail_closed else None,
            )
        out.setdefault(cert.account_id, {})[anchor.fingerprint(hashes.SHA256())] = entry
    return out


def deny_lists(session: Session) -> dict[str, tuple[frozenset[int], frozenset[bytes]]]:
    """Account id → (denied serials, denied leaf SHA-256 fingerprints)."""
    serials: dict[str, set[int]] = {}
    fingerprints: dict[str, set[bytes]] = {}
    for entry in session.scalars(select(m.DenyListEntry)):
        if entry.serial_number is not None:
            serials.setdefault(entry.account_id, set()).add(int(entry.serial_number, 16))
        if entry.fingerprint_sha256 is not None:
            fingerprints.setdefault(entry.account_id, set()).add(
                bytes.fromhex(entry.fingerprint_sha256)
            )
    return {
        account: (
            frozenset(serials.get(account, ())),
            frozenset(fingerprints.get(account, ())),
        )
        for account in serials.keys() | fingerprints.keys()
    }


def with_uploaded_revocations(
    session: Session,
    managed: Mapping[str, Mapping[bytes, IssuerRevocations]],
    *,
    now: datetime,
) -> dict[str, RevocationIndex]:
    """Account id → RevocationIndex: the managed CAs' entries (given), the uploaded CAs' CRL
    entries and the account deny-list."""
    uploaded = uploaded_issuers(session, now)
    denied = deny_lists(session)
    out: dict[str, RevocationIndex] = {}
    for account in managed.keys() | uploaded.keys() | denied.keys():
        issuers = {**uploaded.get(account, {}), **managed.get(account, {})}
        deny_serials, deny_fingerprints = denied.get(account, (frozenset(), frozenset()))
        out[account] = RevocationIndex(issuers, deny_serials, deny_fingerprints)
    return out
