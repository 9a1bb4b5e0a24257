"""The edge's timeouts, set on the command line of a real `mtlsgate serve`: an idle keep-alive
connection is closed, a request head that never ends is closed, a silent origin gets 504; bad
values are refused before anything starts."""

from __future__ import annotations

import os
import socket
import ssl
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.edge.conftest import Blackhole
from tests.harness import MTLSGATE, Gateway, free_port, init_gateway

HOST = "api.example.com"


@pytest.fixture
def timed_edge(tmp_path: Path) -> Iterator[tuple[Gateway, int]]:
    gw = init_gateway(tmp_path / "data", None, zones=("example.com",))
    silent = Blackhole()
    edge_port = free_port()
    gw.start(
        edge=[
            "--edge", f"127.0.0.1:{edge_port}", "--workers", "1",
            "--idle-timeout", "1", "--header-timeout", "1", "--origin-timeout", "1",
        ]
    )  # fmt: skip
    try:
        with gw.http() as c:
            r = c.post(
                f"/zones/{gw.zone_id}/dns_records",
                json={"type": "A", "name": HOST, "content": "127.0.0.1", "proxied": True},
            )
            assert r.status_code == 200, r.text
            r = c.put(
                f"/zones/{gw.zone_id}/rulesets/phases/http_request_origin/entrypoint",
                json={"rules": [{"expression": "true", "action": "route",
                                 "action_parameters": {"origin": {"port": silent.port}}}]},
            )  # fmt: skip
            assert r.status_code == 200, r.text
        yield gw, edge_port
    finally:
        gw.stop()
        silent.close()


def _connect(gw: Gateway, port: int) -> ssl.SSLSocket:
    ctx = ssl.create_default_context(cafile=str(gw.data_dir / "edge-ca.pem"))
    deadline = time.monotonic() + 15
    while True:  # workers start, then the hostname reaches them within a poll or two
        try:
            raw = socket.create_connection(("127.0.0.1", port), timeout=10)
            return ctx.wrap_socket(raw, server_hostname=HOST)
        except (ssl.SSLError, ConnectionResetError, ConnectionRefusedError):
            if time.monotonic() > deadline:
                raise
            time.sleep(0.1)


def _closed_after(sock: ssl.SSLSocket) -> float:
    """Seconds until the edge closes the connection (reads until EOF)."""
    t0 = time.monotonic()
    try:
        while sock.recv(65536):
            pass
    except (ConnectionResetError, ssl.SSLError):
        pass
    return time.monotonic() - t0


def test_timeouts_from_the_command_line(timed_edge: tuple[Gateway, int]) -> None:
    gw, port = timed_edge
    # A silent origin: 504 after the 1 s origin timeout (the sweep adds up to 0.25 s).
    with _connect(gw, port) as s:
        t0 = time.monotonic()
        s.sendall(f"GET / HTTP/1.1\r\nHost: {HOST}\r\n\r\n".encode())
        head = s.recv(65536)
        took = time.monotonic() - t0
        assert head.startswith(b"HTTP/1.1 504"), head
        assert 0.9 < took < 3.0, took
        # Then the keep-alive connection sits idle: closed after the 1 s idle timeout.
        assert 0.8 < _closed_after(s) < 3.0
    # A request head that never ends: closed after the 1 s header timeout.
    with _connect(gw, port) as s:
        s.sendall(f"GET / HTTP/1.1\r\nHost: {HOST}\r\nX-Slow: ".encode())
        assert 0.8 < _closed_after(s) < 3.0


@pytest.mark.parametrize("value", ["0", "-1", "abc", "3601"])
def test_bad_timeouts_are_refused(tmp_path: Path, value: str) -> None:
    gw = init_gateway(tmp_path / "data", None, zones=("example.com",))
    out = subprocess.run(
        [MTLSGATE, "serve", "--data-dir", str(gw.data_dir), "--api", f"127.0.0.1:{free_port()}",
         "--idle-timeout", value],
        capture_output=True, text=True, timeout=30,
    )  # fmt: skip
    assert out.returncode == 2
    assert "--idle-timeout" in out.stderr and "Traceback" not in out.stderr


def test_a_bad_tls_path_choice_is_refused(tmp_path: Path) -> None:
    gw = init_gateway(tmp_path / "data", None, zones=("example.com",))
    out = subprocess.run(
        [MTLSGATE, "serve", "--data-dir", str(gw.data_dir), "--api", f"127.0.0.1:{free_port()}",
         "--edge", f"127.0.0.1:{free_port()}"],
        capture_output=True, text=True, timeout=30,
        env={**os.environ, "MTLSGATE_EDGE_TLS": "turbo"},
    )  # fmt: skip
    assert out.returncode == 1
    assert "MTLSGATE_EDGE_TLS must be auto, fast or public" in out.stderr
    assert "Traceback" not in out.stderr
