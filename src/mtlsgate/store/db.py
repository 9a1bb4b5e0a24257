"""The engine, its transactions and migrations, for SQLite (default) and PostgreSQL.

Writers are serialised where it matters: SQLite transactions start with BEGIN IMMEDIATE (one
writer at a time, across processes), and on PostgreSQL the service layer locks the account row
(SELECT ... FOR UPDATE) before checking a quota, so the check holds across `serve` processes.

The edge watches `config_state.version` (docs/edge.md, "Configuration watching"): on SQLite with
`SqliteVersionReader` (one raw connection, `PRAGMA data_version` first), on PostgreSQL by
LISTENing on `CONFIG_CHANNEL`, which `bump_config_version` notifies when its transaction commits.
"""

from __future__ import annotations

import sqlite3
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from alembic import command
from alembic.config import Config
from sqlalchemy import create_engine, event, func, select, text, update
from sqlalchemy.engine import Engine
from sqlalchemy.orm import Session, sessionmaker

from mtlsgate.store.models import ConfigState

_MIGRATIONS = Path(__file__).parent / "migrations"
_MIGRATION_LOCK_KEY = 0x6D746C73  # "mtls": one node migrates at a time on PostgreSQL

CONFIG_CHANNEL = "mtlsgate_config"  # PostgreSQL NOTIFY channel; the payload is the new version
CONFIG_VERSION_SQL = "SELECT version FROM config_state WHERE id = 1"


def make_engine(url: str) -> Engine:
    if url.startswith("sqlite"):
        engine = create_engine(url, connect_args={"timeout": 30, "check_same_thread": False})
        event.listen(engine, "connect", _sqlite_on_connect)
        event.listen(engine, "begin", _sqlite_on_begin)
        return engine
    return create_engine(url, pool_pre_ping=True, pool_size=10, max_overflow=20)


def _sqlite_on_connect(dbapi_conn: Any, _record: Any) -> None:
    # Let SQLAlchemy's "begin" event issue BEGIN itself instead of pysqlite's implicit one.
    dbapi_conn.isolation_level = None
    cur = dbapi_conn.cursor()
    cur.execute("PRAGMA journal_mode=WAL")
    cur.execute("PRAGMA foreign_keys=ON")
    cur.execute("PRAGMA busy_timeout=30000")
    cur.execute("PRAGMA synchronous=FULL")
    cur.close()


def _sqlite_on_begin(conn: Any) -> None:
    conn.exec_driver_sql("BEGIN IMMEDIATE")


class Store:
    def __init__(self, url: str) -> None:
        self.url = url
        self.engine = make_engine(url)
        self._sessions = sessionmaker(self.engine, expire_on_commit=False)

    @property
    def is_postgres(self) -> bool:
        return self.engine.dialect.name == "postgresql"

    @contextmanager
    def transaction(self) -> Iterator[Session]:
        """One unit of work: committed whole on success, rolled back whole on any error."""
        with self._sessions() as session, session.begin():
            yield session

    def migrate(self) -> None:
        cfg = Config()
        cfg.set_main_option("script_location", str(_MIGRATIONS))
        with self.engine.begin() as conn:
            if self.is_postgres:
                conn.execute(text("SELECT pg_advisory_xact_lock(:k)"), {"k": _MIGRATION_LOCK_KEY})
            cfg.attributes["connection"] = conn
            command.upgrade(cfg, "head")

    def config_version(self) -> int:
        with self.transaction() as session:
            return int(session.scalar(select(ConfigState.version).where(ConfigState.id == 1)) or 0)

    @property
    def sqlite_path(self) -> str | None:
        """The database file of a file-backed SQLite store, else None."""
        if self.engine.dialect.name != "sqlite":
            return None
        database = self.engine.url.database
        if not database or database == ":memory:" or database.startswith("file:"):
            return None
        return database

    def libpq_conninfo(self) -> str:
        """The PostgreSQL store's connection string, for a dedicated psycopg connection
        (the edge's LISTEN connection) outside the engine's pool."""
        from psycopg.conninfo import make_conninfo  # only PostgreSQL stores need psycopg here

        _args, params = self.engine.dialect.create_connect_args(self.engine.url)
        params.pop("context", None)  # psycopg adapters of the engine's dialect, not a parameter
        return make_conninfo(**params)

    def dispose(self) -> None:
        self.engine.dispose()


class SqliteVersionReader:
    """The config version of a SQLite store, read cheaply enough to call on an event loop.

    One raw sqlite3 connection kept open, in autocommit mode: every statement is its own
    transaction and is stepped to its end, so no read transaction outlives a call and the WAL
    can always be checkpointed. `PRAGMA data_version` changes exactly when another connection
    has committed since the previous call; only then is the version row read. The connection
    waits for no lock (timeout 0): a rare SQLITE_BUSY raises sqlite3.OperationalError at once,
    and the caller decides where to retry. Reads only; never writes.
    """

    def __init__(self, path: str) -> None:
        # mode=rw: an existing database only (a mistaken path must not create an empty one).
        uri = Path(path).resolve().as_uri() + "?mode=rw"
        self._conn = sqlite3.connect(
            uri, uri=True, timeout=0, isolation_level=None, check_same_thread=False
        )
        self._data_version: int | None = None
        self._version = 0

    def read(self) -> int:
        (data_version,) = self._conn.execute("PRAGMA data_version").fetchall()[0]
        if data_version != self._data_version:
            rows = self._conn.execute(CONFIG_VERSION_SQL).fetchall()
            self._version = int(rows[0][0]) if rows else 0
            # Set after the read: a commit landing between the two statements changes
            # data_version again, so the next call reads the row once more.
            self._data_version = data_version
        return self._version

    def close(self) -> None:
        self._conn.close()


def bump_config_version(session: Session) -> int:
    """Advance the config version inside the caller's transaction, so it commits with the change.

    On PostgreSQL the same transaction NOTIFYs `CONFIG_CHANNEL` with the new version: the
    notification is delivered when (and only if) the transaction commits, so a listening edge
    wakes as soon as the change is visible."""
    session.execute(
        update(ConfigState).where(ConfigState.id == 1).values(version=ConfigState.version + 1)
    )
    version = int(session.scalar(select(ConfigState.version).where(ConfigState.id == 1)) or 0)
    if session.get_bind().dialect.name == "postgresql":
        session.execute(select(func.pg_notify(CONFIG_CHANNEL, str(version))))
    return version


def store_now(session: Session, fallback: datetime) -> datetime:
    """The database's clock on PostgreSQL, where a fleet's machines share one store but not one
    clock (edge heartbeats are stamped and judged with it); on SQLite, which lives on this
    machine, `fallback` (this process's clock)."""
    if session.get_bind().dialect.name != "postgresql":
        return fallback
    value = session.scalar(select(func.now()))
    if not isinstance(value, datetime):
        return fallback
    return value.replace(tzinfo=UTC) if value.tzinfo is None else value.astimezone(UTC)
