"""Tests for the throwaway PostgreSQL helper in tests/pgserver.py."""

from __future__ import annotations

from pathlib import Path

import pytest
from sqlalchemy import create_engine, text

from tests import pgserver
from tests.pgserver import PostgresServer, port_is_open, running_postgres


def test_start_create_connect_stop() -> None:
    with running_postgres() as pg:
        assert pg.port is not None
        port = pg.port
        base_dir = pg.base_dir
        assert port_is_open(port)
        print(f"postgres start took {pg.start_seconds:.2f}s (bindir {pg.bindir})")

        urls = [pg.create_database("first_db"), pg.create_database("second_db")]
        assert urls == [pg.url("first_db"), pg.url("second_db")]
        for url, name in zip(urls, ["first_db", "second_db"], strict=True):
            assert url == f"postgresql+psycopg://postgres@127.0.0.1:{port}/{name}"
            engine = create_engine(url)
            try:
                with engine.connect() as conn:
                    assert conn.execute(text("select 1")).scalar_one() == 1
                    assert conn.execute(text("select current_database()")).scalar_one() == name
            finally:
                engine.dispose()

        pg.stop()
        pg.stop()  # idempotent
        assert not port_is_open(port)
        assert not pg.data_dir.exists()
    assert not base_dir.exists()
    assert not port_is_open(port)


def test_url_requires_start(tmp_path: Path) -> None:
    server = PostgresServer(tmp_path)
    try:
        server.url()
    except RuntimeError as exc:
        assert "not started" in str(exc)
    else:  # pragma: no cover
        raise AssertionError("url() before start() must raise")
    server.stop()  # stop before start is a no-op


def test_missing_binaries_fail_loudly(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(pgserver, "PG_BIN_GLOB", "/nonexistent/postgresql/*/bin")
    with pytest.raises(RuntimeError, match="make deps"):
        pgserver.find_pg_bindir()
