"""RFC 9440 headers through late-transform rules and Access certificate forwarding, configured
through the API of a real `mtlsgate serve`, seen by the echo origin behind its edge."""

from __future__ import annotations

import base64
import hashlib
import json
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from cryptography import x509
from cryptography.hazmat.primitives.serialization import Encoding

from tests import harness
from tests.certs import CertFiles, openssl_leaf, openssl_root
from tests.harness import Gateway

HOST = "api.example.com"
RFC9440_RULE = "cf.tls_client_auth.cert_verified and not cf.tls_client_auth.cert_revoked"


@pytest.fixture
def edge_gateway(tmp_path: Path, database_url: str | None) -> Iterator[tuple[Gateway, int]]:
    with harness.edge_gateway(tmp_path / "data", database_url, (HOST,)) as running:
        yield running


def requests(
    gw: Gateway,
    port: int,
    paths: tuple[str, ...] = ("/",),
    cert: CertFiles | None = None,
    headers: tuple[str, ...] = (),
) -> list[dict[str, Any]]:
    """The echo origin's JSON for each path, all sent by one curl on one connection."""
    args = [
        "curl", "-sS", "--max-time", "5", "--resolve", f"{HOST}:{port}:127.0.0.1",
        "--cacert", str(gw.data_dir / "edge-ca.pem"),
    ]  # fmt: skip
    if cert is not None:
        args += ["--cert", str(cert.cert_path), "--key", str(cert.key_path)]
    for h in headers:
        args += ["-H", h]
    args += [f"https://{HOST}:{port}{p}" for p in paths]
    out = subprocess.run(args, capture_output=True, text=True, timeout=20, check=False).stdout
    decoder = json.JSONDecoder()
    bodies: list[dict[str, Any]] = []
    i = 0
    while i < len(out):
        if out[i].isspace():
            i += 1
            continue
        body, i = decoder.raw_decode(out, i)
        bodies.append(body)
    return bodies


def seen(body: dict[str, Any]) -> dict[str, list[str]]:
    out: dict[str, list[str]] = {}
    for k, v in body["headers"]:
        out.setdefault(k.lower(), []).append(v)
    return out


def eventually(check: Any, timeout: float = 5.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            if check():
                return
        except (ValueError, KeyError, IndexError):
            pass
        time.sleep(0.1)
    raise AssertionError("the configuration did not reach the edge in time")


def test_rfc9440_transform_and_certificate_forwarding(
    edge_gateway: tuple[Gateway, int], tmp_path: Path
) -> None:
    gw, port = edge_gateway
    ca = openssl_root(tmp_path / "ca", kind="ec", cn="Devices CA")
    good = openssl_leaf(tmp_path / "good", ca, cn="device-1")
    other_ca = openssl_root(tmp_path / "other", kind="ec", cn="Other CA")
    stranger = openssl_leaf(tmp_path / "stranger", other_ca, cn="device-2")
    der = x509.load_pem_x509_certificate(good.cert_pem.encode()).public_bytes(Encoding.DER)
    rfc9440 = ":" + base64.b64encode(der).decode() + ":"
    spoof = ("Client-Cert: :c3Bvb2Y=:", "Client-Cert-Chain: :c3Bvb2Y=:")

    # Before any transform rule: a client's Client-Cert never reaches the origin.
    eventually(lambda: requests(gw, port, headers=spoof))
    got = seen(requests(gw, port, headers=spoof)[0])
    assert "client-cert" not in got and "client-cert-chain" not in got

    with gw.http() as c:
        ca_id = c.post(
            f"/accounts/{gw.account_id}/mtls_certificates",
            json={"ca": True, "name": "devices", "certificates": ca.cert_pem},
        ).json()["result"]["id"]
        r = c.put(
            f"/zones/{gw.zone_id}/certificate_authorities/hostname_associations",
            json={"hostnames": [HOST], "mtls_certificate_id": ca_id},
        )
        assert r.status_code == 200, r.text
        r = c.put(
            f"/zones/{gw.zone_id}/rulesets/phases/http_request_late_transform/entrypoint",
            json={
                "rules": [
                    {
                        "expression": RFC9440_RULE,
                        "action": "rewrite",
                        "action_parameters": {
                            "headers": {
                                "Client-Cert": {
                                    "operation": "set",
                                    "expression": "cf.tls_client_auth.cert_rfc9440",
                                },
                                "Client-Cert-Chain": {
                                    "operation": "set",
                                    "expression": "cf.tls_client_auth.cert_chain_rfc9440",
                                },
                            }
                        },
                    },
                    {
                        "expression": "true",
                        "action": "rewrite",
                        "action_parameters": {
                            "headers": {"X-Edge": {"operation": "set", "value": "mtlsgate"}}
                        },
                    },
                ]
            },
        )
        assert r.status_code == 200, r.text
        r = c.put(
            f"/zones/{gw.zone_id}/access/certificates/settings",
            json={
                "settings": [
                    {
                        "hostname": HOST,
                        "china_network": False,
                        "client_certificate_forwarding": True,
                    }
                ]
            },
        )
        assert r.status_code in (200, 202), r.text

    def applied() -> bool:
        got = seen(requests(gw, port, cert=good)[0])
        return "cf-client-cert-sha256" in got and got.get("client-cert") == [rfc9440]

    eventually(applied)

    # A verified certificate, three requests on one connection: the RFC 9440 header on each,
    # the Access forwarding headers on the first only.
    bodies = requests(gw, port, ("/1", "/2", "/3"), cert=good, headers=spoof)
    assert [b["url"] for b in bodies] == ["/1", "/2", "/3"]
    first, *later = (seen(b) for b in bodies)
    assert first["cf-client-cert-der-base64"] == [base64.b64encode(der).decode()]
    assert first["cf-client-cert-sha256"] == [hashlib.sha256(der).hexdigest()]
    for got in (first, *later):
        assert got["client-cert"] == [rfc9440]
        assert "client-cert-chain" not in got  # no chain sent: "" is left out
        assert got["x-edge"] == ["mtlsgate"]
    for got in later:
        assert "cf-client-cert-der-base64" not in got
        assert "cf-client-cert-sha256" not in got

    # No certificate: nothing about one, and the client's copies are gone.
    got = seen(
        requests(gw, port, cert=None, headers=(*spoof, "Cf-Client-Cert-Der-Base64: c3Bvb2Y="))[0]
    )
    assert "client-cert" not in got and "client-cert-chain" not in got
    assert "cf-client-cert-der-base64" not in got and "cf-client-cert-sha256" not in got
    assert got["x-edge"] == ["mtlsgate"]

    # A certificate from another CA: forwarded (it was presented) but no RFC 9440 header.
    got = seen(requests(gw, port, cert=stranger, headers=spoof)[0])
    assert "client-cert" not in got
    stranger_der = x509.load_pem_x509_certificate(stranger.cert_pem.encode()).public_bytes(
        Encoding.DER
    )
    assert got["cf-client-cert-sha256"] == [hashlib.sha256(stranger_der).hexdigest()]

    # Forwarding off again: the next connection gets no Cf-Client-Cert-* headers.
    with gw.http() as c:
        r = c.put(
            f"/zones/{gw.zone_id}/access/certificates/settings",
            json={
                "settings": [
                    {
                        "hostname": HOST,
                        "china_network": False,
                        "client_certificate_forwarding": False,
                    }
                ]
            },
        )
        assert r.status_code in (200, 202), r.text
    eventually(lambda: "cf-client-cert-sha256" not in seen(requests(gw, port, cert=good)[0]))
    assert seen(requests(gw, port, cert=good)[0])["client-cert"] == [rfc9440]
