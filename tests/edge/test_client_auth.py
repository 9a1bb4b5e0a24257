"""The seed's semantics with real clients: the handshake always completes, the verdict is data,
the rule `http.host in {"api.example.com"} and not cf.tls_client_auth.cert_verified` blocks."""

from __future__ import annotations

import json
import subprocess

import pytest

from tests.certs import openssl
from tests.edge.conftest import Edge, curl, httpx_get


def echoed(body: str) -> dict[str, str]:
    return {k.lower(): v for k, v in json.loads(body)["headers"]}


def test_valid_client_cert_passes(edge: Edge) -> None:
    r = curl(edge, cert=edge.pki.good, path="/hello?x=1")
    assert r.status == 200
    seen = echoed(r.body)
    assert seen["cf-cert-verified"] == "true"
    assert seen["cf-cert-presented"] == "true"
    assert json.loads(r.body)["url"] == "/hello?x=1"


def test_no_client_cert_is_blocked(edge: Edge) -> None:
    assert curl(edge).status == 403


def test_cert_from_another_ca_is_blocked(edge: Edge) -> None:
    assert curl(edge, cert=edge.pki.other_ca_leaf).status == 403


def test_expired_cert_from_the_right_ca_is_blocked(edge: Edge) -> None:
    assert curl(edge, cert=edge.pki.expired).status == 403


def test_sha1_signed_cert_is_forgiven(edge: Edge) -> None:
    # Documented decision (tls.py): the seed's allowed algorithms include SHA-1.
    # curl's own OpenSSL refuses to load a SHA-1 certificate; httpx's context allows it.
    r = httpx_get(edge, cert=edge.pki.sha1)
    assert r.status_code == 200
    assert echoed(r.text)["cf-cert-verified"] == "true"


def test_rsa1024_cert_is_not_verified(edge: Edge) -> None:
    assert httpx_get(edge, cert=edge.pki.rsa1024).status_code == 403


def test_cert_without_client_auth_eku_is_not_verified(edge: Edge) -> None:
    assert curl(edge, cert=edge.pki.no_client_eku).status == 403


def test_unverified_certs_reach_open_host_with_no_rules(edge: Edge) -> None:
    # open.example.com does not ask for a certificate and has no rules.
    assert curl(edge, host="open.example.com").status == 200
    assert curl(edge, host="open.example.com", cert=edge.pki.other_ca_leaf).status == 200


def _x509(path: str, *opts: str) -> str:
    return openssl("x509", "-in", path, "-noout", *opts).strip()


def test_managed_headers_match_openssl(edge: Edge) -> None:
    good = edge.pki.good
    seen = echoed(curl(edge, cert=good).body)
    path = str(good.cert_path)
    serial = _x509(path, "-serial").split("=", 1)[1]
    sha256 = _x509(path, "-fingerprint", "-sha256").split("=", 1)[1].replace(":", "").lower()
    sha1 = _x509(path, "-fingerprint", "-sha1").split("=", 1)[1].replace(":", "").lower()
    subject = _x509(path, "-subject", "-nameopt", "RFC2253").split("=", 1)[1].strip()
    issuer = _x509(path, "-issuer", "-nameopt", "RFC2253").split("=", 1)[1].strip()
    not_after = _x509(path, "-enddate").split("=", 1)[1]
    not_before = _x509(path, "-startdate").split("=", 1)[1]
    assert seen["cf-cert-serial"] == serial
    assert seen["cf-cert-sha256"] == sha256
    assert seen["cf-cert-sha1"] == sha1
    assert seen["cf-cert-subject-dn-rfc2253"] == subject
    assert seen["cf-cert-issuer-dn-rfc2253"] == issuer
    assert seen["cf-cert-not-after"] == not_after
    assert seen["cf-cert-not-before"] == not_before
    # For plain ASCII names RFC 4514 and OpenSSL's RFC2253 rendering agree.
    assert seen["cf-cert-subject-dn"] == subject
    assert seen["cf-cert-issuer-dn"] == issuer == "CN=Client CA"
    legacy = _x509(path, "-subject", "-nameopt", "compat").split("=", 1)[1].strip()
    assert seen["cf-cert-subject-dn-legacy"] == legacy


def _s_client(edge: Edge, *args: str, stdin: bytes = b"") -> subprocess.CompletedProcess[bytes]:
    return subprocess.run(
        ["openssl", "s_client", "-connect", f"127.0.0.1:{edge.port}", "-CAfile",
         str(edge.pki.edge_ca.cert_path), "-ign_eof", *args],
        input=stdin, capture_output=True, timeout=20, check=False,
    )  # fmt: skip


def test_no_sni_gets_the_default_profile(edge: Edge) -> None:
    req = b"GET /nosni HTTP/1.1\r\nHost: api.example.com\r\nConnection: close\r\n\r\n"
    out = _s_client(edge, "-noservername", stdin=req)
    text = out.stdout.decode("latin-1")
    # The default host (api.example.com) asks for a client certificate naming the client CA.
    assert "Acceptable client certificate CA names" in text
    assert "CN = Client CA" in text
    assert "HTTP/1.1 403" in text
    good = edge.pki.good
    out = _s_client(
        edge, "-noservername", "-cert", str(good.cert_path), "-key", str(good.key_path), stdin=req
    )
    text = out.stdout.decode("latin-1")
    assert "HTTP/1.1 200" in text
    assert '"url": "/nosni"' in text


def test_unknown_sni_fails_the_handshake(edge: Edge) -> None:
    req = b"GET /unknown HTTP/1.1\r\nHost: nope.example.net\r\nConnection: close\r\n\r\n"
    out = _s_client(edge, "-servername", "nope.example.net", stdin=req)
    assert out.returncode != 0
    assert b"HTTP/1.1" not in out.stdout
    r = curl(edge, host="nope.example.net", extra=("-k",))
    assert r.status == 0
    # The server is still fine.
    assert curl(edge, cert=edge.pki.good).status == 200


@pytest.mark.parametrize("version", ["-tls1_2", "-tls1_3"])
def test_both_tls_versions_verify(edge: Edge, version: str) -> None:
    good = edge.pki.good
    req = b"GET /v HTTP/1.1\r\nHost: api.example.com\r\nConnection: close\r\n\r\n"
    out = _s_client(
        edge, version, "-servername", "api.example.com", "-cert", str(good.cert_path),
        "-key", str(good.key_path), stdin=req,
    )  # fmt: skip
    assert b"HTTP/1.1 200" in out.stdout


def test_wildcard_mtls_hostname_serves_its_names(edge: Edge) -> None:
    # A wildcard profile (*.wild.example.com): the Host must match the SNI the client sent,
    # not the profile's "*." name; another name under the wildcard is still a 421.
    assert curl(edge, "a.wild.example.com", cert=edge.pki.good).status == 200
    assert curl(edge, "a.wild.example.com").status == 403
    assert curl(edge, "a.wild.example.com", cert=edge.pki.other_ca_leaf).status == 403
    other_host = curl(
        edge, "a.wild.example.com", cert=edge.pki.good, headers=("Host: b.wild.example.com",)
    )
    assert other_host.status == 421
