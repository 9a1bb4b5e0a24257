"""Throwaway PostgreSQL server for tests, started from the machine's binaries.

The binaries are looked up under ``/usr/lib/postgresql/*/bin`` (highest major
version wins).  ``initdb`` refuses to run as root, so when the tests run as
root (sessions and CI do) every PostgreSQL command is run as the ``postgres``
user through ``runuser`` and the data directory is chowned to that user.  As a
non-root user the commands are run directly.

If no binaries are installed a :class:`RuntimeError` is raised: tests that need
PostgreSQL must fail loudly, never skip.

Usage::

    with running_postgres() as pg:
        url = pg.create_database("app")   # postgresql+psycopg://postgres@127.0.0.1:PORT/app
"""

from __future__ import annotations

import atexit
import contextlib
import os
import pwd
import re
import shlex
import shutil
import socket
import subprocess
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path

import psycopg
from psycopg import sql

__all__ = [
    "PG_BIN_GLOB",
    "PostgresServer",
    "find_pg_bindir",
    "make_base_dir",
    "running_postgres",
]

PG_BIN_GLOB = "/usr/lib/postgresql/*/bin"
PG_USER = "postgres"
HOST = "127.0.0.1"
START_TIMEOUT = 60.0

_MISSING_MSG = (
    "PostgreSQL server binaries not found (looked for {glob}/initdb and pg_ctl). "
    "Run `make deps` to install them; the test suite needs a real PostgreSQL server."
)


def _version_key(bindir: Path) -> tuple[int, ...]:
    """Sort key for ``/usr/lib/postgresql/<version>/bin`` (numeric, not lexical)."""
    return tuple(int(part) for part in re.findall(r"\d+", bindir.parent.name)) or (-1,)


def find_pg_bindir() -> Path:
    """Return the bin directory of the highest installed PostgreSQL version."""
    candidates = [
        p
        for p in Path("/").glob(PG_BIN_GLOB.lstrip("/"))
        if (p / "initdb").is_file() and (p / "pg_ctl").is_file()
    ]
    if not candidates:
        raise RuntimeError(_MISSING_MSG.format(glob=PG_BIN_GLOB))
    return max(candidates, key=_version_key)


def make_base_dir() -> Path:
    """Create a fresh base directory the ``postgres`` user can traverse.

    Do not use pytest's ``tmp_path``: it lives under ``/tmp/pytest-of-root``
    (mode 0700), which the ``postgres`` user cannot enter.
    """
    base = Path(tempfile.mkdtemp(prefix="mtlsgate-pg-"))
    base.chmod(0o755)
    return base


def _free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind((HOST, 0))
        port: int = s.getsockname()[1]
        return port


def port_is_open(port: int, host: str = HOST) -> bool:
    """True when something accepts TCP connections on ``host:port``."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.settimeout(1.0)
        return s.connect_ex((host, port)) == 0


class PostgresServer:
    """One throwaway PostgreSQL cluster living in ``base_dir / "data"``."""

    def __init__(self, base_dir: Path) -> None:
        self.base_dir = Path(base_dir)
        self.data_dir = self.base_dir / "data"
        self.log_file = self.data_dir / "log"
        self.bindir = find_pg_bindir()
        self.port: int | None = None
        self.start_seconds: float | None = None
        self._as_root = os.geteuid() == 0
        self._running = False

    # -- process helpers -------------------------------------------------

    def _cmd(self, tool: str, *args: str) -> list[str]:
        argv = [str(self.bindir / tool), *args]
        if self._as_root:
            return ["runuser", "-u", PG_USER, "--", *argv]
        return argv

    def _run(self, tool: str, *args: str, timeout: float = START_TIMEOUT) -> None:
        env = {k: v for k, v in os.environ.items() if not k.startswith("PG")}
        env.setdefault("LC_ALL", "C")
        proc = subprocess.run(
            self._cmd(tool, *args),
            cwd=self.base_dir,  # the postgres user may not be able to enter our cwd
            env=env,
            capture_output=True,
            text=True,
            timeout=timeout,
            check=False,
        )
        if proc.returncode != 0:
            raise RuntimeError(
                f"{tool} failed (exit {proc.returncode}): {shlex.join(proc.args)}\n"
                f"stdout:\n{proc.stdout}\nstderr:\n{proc.stderr}{self._log_tail()}"
            )

    def _log_tail(self) -> str:
        try:
            text = self.log_file.read_text(errors="replace")
        except OSError:
            return ""
        return "\nserver log (tail):\n" + "\n".join(text.splitlines()[-30:])

    def _prepare_data_dir(self) -> None:
        self.base_dir.mkdir(parents=True, exist_ok=True)
        if self.data_dir.exists():
            shutil.rmtree(self.data_dir)
        self.data_dir.mkdir(mode=0o700)
        if self._as_root:
            pw = pwd.getpwnam(PG_USER)
            os.chown(self.data_dir, pw.pw_uid, pw.pw_gid)
            probe = subprocess.run(
                ["runuser", "-u", PG_USER, "--", "test", "-w", str(self.data_dir)],
                capture_output=True,
                check=False,
            )
            if probe.returncode != 0:
                raise RuntimeError(
                    f"user {PG_USER!r} cannot reach {self.data_dir}; every parent of "
                    "the base dir must be traversable (mode 0755). Use make_base_dir(), "
                    "not pytest's tmp_path."
                )

    # -- public API --------------------------------------------------------

    def start(self) -> None:
        """initdb, start on a free 127.0.0.1 port and wait until it accepts connections."""
        if self._running:
            return
        t0 = time.monotonic()
        self._prepare_data_dir()
        self._run(
            "initdb",
            "-D",
            str(self.data_dir),
            "-A",
            "trust",
            "-U",
            PG_USER,
            "-E",
            "UTF8",
            "--locale=C",
            "--no-sync",
        )
        self.port = _free_port()
        opts = [
            f"-p {self.port}",
            f"-k {shlex.quote(str(self.data_dir))}",
            f"-c listen_addresses={HOST}",
            # Throwaway cluster: durability is irrelevant, speed is not.
            "-c fsync=off",
            "-c synchronous_commit=off",
            "-c full_page_writes=off",
        ]
        self._running = True  # from here on stop() has something to clean up
        atexit.register(self.stop)
        try:
            self._run(
                "pg_ctl",
                "-D",
                str(self.data_dir),
                "-o",
                " ".join(opts),
                "-l",
                str(self.log_file),
                "-t",
                str(int(START_TIMEOUT)),
                "-w",
                "start",
                timeout=START_TIMEOUT + 10,
            )
            self._wait_ready(time.monotonic() + START_TIMEOUT)
        except BaseException:
            self.stop()
            raise
        self.start_seconds = time.monotonic() - t0

    def _wait_ready(self, deadline: float) -> None:
        last: Exception | None = None
        while time.monotonic() < deadline:
            try:
                with psycopg.connect(self._conninfo("postgres"), connect_timeout=2) as conn:
                    conn.execute("select 1")
                return
            except psycopg.OperationalError as exc:
                last = exc
                time.sleep(0.1)
        raise RuntimeError(
            f"PostgreSQL on {HOST}:{self.port} not accepting connections after "
            f"{START_TIMEOUT:.0f}s: {last}{self._log_tail()}"
        )

    def _conninfo(self, dbname: str) -> str:
        if self.port is None:
            raise RuntimeError("PostgresServer is not started")
        return f"host={HOST} port={self.port} user={PG_USER} dbname={dbname}"

    def url(self, dbname: str = "postgres") -> str:
        """SQLAlchemy URL for ``dbname`` on this server."""
        if self.port is None:
            raise RuntimeError("PostgresServer is not started")
        return f"postgresql+psycopg://{PG_USER}@{HOST}:{self.port}/{dbname}"

    def create_database(self, name: str) -> str:
        """CREATE DATABASE ``name``; return its SQLAlchemy URL."""
        with psycopg.connect(self._conninfo("postgres"), autocommit=True) as conn:
            conn.execute(sql.SQL("CREATE DATABASE {}").format(sql.Identifier(name)))
        return self.url(name)

    def stop(self) -> None:
        """Stop the server (immediate mode) and remove the data dir. Idempotent."""
        if not self._running:
            return
        self._running = False
        atexit.unregister(self.stop)
        if (self.data_dir / "postmaster.pid").exists():
            with contextlib.suppress(RuntimeError, subprocess.TimeoutExpired):
                self._run("pg_ctl", "-D", str(self.data_dir), "-m", "immediate", "-w", "stop")
        shutil.rmtree(self.data_dir, ignore_errors=True)
        with contextlib.suppress(OSError):
            self.base_dir.rmdir()  # only if empty: never delete what we did not create


@contextlib.contextmanager
def running_postgres() -> Iterator[PostgresServer]:
    """Start a server in a fresh temp dir; stop it and remove the dir afterwards."""
    base = make_base_dir()
    server = PostgresServer(base)
    try:
        server.start()
        yield server
    finally:
        server.stop()
        shutil.rmtree(base, ignore_errors=True)
