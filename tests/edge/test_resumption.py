"""No TLS session resumption: every connection is a full handshake whose client certificate is
verified against the configuration of the moment (docs/edge.md, "Session resumption")."""

from __future__ import annotations

import socket
import subprocess
from pathlib import Path

from tests.edge.conftest import Edge, client_context


def _s_client(edge: Edge, sess: Path, reuse: bool) -> str:
    good = edge.pki.good
    args = [
        "openssl", "s_client", "-connect", f"127.0.0.1:{edge.port}",
        "-servername", "api.example.com", "-cert", str(good.cert_path),
        "-key", str(good.key_path), "-CAfile", str(edge.pki.edge_ca.cert_path), "-ign_eof",
    ]  # fmt: skip
    args += ["-sess_in" if reuse else "-sess_out", str(sess)]
    request = b"GET / HTTP/1.1\r\nHost: api.example.com\r\nConnection: close\r\n\r\n"
    out = subprocess.run(args, input=request, capture_output=True, timeout=20, check=False)
    return out.stdout.decode("latin-1")


def test_a_saved_session_is_not_resumed(edge: Edge, tmp_path: Path) -> None:
    sess = tmp_path / "session.pem"
    first = _s_client(edge, sess, reuse=False)
    assert "HTTP/1.1 200" in first
    assert sess.exists() and sess.stat().st_size > 0  # the client did keep a session
    second = _s_client(edge, sess, reuse=True)
    assert "\nNew, TLSv1.3" in second and "Reused" not in second
    assert "HTTP/1.1 200" in second  # verified again: the certificate is still good


def test_python_client_reuse_attempt_is_a_full_handshake(edge: Edge) -> None:
    ctx = client_context(edge, edge.pki.good)
    request = b"GET / HTTP/1.1\r\nHost: api.example.com\r\nConnection: close\r\n\r\n"
    with (
        socket.create_connection(("127.0.0.1", edge.port), timeout=10) as raw,
        ctx.wrap_socket(raw, server_hostname="api.example.com") as s,
    ):
        s.sendall(request)
        while s.recv(65536):
            pass
        session = s.session
    with (
        socket.create_connection(("127.0.0.1", edge.port), timeout=10) as raw,
        ctx.wrap_socket(raw, server_hostname="api.example.com", session=session) as s,
    ):
        s.sendall(request)
        data = b""
        while chunk := s.recv(65536):
            data += chunk
        assert not s.session_reused
    assert data.startswith(b"HTTP/1.1 200")
