"""Managed client certificates end to end, through a real `mtlsgate serve` with its edge: the
official `cloudflare` SDK issues a certificate from an `openssl req` CSR, curl uses it, the SDK
revokes it (403 through a `cert_revoked` rule on new and on open keep-alive connections, and the
status settles to `revoked` only once the edge has the change), then reactivates it."""

from __future__ import annotations

import http.client
import json
import re
import socket
import ssl
import subprocess
import time
from collections.abc import Iterator
from datetime import datetime, timedelta
from pathlib import Path

import httpx
import pytest

from tests import harness
from tests.certs import openssl
from tests.harness import Gateway

HOST = "api.example.com"
# The seed's rule, extended with the anchor's revocation field.
RULE = (
    f'(http.host in {{"{HOST}"}} and '
    "(not cf.tls_client_auth.cert_verified or cf.tls_client_auth.cert_revoked))"
)
SUBJECT = "/C=US/ST=CA/L=San Francisco/O=Corp/OU=Devices/CN=device-001"


@pytest.fixture
def tls_path() -> str:
    """The edge's TLS path (edge/runtime/tls_engine.py); `fast` must be the direct one."""
    return "fast"


@pytest.fixture
def edge_gateway(
    tmp_path: Path, database_url: str | None, tls_path: str, monkeypatch: pytest.MonkeyPatch
) -> Iterator[tuple[Gateway, int]]:
    """A gateway whose api.example.com checks clients against the managed CA, with the rule."""
    monkeypatch.setenv("MTLSGATE_EDGE_TLS", tls_path)
    with harness.edge_gateway(tmp_path / "data", database_url, (HOST,)) as (gw, port):
        managed_mtls(gw)
        yield gw, port


def managed_mtls(gw: Gateway) -> None:
    """HOST checks clients against the managed CA, and RULE blocks unverified or revoked ones."""
    zone = gw.zone_id
    with gw.http() as c:
        for path, body in (
            # No mtls_certificate_id: the managed CA's hostnames.
            (f"/zones/{zone}/certificate_authorities/hostname_associations",
             {"hostnames": [HOST]}),
            (f"/zones/{zone}/rulesets/phases/http_request_firewall_custom/entrypoint",
             {"rules": [{"expression": RULE, "action": "block"}]}),
        ):  # fmt: skip
            r = c.put(path, json=body)
            assert r.status_code == 200, r.text


def openssl_req(tmp: Path, subject: str = SUBJECT) -> tuple[Path, str]:
    """A key and CSR made by `openssl req` (RSA 2048, as an operator would)."""
    tmp.mkdir(parents=True, exist_ok=True)
    key, csr = tmp / "client.key", tmp / "client.csr"
    openssl("req", "-new", "-newkey", "rsa:2048", "-nodes", "-keyout", str(key),
            "-out", str(csr), "-subj", subject)  # fmt: skip
    return key, csr.read_text()


def curl(gw: Gateway, port: int, cert: Path | None = None, key: Path | None = None) -> int:
    cacert = str(gw.data_dir / "edge-ca.pem")
    args = ["curl", "-s", "-o", "/dev/null", "-w", "%{http_code}", "--max-time", "5",
            "--resolve", f"{HOST}:{port}:127.0.0.1", "--cacert", cacert]  # fmt: skip
    if cert is not None and key is not None:
        args += ["--cert", str(cert), "--key", str(key)]
    out = subprocess.run([*args, f"https://{HOST}:{port}/"], capture_output=True, text=True)
    return int(out.stdout or 0)


class KeepAlive:
    """One TLS connection to the edge, kept open across requests (HTTP/1.1 keep-alive)."""

    def __init__(self, gw: Gateway, port: int, cert: Path, key: Path) -> None:
        ctx = ssl.create_default_context(cafile=str(gw.data_dir / "edge-ca.pem"))
        ctx.load_cert_chain(str(cert), str(key))
        raw = socket.create_connection(("127.0.0.1", port), timeout=5)
        self.sock = ctx.wrap_socket(raw, server_hostname=HOST)

    def get(self) -> int:
        self.sock.sendall(f"GET / HTTP/1.1\r\nHost: {HOST}\r\n\r\n".encode())
        resp = http.client.HTTPResponse(self.sock)  # type: ignore[arg-type]
        resp.begin()
        resp.read()
        # The connection must stay open: otherwise the next request would not be on it.
        assert not resp.will_close, "the edge closed the keep-alive connection"
        return resp.status

    def close(self) -> None:
        self.sock.close()


def until(check: object, expected: object, timeout: float) -> float:
    """Seconds until check() == expected; fails after `timeout`."""
    assert callable(check)
    start = time.monotonic()
    got = None
    while time.monotonic() - start < timeout:
        got = check()
        if got == expected:
            return time.monotonic() - start
        time.sleep(0.05)
    raise AssertionError(f"expected {expected!r} within {timeout}s, last saw {got!r}")


def openssl_field(pem_path: Path, *args: str) -> str:
    return openssl("x509", "-in", str(pem_path), "-noout", *args).strip()


@pytest.mark.parametrize("tls_path", ["fast", "public"])
def test_issue_revoke_reactivate_through_the_edge(
    edge_gateway: tuple[Gateway, int], tmp_path: Path
) -> None:
    gw, port = edge_gateway
    zone = gw.zone_id
    cf = gw.sdk()
    key, csr = openssl_req(tmp_path / "client")

    cert = cf.client_certificates.create(zone_id=zone, csr=csr, validity_days=3650)
    assert cert is not None and cert.id is not None and cert.certificate is not None
    assert re.fullmatch(r"[0-9a-f]{32}", cert.id)
    assert cert.status == "active"
    assert cert.validity_days == 3650
    pem = tmp_path / "client.pem"
    pem.write_text(cert.certificate)
    # Formats as the reference (4.3), checked against what `openssl x509` prints.
    serial = openssl_field(pem, "-serial").split("=", 1)[1]
    assert cert.serial_number == serial.lower() and len(serial) % 2 == 0
    fp = openssl_field(pem, "-fingerprint", "-sha256").split("=", 1)[1]
    assert cert.fingerprint_sha256 == fp.replace(":", "").lower()
    ski_text = openssl_field(pem, "-ext", "subjectKeyIdentifier").splitlines()[-1].strip()
    assert cert.ski == ski_text.replace(":", "").lower()
    assert "TLS Web Client Authentication" in openssl_field(pem, "-ext", "extendedKeyUsage")
    assert (cert.common_name, cert.country, cert.state, cert.location) == (
        "device-001", "US", "CA", "San Francisco"
    )  # fmt: skip
    assert (cert.organization, cert.organizational_unit) == ("Corp", "Devices")
    assert cert.csr is not None and "\r\n" in cert.csr
    assert cert.csr.replace("\r\n", "\n").strip() == csr.strip()
    assert cert.certificate_authority is not None and cert.certificate_authority.id
    assert cert.certificate_authority.name == "Managed CA for mtlsgate"
    issued = datetime.fromisoformat(str(cert.issued_on).replace("Z", "+00:00"))
    expires = datetime.fromisoformat(str(cert.expires_on).replace("Z", "+00:00"))
    assert expires - issued == timedelta(days=3650)
    not_after = openssl_field(pem, "-enddate").split("=", 1)[1]
    assert expires.strftime("%b %e %H:%M:%S %Y GMT").replace("  ", " ") == " ".join(
        not_after.split()
    )

    # The certificate is accepted; without one, the rule blocks.
    until(lambda: curl(gw, port, pem, key), 200, 5)
    assert curl(gw, port) == 403
    open_conn = KeepAlive(gw, port, pem, key)
    assert open_conn.get() == 200

    # Revoke: pending until the edge has it, 403 on new and open connections within 3 s.
    revoked = cf.client_certificates.delete(cert.id, zone_id=zone)
    assert revoked is not None and revoked.status in ("pending_revocation", "revoked")
    t_new = until(lambda: curl(gw, port, pem, key), 403, 3)
    t_open = until(open_conn.get, 403, 3)
    print(f"revocation reached a new connection in {t_new:.2f}s, an open one in {t_open:.2f}s")
    until(lambda: cf.client_certificates.get(cert.id, zone_id=zone).status, "revoked", 5)
    assert [c.id for c in cf.client_certificates.list(zone_id=zone, status="revoked")] == [cert.id]

    # The log line and the metrics name the reason.
    log = gw.data_dir.parent / f"serve-{gw.port}.log"
    until(lambda: '"revocation":"managed"' in log.read_text(errors="replace"), True, 3)
    line = next(
        json.loads(raw)
        for raw in log.read_text(errors="replace").splitlines()
        if '"revocation":"managed"' in raw
    )
    assert (line["status"], line["mtls"], line["action"]) == (403, "revoked", "block")
    metric = f'mtlsgate_edge_revoked_requests_total{{hostname="{HOST}",reason="managed"}}'
    until(lambda: metric in httpx.get(f"http://127.0.0.1:{gw.port}/metrics").text, True, 5)

    # Reactivate from `revoked` (the SDK sends {"reactivate": true}): 200 again everywhere.
    back = cf.client_certificates.edit(cert.id, zone_id=zone, reactivate=True)
    assert back is not None and back.status in ("pending_reactivation", "active")
    until(lambda: curl(gw, port, pem, key), 200, 3)
    until(open_conn.get, 200, 3)
    until(lambda: cf.client_certificates.get(cert.id, zone_id=zone).status, "active", 5)

    # Revoke again, and reactivate while still pending_revocation with a bodiless PATCH (the
    # 2023 schema's form); the open connection follows both changes.
    with gw.http() as c:
        url = f"/zones/{zone}/client_certificates/{cert.id}"
        assert c.delete(url).json()["result"]["status"] == "pending_revocation"
        r = c.patch(url)
        assert r.status_code == 200, r.text
        assert r.json()["result"]["status"] == "pending_reactivation"
    until(lambda: cf.client_certificates.get(cert.id, zone_id=zone).status, "active", 5)
    assert open_conn.get() == 200
    assert curl(gw, port, pem, key) == 200
    open_conn.close()


def test_status_stays_pending_without_a_running_edge(
    edge_gateway: tuple[Gateway, int], tmp_path: Path
) -> None:
    gw, port = edge_gateway
    zone = gw.zone_id
    _key, csr = openssl_req(tmp_path / "client")
    with gw.http() as c:
        r = c.post(f"/zones/{zone}/client_certificates", json={"csr": csr, "validity_days": 1})
        assert r.status_code == 200, r.text
        url = f"/zones/{zone}/client_certificates/{r.json()['result']['id']}"
        c.delete(url)
        until(lambda: c.get(url).json()["result"]["status"], "revoked", 5)
    # Every edge stops; the API alone comes back on the same store.
    gw.stop()
    gw.proc = None
    gw.start()
    with gw.http() as c:
        r = c.patch(url, json={"reactivate": True})
        assert r.json()["result"]["status"] == "pending_reactivation"
        # Longer than the edge's running window (6 s): nothing settles it, not even the stale
        # heartbeat of the stopped edge.
        deadline = time.monotonic() + 7
        while time.monotonic() < deadline:
            assert c.get(url).json()["result"]["status"] == "pending_reactivation"
            time.sleep(0.5)
        listed = c.get(f"/zones/{zone}/client_certificates", params={"status": "active"})
        assert listed.json()["result"] == []
    # An edge starts again: it applies the current version, and the status settles.
    gw.start(edge=["--edge", f"127.0.0.1:{port}", "--workers", "1"])
    with gw.http() as c:
        until(lambda: c.get(url).json()["result"]["status"], "active", 10)


def test_revoking_one_certificate_leaves_its_siblings(
    edge_gateway: tuple[Gateway, int], tmp_path: Path
) -> None:
    """The edge asks the revocation index by serial first (server.py `_apply_revocation`): a
    sibling of a revoked certificate, same CA, other serial, is still let through, and a
    certificate issued after the revocation (no config change) is accepted at once."""
    gw, port = edge_gateway
    url = f"/zones/{gw.zone_id}/client_certificates"
    files = {}
    with gw.http() as c:
        for name in ("gone", "kept"):
            key, csr = openssl_req(tmp_path / name, subject=f"/CN={name}")
            r = c.post(url, json={"csr": csr, "validity_days": 1})
            assert r.status_code == 200, r.text
            (tmp_path / name / "client.pem").write_text(r.json()["result"]["certificate"])
            files[name] = (tmp_path / name / "client.pem", key, r.json()["result"]["id"])
        until(lambda: curl(gw, port, *files["gone"][:2]), 200, 5)
        assert c.delete(f"{url}/{files['gone'][2]}").status_code == 200
        until(lambda: curl(gw, port, *files["gone"][:2]), 403, 3)
        assert curl(gw, port, *files["kept"][:2]) == 200
        key, csr = openssl_req(tmp_path / "late", subject="/CN=late")
        r = c.post(url, json={"csr": csr, "validity_days": 1})
        assert r.status_code == 200 and r.json()["result"]["status"] == "active", r.text
        (tmp_path / "late" / "client.pem").write_text(r.json()["result"]["certificate"])
    assert curl(gw, port, tmp_path / "late" / "client.pem", key) == 200
    assert curl(gw, port, *files["gone"][:2]) == 403
