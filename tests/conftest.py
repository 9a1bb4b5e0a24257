"""Shared fixtures: a throwaway PostgreSQL server for the session, and real gateways on either
backend (tests that take `gateway` run once on SQLite and once on PostgreSQL)."""

from __future__ import annotations

import itertools
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.harness import Gateway, init_gateway
from tests.pgserver import PostgresServer, running_postgres

_db_names = itertools.count()


@pytest.fixture(scope="session")
def pg() -> Iterator[PostgresServer]:
    with running_postgres() as server:
        yield server


@pytest.fixture(params=["sqlite", "postgres"])
def backend(request: pytest.FixtureRequest) -> str:
    return str(request.param)


@pytest.fixture
def database_url(backend: str, request: pytest.FixtureRequest) -> str | None:
    if backend == "sqlite":
        return None
    server: PostgresServer = request.getfixturevalue("pg")
    return server.create_database(f"t{next(_db_names)}")


@pytest.fixture
def gateway(tmp_path: Path, database_url: str | None) -> Iterator[Gateway]:
    """`mtlsgate init` with zones example.com and other.org, then one `serve` process."""
    gw = init_gateway(tmp_path / "data", database_url, zones=("example.com", "other.org"))
    gw.start()
    try:
        yield gw
    finally:
        gw.stop()
