"""Late-transform header rules and Access certificate forwarding on xform.example.com
(edge_proc.TRANSFORM_RULES), with real clients against a real edge worker process."""

from __future__ import annotations

import base64
import hashlib
import json
import ssl

from cryptography import x509
from cryptography.hazmat.primitives.serialization import Encoding

from tests.certs import CertFiles
from tests.edge.conftest import Edge, curl, read_response, tls_socket

HOST = "xform.example.com"


def headers_of(body: str | bytes) -> list[tuple[str, str]]:
    return [(k.lower(), v) for k, v in json.loads(body)["headers"]]


def seen(body: str | bytes) -> dict[str, str]:
    return dict(headers_of(body))


def names(body: str | bytes) -> list[str]:
    return [k for k, _ in headers_of(body)]


def der(cert: CertFiles) -> bytes:
    return x509.load_pem_x509_certificate(cert.cert_pem.encode()).public_bytes(Encoding.DER)


def test_rfc9440_headers_for_a_verified_certificate(edge: Edge) -> None:
    r = curl(edge, HOST, cert=edge.pki.good, headers=("Client-Cert: :c3Bvb2Y=:",))
    assert r.status == 200
    got = headers_of(r.body)
    expected = ":" + base64.b64encode(der(edge.pki.good)).decode() + ":"
    # The client's copy is gone; the rule's value is the only one.
    assert [v for k, v in got if k == "client-cert"] == [expected]
    # The client sent no chain: the computed value is "" and the header is left out.
    assert "client-cert-chain" not in dict(got)


def test_no_rfc9440_headers_without_a_verified_certificate(edge: Edge) -> None:
    spoof = ("Client-Cert: :c3Bvb2Y=:", "Client-Cert-Chain: :c3Bvb2Y=:")
    for cert in (None, edge.pki.other_ca_leaf, edge.pki.expired):
        r = curl(edge, HOST, cert=cert, headers=spoof)
        assert r.status == 200
        got = names(r.body)
        assert "client-cert" not in got
        assert "client-cert-chain" not in got


def test_static_set_remove_and_order(edge: Edge) -> None:
    r = curl(edge, HOST, headers=("X-Gone: from the client", "X-Static: client copy"))
    got = headers_of(r.body)
    assert [v for k, v in got if k == "x-static"] == ["static value"]
    assert "x-gone" not in dict(got)
    assert dict(got)["x-forwarded-proto"] == "https"
    assert "cf-connecting-ip" in dict(got)
    # A later matching rule changes what an earlier one did.
    r = curl(edge, HOST, "/override", headers=("X-Gone: from the client",))
    got = headers_of(r.body)
    assert "x-static" not in dict(got)
    assert [v for k, v in got if k == "x-gone"] == ["back"]
    assert [v for k, v in got if k == "x-forwarded-proto"] == ["http"]
    assert "cf-connecting-ip" not in dict(got)


def test_a_rule_may_set_client_cert_itself(edge: Edge) -> None:
    r = curl(edge, HOST, "/static-cert", headers=("Client-Cert: :c3Bvb2Y=:",))
    assert [v for k, v in headers_of(r.body) if k == "client-cert"] == [":c3RhdGlj:"]


def test_edge_headers_cannot_be_rewritten(edge: Edge) -> None:
    got = headers_of(curl(edge, HOST, headers=("X-Forwarded-For: 192.0.2.1",)).body)
    # cf-* belongs to the edge (the managed header says the truth), X-Forwarded-For stays.
    assert [v for k, v in got if k == "cf-cert-verified"] == ["false"]
    assert [v for k, v in got if k == "x-forwarded-for"] == ["192.0.2.1, 127.0.0.1"]


def test_computed_values_are_escaped_and_empty_ones_omitted(edge: Edge) -> None:
    r = curl(edge, HOST, "/?a%0D%0AInjected:%20yes%00")
    got = seen(r.body)
    assert "injected" not in got
    assert got["x-decoded"] == "a\\0D\\0AInjected: yes\\00"
    # Empty query: url_decode gives "", and the header is left out.
    assert "x-decoded" not in seen(curl(edge, HOST, "/").body)
    # No certificate: the subject is "" and left out; with one it is set.
    assert "x-subject" not in seen(curl(edge, HOST).body)
    assert seen(curl(edge, HOST, cert=edge.pki.good).body)["x-subject"].endswith("CN=good client")


def _get(sock: ssl.SSLSocket, path: str, extra: str = "") -> dict[str, str]:
    sock.sendall(f"GET {path} HTTP/1.1\r\nHost: {HOST}\r\n{extra}\r\n".encode())
    status, _, body = read_response(sock)
    assert status == 200
    return seen(body)


def test_certificate_forwarded_on_the_first_request_of_a_connection(edge: Edge) -> None:
    good = edge.pki.good
    raw = der(good)
    spoof = "Cf-Client-Cert-Der-Base64: c3Bvb2Y=\r\nCf-Client-Cert-Sha256: 00\r\n"
    for _ in range(2):  # every new connection starts again
        with tls_socket(edge, HOST, cert=good) as sock:
            first = _get(sock, "/1", spoof)
            assert first["cf-client-cert-der-base64"] == base64.b64encode(raw).decode()
            assert first["cf-client-cert-sha256"] == hashlib.sha256(raw).hexdigest()
            for path in ("/2", "/3"):
                later = _get(sock, path, spoof)
                assert "cf-client-cert-der-base64" not in later
                assert "cf-client-cert-sha256" not in later
                # The per-request transforms still apply on later requests.
                assert later["client-cert"] == ":" + base64.b64encode(raw).decode() + ":"


def test_untrusted_certificate_is_forwarded_too(edge: Edge) -> None:
    # Forwarding says what was presented; cf-cert-verified says whether it was trusted.
    r = curl(edge, HOST, cert=edge.pki.other_ca_leaf)
    got = seen(r.body)
    assert got["cf-client-cert-sha256"] == hashlib.sha256(der(edge.pki.other_ca_leaf)).hexdigest()
    assert got["cf-cert-verified"] == "false"


def test_nothing_forwarded_without_a_certificate(edge: Edge) -> None:
    spoof = "Cf-Client-Cert-Der-Base64: c3Bvb2Y=\r\nCf-Client-Cert-Sha256: 00\r\n"
    with tls_socket(edge, HOST) as sock:
        for path in ("/1", "/2"):
            got = _get(sock, path, spoof)
            assert "cf-client-cert-der-base64" not in got
            assert "cf-client-cert-sha256" not in got


def test_hosts_without_the_settings_are_unchanged(edge: Edge) -> None:
    r = curl(edge, "api.example.com", cert=edge.pki.good, headers=("Client-Cert: :c3Bvb2Y=:",))
    got = names(r.body)
    assert "client-cert" not in got
    assert "cf-client-cert-der-base64" not in got
    assert "x-static" not in got
