"""Alembic migrations build exactly the schema the models declare, on both databases, and
every change the edge cares about bumps the config version in its own transaction."""

from __future__ import annotations

from pathlib import Path

import pytest
from alembic.autogenerate import compare_metadata
from alembic.migration import MigrationContext
from sqlalchemy import select

from mtlsgate.services.accounts import initialize
from mtlsgate.store.db import Store, bump_config_version
from mtlsgate.store.keystore import KeyStore
from mtlsgate.store.models import Account, Base


@pytest.fixture
def store(tmp_path: Path, database_url: str | None) -> Store:
    s = Store(database_url or f"sqlite:///{tmp_path / 'm.db'}")
    s.migrate()
    s.migrate()  # idempotent: a second `serve` start must not fail
    return s


def test_migrations_match_models(store: Store) -> None:
    with store.engine.connect() as conn:
        diff = compare_metadata(MigrationContext.configure(conn), Base.metadata)
    assert diff == []
    store.dispose()


def test_config_version_bumps_with_the_transaction(store: Store, tmp_path: Path) -> None:
    keystore = KeyStore(b"k" * 32)
    assert store.config_version() == 0
    with store.transaction() as session:
        initialize(session, keystore, zone_names=["example.com"], account_name="a")
    assert store.config_version() == 1
    # A failed transaction leaves neither its change nor its version bump behind.
    with pytest.raises(RuntimeError), store.transaction() as session:
        bump_config_version(session)
        session.get_one(Account, session.scalar(select(Account.id))).name = "changed"
        raise RuntimeError("boom")
    assert store.config_version() == 1
    with store.transaction() as session:
        assert session.scalar(select(Account.name)) == "a"
    store.dispose()


def test_keystore_seals_and_binds_context() -> None:
    ks = KeyStore(b"x" * 32)
    sealed = ks.seal("-----BEGIN PRIVATE KEY-----\nabc\n", context="id-1")
    assert "abc" not in sealed
    assert ks.open(sealed, context="id-1").endswith("abc\n")
    with pytest.raises(Exception):  # noqa: B017 - cryptography's InvalidTag
        ks.open(sealed, context="id-2")
