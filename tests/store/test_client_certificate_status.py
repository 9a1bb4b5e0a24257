"""Propagation status of managed client certificates, against the real store (SQLite and
PostgreSQL): a pending status settles only when every *running* edge node (a heartbeat within
EDGE_RUNNING_WINDOW) reports the version that carried the change, and at least one runs."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from sqlalchemy import select

from mtlsgate.pki.managed_ca import generate_key_and_csr
from mtlsgate.services import client_certificates as svc
from mtlsgate.services.accounts import initialize
from mtlsgate.services.permissions import ZONE_SSL_WRITE, Policy, Principal
from mtlsgate.store.db import Store
from mtlsgate.store.keystore import KeyStore
from mtlsgate.store.models import ClientCertificate, EdgeNode, Zone


@pytest.fixture
def store(tmp_path: Path, database_url: str | None) -> Store:
    s = Store(database_url or f"sqlite:///{tmp_path / 's.db'}")
    s.migrate()
    return s


def _node(session: object, node_id: str, version: int, seen: datetime) -> None:
    session.merge(  # type: ignore[attr-defined]
        EdgeNode(id=node_id, hostname="h", pid=1, config_version=version, started_at=seen,
                 heartbeat_at=seen)
    )  # fmt: skip


def test_pending_settles_only_when_every_running_edge_has_it(store: Store) -> None:
    keystore = KeyStore(b"k" * 32)
    now = datetime.now(UTC)
    with store.transaction() as session:
        initialize(session, keystore, zone_names=["example.com"], account_name="a")
        zone = session.scalars(select(Zone)).one()
        who = Principal("t", zone.account_id, (Policy(ZONE_SSL_WRITE, "zone", zone.id),))
        csr = generate_key_and_csr("dev").csr_pem
        cert_id = svc.issue(
            session, keystore, who, zone.id, csr=csr, validity_days=5, now=now
        ).certificate.id
    with store.transaction() as session:
        view = svc.revoke(session, who, zone.id, cert_id, now=now)
        change = view.certificate.status_version
        assert view.certificate.status == "pending_revocation"
        assert svc.revoked_serials(session, now=now) == {
            view.ca_id: frozenset({int(view.certificate.serial_number, 16)})
        }

    def status() -> str:
        with store.transaction() as session:
            return svc.get_certificate(session, who, zone.id, cert_id, now=now).certificate.status

    # No edge node at all: pending, however long.
    assert status() == "pending_revocation"
    with store.transaction() as session:
        # One node has the change but stopped long ago; one running node is behind.
        _node(session, "old:1", change, now - svc.EDGE_RUNNING_WINDOW - timedelta(seconds=1))
        _node(session, "a:2", change - 1, now)
    assert status() == "pending_revocation"
    with store.transaction() as session:
        _node(session, "b:3", change, now)  # a second running node, up to date
    assert status() == "pending_revocation"  # a:2 still lags
    with store.transaction() as session:
        _node(session, "a:2", change + 3, now)
    assert status() == "revoked"
    version_before = store.config_version()
    assert status() == "revoked"
    assert store.config_version() == version_before  # settling changes nothing for the edge

    # Reactivate from revoked: pending until the running nodes have the new version.
    with store.transaction() as session:
        back = svc.reactivate(session, who, zone.id, cert_id, now=now)
        assert back.certificate.status == "pending_reactivation"
        assert back.certificate.status_version > change
        assert svc.revoked_serials(session, now=now) == {}
        # Repeating it is a no-op (no new version).
        again = svc.reactivate(session, who, zone.id, cert_id, now=now)
        assert again.certificate.status_version == back.certificate.status_version
        target = back.certificate.status_version
    assert status() == "pending_reactivation"
    with store.transaction() as session:
        _node(session, "a:2", target, now)
        _node(session, "b:3", target, now)
    assert status() == "active"
    with store.transaction() as session:
        row = session.get_one(ClientCertificate, cert_id)
        assert (row.status, row.status_version) == ("active", target)
    store.dispose()


def test_expired_revoked_certificates_leave_the_edge_index(store: Store) -> None:
    """The edge's revocation index holds only certificates that can still verify: an expired
    one fails verification anyway, and keeping it would make every handshake of the account
    pay for a revocation check forever. Issuing bumps no config version."""
    keystore = KeyStore(b"k" * 32)
    now = datetime.now(UTC)
    then = now - timedelta(days=3)
    with store.transaction() as session:
        initialize(session, keystore, zone_names=["example.com"], account_name="a")
        zone = session.scalars(select(Zone)).one()
        who = Principal("t", zone.account_id, (Policy(ZONE_SSL_WRITE, "zone", zone.id),))
    version = store.config_version()
    with store.transaction() as session:
        old = svc.issue(session, keystore, who, zone.id, csr=generate_key_and_csr("old").csr_pem,
                        validity_days=1, now=then)  # fmt: skip
        live = svc.issue(session, keystore, who, zone.id, csr=generate_key_and_csr("new").csr_pem,
                         validity_days=1, now=now)  # fmt: skip
        assert old.certificate.status == live.certificate.status == "active"
        ids = (old.certificate.id, live.certificate.id)
    assert store.config_version() == version  # issuing changes nothing the edge enforces
    with store.transaction() as session:
        for cert_id in ids:
            svc.revoke(session, who, zone.id, cert_id, now=now)
    assert store.config_version() == version + 2
    with store.transaction() as session:
        ca_id = live.ca_id
        serial = {c: int(session.get_one(ClientCertificate, c).serial_number, 16) for c in ids}
        assert svc.revoked_serials(session, now=now) == {ca_id: frozenset({serial[ids[1]]})}
        # While the old one was still valid, it was listed.
        assert svc.revoked_serials(session, now=then + timedelta(hours=1)) == {
            ca_id: frozenset(serial.values())
        }
        # Once the new one expires too, the account has nothing to check.
        assert svc.revoked_serials(session, now=now + timedelta(days=1, minutes=1)) == {}
    store.dispose()
