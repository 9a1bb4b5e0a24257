"""Client certificates signed by the account's managed CA: issue, list, revoke, reactivate.

Status follows propagation (docs/managed-ca.md): a revocation or reactivation is stored as
`pending_*` with the config version that carried it (`status_version`), and settles to
`revoked` / `active` only once every *running* edge node has reported that version in its
heartbeat (edge_nodes), and at least one is running. Nothing settles it on a timer: it is
re-evaluated whenever the certificates are read, from what the edge nodes last reported.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta

from sqlalchemy import and_, func, select, update
from sqlalchemy.orm import Session

from mtlsgate.edge.liveness import RUNNING_WINDOW
from mtlsgate.errors import BadRequest, NotFound, quote
from mtlsgate.pki.managed_ca import check_validity_days, parse_csr, sign_client_certificate
from mtlsgate.services.accounts import active_managed_ca, visible_zone
from mtlsgate.services.common import Page, hex_id, paginate
from mtlsgate.services.permissions import ZONE_SSL_READ, ZONE_SSL_WRITE, Principal
from mtlsgate.store.db import bump_config_version, store_now
from mtlsgate.store.keystore import KeyStore
from mtlsgate.store.models import ClientCertificate, ConfigState, EdgeNode, ManagedCA, Zone

ACTIVE = "active"
PENDING_REVOCATION = "pending_revocation"
REVOKED = "revoked"
PENDING_REACTIVATION = "pending_reactivation"
STATUSES = (ACTIVE, PENDING_REACTIVATION, PENDING_REVOCATION, REVOKED)
# The statuses in which the edge refuses the certificate (cert_revoked = true).
REVOKED_AT_EDGE = (PENDING_REVOCATION, REVOKED)

# An edge node is running while its heartbeat is this recent; one that is silent longer has
# fenced itself (it refuses requests until its configuration is confirmed current), so
# no longer waiting for it cannot let a revoked certificate through: edge/liveness.py.
EDGE_RUNNING_WINDOW = timedelta(seconds=RUNNING_WINDOW)

DEFAULT_PER_PAGE = 20
MIN_PER_PAGE = 5  # the reference's bounds for this list
MAX_PER_PAGE = 50
CLIENT_CERTIFICATE_NOT_FOUND = 1476


@dataclass(frozen=True)
class CertificateView:
    """A certificate with what the API shows next to it."""

    certificate: ClientCertificate
    ca_id: str
    ca_name: str


def _view(session: Session, cert: ClientCertificate) -> CertificateView:
    ca = session.get_one(ManagedCA, cert.managed_ca_id)
    return CertificateView(cert, ca.id, ca.name)


def issue(
    session: Session,
    keystore: KeyStore,
    principal: Principal,
    zone_id: str,
    *,
    csr: str,
    validity_days: int,
    now: datetime,
) -> CertificateView:
    zone = visible_zone(session, principal, zone_id)
    principal.require(ZONE_SSL_WRITE, account_id=zone.account_id, zone_id=zone.id)
    days = check_validity_days(validity_days)
    checked = parse_csr(csr)
    ca = active_managed_ca(session, zone.account_id)
    # The key is opened only for this signature and never leaves this call.
    ca_key = keystore.open(ca.private_key_sealed, context=ca.id)
    issued = sign_client_certificate(
        checked,
        ca_certificate_pem=ca.certificate_pem,
        ca_private_key_pem=ca_key,
        validity_days=days,
        now=now,
    )
    # A new active certificate changes nothing the edge enforces (it verifies against the CA,
    # which the edge already trusts where it is associated), so issuing does not bump the config
    # version: a bump would make every edge rebuild its configuration on every POST. Its
    # status_version is the version current now (status is active at once, nothing to settle).
    version = int(session.scalar(select(ConfigState.version).where(ConfigState.id == 1)) or 0)
    cert = ClientCertificate(
        id=hex_id(),
        zone_id=zone.id,
        managed_ca_id=ca.id,
        certificate_pem=issued.certificate_pem,
        csr=checked.pem,
        serial_number=issued.serial_hex,
        signature=issued.signature,
        ski=issued.ski,
        fingerprint_sha256=issued.fingerprint_sha256,
        validity_days=days,
        status=ACTIVE,
        status_version=version,
        issued_on=issued.issued_on,
        expires_on=issued.expires_on,
        created_on=now,
        updated_at=now,
        **issued.subject,  # parse_csr bounds every value (at most 128 characters)
    )
    session.add(cert)
    session.flush()
    return CertificateView(cert, ca.id, ca.name)


def settle(session: Session, *, now: datetime) -> int | None:
    """Move pending certificates whose change every running edge has applied to their final
    status; returns the lowest version the running edges report (None: no edge is running).

    Settling changes no edge behaviour (pending_revocation and revoked are both refused), so it
    does not bump the config version."""
    # Heartbeats carry the database's time (config_sync.heartbeat): compared with its clock too.
    applied = session.scalar(
        select(func.min(EdgeNode.config_version)).where(
            EdgeNode.heartbeat_at >= store_now(session, now) - EDGE_RUNNING_WINDOW
        )
    )
    if applied is None:
        return None
    floor = int(applied)
    for pending, final in ((PENDING_REVOCATION, REVOKED), (PENDING_REACTIVATION, ACTIVE)):
        session.execute(
            update(ClientCertificate)
            .where(
                and_(
                    ClientCertificate.status == pending,
                    ClientCertificate.status_version <= floor,
                )
            )
            .values(status=final, updated_at=now)
        )
    return floor


def list_certificates(
    session: Session,
    principal: Principal,
    zone_id: str,
    *,
    status: str | None,
    page: int,
    per_page: int,
    now: datetime,
) -> tuple[Page[ClientCertificate], dict[str, tuple[str, str]]]:
    """A page of the zone's certificates, oldest first, and (id, name) of each CA they name."""
    zone = visible_zone(session, principal, zone_id)
    principal.require(ZONE_SSL_READ, account_id=zone.account_id, zone_id=zone.id)
    if status not in (None, "all", *STATUSES):
        raise BadRequest(
            f"status must be one of all, {', '.join(STATUSES)}; got {quote(status)}",
            pointer="status",
        )
    if not MIN_PER_PAGE <= per_page <= MAX_PER_PAGE:
        raise BadRequest(
            f"per_page must be between {MIN_PER_PAGE} and {MAX_PER_PAGE}", pointer="per_page"
        )
    settle(session, now=now)
    query = select(ClientCertificate).where(ClientCertificate.zone_id == zone.id)
    if status not in (None, "all"):
        query = query.where(ClientCertificate.status == status)
    certs = list(
        session.scalars(query.order_by(ClientCertificate.created_on, ClientCertificate.id))
    )
    result = paginate(certs, page, per_page, max_per_page=MAX_PER_PAGE)
    cas = {
        ca.id: (ca.id, ca.name)
        for ca in session.scalars(
            select(ManagedCA).where(ManagedCA.id.in_({c.managed_ca_id for c in result.items}))
        )
    }
    return result, cas


def _certificate(session: Session, zone: Zone, cert_id: str) -> ClientCertificate:
    cert = session.get(ClientCertificate, cert_id)
    if cert is None or cert.zone_id != zone.id:
        raise NotFound(
            "client certificate not found in this zone", code=CLIENT_CERTIFICATE_NOT_FOUND
        )
    return cert


def get_certificate(
    session: Session, principal: Principal, zone_id: str, cert_id: str, *, now: datetime
) -> CertificateView:
    zone = visible_zone(session, principal, zone_id)
    principal.require(ZONE_SSL_READ, account_id=zone.account_id, zone_id=zone.id)
    settle(session, now=now)
    return _view(session, _certificate(session, zone, cert_id))


def revoke(
    session: Session, principal: Principal, zone_id: str, cert_id: str, *, now: datetime
) -> CertificateView:
    """DELETE: → pending_revocation (revoked once the edges have it). Revoking a certificate
    that is already pending_revocation or revoked changes nothing."""
    return _change(session, principal, zone_id, cert_id, REVOKED_AT_EDGE, PENDING_REVOCATION, now)


def reactivate(
    session: Session, principal: Principal, zone_id: str, cert_id: str, *, now: datetime
) -> CertificateView:
    """PATCH: from pending_revocation or revoked alike → pending_reactivation (active once the
    edges have it). Reactivating an active or pending_reactivation certificate changes nothing."""
    return _change(
        session,
        principal,
        zone_id,
        cert_id,
        (ACTIVE, PENDING_REACTIVATION),
        PENDING_REACTIVATION,
        now,
    )


def _change(
    session: Session,
    principal: Principal,
    zone_id: str,
    cert_id: str,
    already: tuple[str, ...],
    target: str,
    now: datetime,
) -> CertificateView:
    zone = visible_zone(session, principal, zone_id)
    principal.require(ZONE_SSL_WRITE, account_id=zone.account_id, zone_id=zone.id)
    settle(session, now=now)
    cert = _certificate(session, zone, cert_id)
    if cert.status not in already:
        cert.status = target
        cert.status_version = bump_config_version(session)
        cert.updated_at = now
        session.flush()
    return _view(session, cert)


def revoked_serials(session: Session, *, now: datetime) -> dict[str, frozenset[int]]:
    """Managed CA id → serials the edge must refuse (pending_revocation and revoked).

    Certificates past their expiry at `now` are left out: they fail verification anyway, and
    an account with no live revoked certificate then costs the edge no revocation check."""
    out: dict[str, set[int]] = {}
    rows = session.execute(
        select(ClientCertificate.managed_ca_id, ClientCertificate.serial_number).where(
            ClientCertificate.status.in_(REVOKED_AT_EDGE), ClientCertificate.expires_on > now
        )
    )
    for ca_id, serial in rows:
        out.setdefault(ca_id, set()).add(int(serial, 16))
    return {k: frozenset(v) for k, v in out.items()}
