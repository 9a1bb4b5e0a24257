"""The CRL scheduler's store logic on both databases: a stale fail_closed CRL is announced to
the edge exactly once per nextUpdate, and a due fetch is claimed by one process only."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from sqlalchemy import select

from mtlsgate.services import crls
from mtlsgate.services.accounts import initialize
from mtlsgate.services.crl_fetcher import _claim_due, notice_stale
from mtlsgate.services.mtls_certificates import upload
from mtlsgate.services.permissions import ACCOUNT_SSL_WRITE, Policy, Principal
from mtlsgate.store.db import Store
from mtlsgate.store.keystore import KeyStore
from mtlsgate.store.models import Account
from tests.crl_tools import OpensslCA


@pytest.fixture
def store(tmp_path: Path, database_url: str | None) -> Store:
    s = Store(database_url or f"sqlite:///{tmp_path / 's.db'}")
    s.migrate()
    return s


def _setup(store: Store, tmp_path: Path) -> tuple[Principal, str, str, OpensslCA]:
    keystore = KeyStore(b"k" * 32)
    ca = OpensslCA.create(tmp_path / "ca")
    now = datetime.now(UTC)
    with store.transaction() as session:
        initialize(session, keystore, zone_names=["example.com"], account_name="a")
        account_id = session.scalars(select(Account.id)).one()
        principal = Principal("t", account_id, (Policy(ACCOUNT_SSL_WRITE, "account", account_id),))
        cert = upload(
            session,
            keystore,
            principal,
            account_id,
            ca=True,
            certificates=ca.cert.cert_pem,
            name=None,
            private_key=None,
            now=now,
        ).certificate
    return principal, account_id, cert.id, ca


def _settings(store: Store, principal: Principal, account: str, cert: str, **kw: object) -> None:
    with store.transaction() as session:
        crls.update_settings(
            session,
            principal,
            account,
            cert,
            stale_policy=kw.get("stale_policy"),  # type: ignore[arg-type]
            fetch=kw.get("fetch"),  # type: ignore[arg-type]
            fetch_url=kw.get("fetch_url"),  # type: ignore[arg-type]
            clear_fetch_url=False,
            now=datetime.now(UTC),
        )


def test_stale_notice_once_per_next_update(store: Store, tmp_path: Path) -> None:
    principal, account, cert, ca = _setup(store, tmp_path)
    now = datetime.now(UTC)
    crl = ca.gencrl(last_update=now - timedelta(hours=1), next_update=now + timedelta(minutes=1))
    with store.transaction() as session:
        crls.put_crl(session, principal, account, cert, crl, now=now)
    # fail_open: staleness is reported by the API only; the edge is not rebuilt for it.
    assert notice_stale(store, now + timedelta(minutes=2)) == 0
    _settings(store, principal, account, cert, stale_policy="fail_closed")
    before = store.config_version()
    assert notice_stale(store, now) == 0  # not yet stale
    assert notice_stale(store, now + timedelta(minutes=2)) == 1
    assert store.config_version() == before + 1
    assert notice_stale(store, now + timedelta(minutes=3)) == 0  # announced once
    assert store.config_version() == before + 1
    # A newer CRL with its own nextUpdate is watched afresh.
    crl2 = ca.gencrl(last_update=now - timedelta(minutes=1), next_update=now + timedelta(hours=1))
    with store.transaction() as session:
        crls.put_crl(session, principal, account, cert, crl2, now=now)
    assert notice_stale(store, now + timedelta(minutes=30)) == 0
    assert notice_stale(store, now + timedelta(hours=2)) == 1
    store.dispose()


def test_a_due_fetch_is_claimed_once(store: Store, tmp_path: Path) -> None:
    principal, account, cert, _ = _setup(store, tmp_path)
    _settings(store, principal, account, cert, fetch=True, fetch_url="http://127.0.0.1:9/a.crl")
    now = datetime.now(UTC) + timedelta(seconds=1)
    if store.is_postgres:
        # Two processes at the same moment: the second skips the row the first holds.
        with store.transaction() as first:
            assert [d.cert_id for d in _claim_due(first, now)] == [cert]
            with store.transaction() as second:
                assert _claim_due(second, now) == []
    else:
        with store.transaction() as first:
            assert [d.cert_id for d in _claim_due(first, now)] == [cert]
    # Once claimed, it is not due again until the claim runs out.
    with store.transaction() as session:
        assert _claim_due(session, now + timedelta(seconds=5)) == []
    with store.transaction() as session:
        assert [d.urls for d in _claim_due(session, now + timedelta(minutes=1))] == [
            ["http://127.0.0.1:9/a.crl"]
        ]
    store.dispose()
