"""The managed client-certificate API through a real `mtlsgate serve` (API only): clear 400
envelopes for bad CSRs and validity, page-number pagination and the status filter (with the
official SDK's auto-pagination), permissions, and another account's token seeing nothing."""

from __future__ import annotations

import base64
import re
from pathlib import Path
from typing import Any

import httpx
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID

from tests.certs import openssl
from tests.harness import Gateway

ZONE_SSL_READ = "SSL and Certificates Read"


def make_csr(tmp: Path, name: str, *newkey: str, subject: str | None = None) -> str:
    """A CSR from `openssl req -new -newkey ...` (a fresh key each time)."""
    tmp.mkdir(parents=True, exist_ok=True)
    csr = tmp / f"{name}.csr"
    openssl("req", "-new", *newkey, "-nodes", "-keyout", str(tmp / f"{name}.key"),
            "-out", str(csr), "-subj", subject or f"/CN={name}")  # fmt: skip
    return csr.read_text()


def ec_csr(tmp: Path, name: str, curve: str = "P-256") -> str:
    return make_csr(tmp, name, "-newkey", "ec", "-pkeyopt", f"ec_paramgen_curve:{curve}")


def error_of(r: httpx.Response, status: int, code: int, contains: str) -> dict[str, Any]:
    assert r.status_code == status, r.text
    body = r.json()
    assert body["success"] is False and body["result"] is None
    (err,) = body["errors"]
    assert err["code"] == code, body
    assert contains in err["message"], body
    return dict(err)


def test_bad_csrs_and_validity_get_clear_errors(gateway: Gateway, tmp_path: Path) -> None:
    url = f"/zones/{gateway.zone_id}/client_certificates"
    good = ec_csr(tmp_path, "good")
    # A CSR whose signature no longer verifies: one bit of the signature flipped.
    der = bytearray(base64.b64decode("".join(good.strip().splitlines()[1:-1])))
    der[-3] ^= 0x01
    body = base64.encodebytes(bytes(der)).decode().replace("\n", "")
    lines = [body[i : i + 64] for i in range(0, len(body), 64)]
    tampered = "\n".join(
        ["-----BEGIN CERTIFICATE REQUEST-----", *lines, "-----END CERTIFICATE REQUEST-----", ""]
    )
    x_key = str(tmp_path / "x.key")
    cert = openssl("req", "-x509", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:P-256",
                   "-nodes", "-keyout", x_key, "-subj", "/CN=x", "-days", "1")  # fmt: skip
    cases = [
        ("not PEM at all", "hello", 1470, "exactly one PEM block"),
        ("a certificate", cert, 1470, "found CERTIFICATE"),
        ("garbage in a CSR block",
         "-----BEGIN CERTIFICATE REQUEST-----\nAAAA\n-----END CERTIFICATE REQUEST-----\n",
         1470, "not a readable PKCS#10 request"),
        ("bad signature", tampered, 1471, "signature does not verify"),
        ("RSA 1024", make_csr(tmp_path, "weak", "-newkey", "rsa:1024"), 1472,
         "1024-bit RSA key; at least 2048"),
        ("secp256k1", make_csr(tmp_path, "k1", "-newkey", "ec", "-pkeyopt",
                               "ec_paramgen_curve:secp256k1"), 1473, "curve secp256k1"),
        ("Ed25519", make_csr(tmp_path, "ed", "-newkey", "ed25519"), 1473,
         "unsupported key type (Ed25519)"),
        ("no CN", make_csr(tmp_path, "nocn", "-newkey", "ec", "-pkeyopt",
                           "ec_paramgen_curve:P-256", subject="/O=Corp"), 1474, "no common name"),
    ]  # fmt: skip
    with gateway.http() as c:
        for label, csr, code, text in cases:
            r = c.post(url, json={"csr": csr, "validity_days": 30})
            err = error_of(r, 400, code, text)
            assert err.get("source", {}).get("pointer") in ("/csr", "csr", None), (label, err)
        for days in (0, -1, 3651, 100000):
            r = c.post(url, json={"csr": good, "validity_days": days})
            error_of(r, 400, 1475, "validity_days must be between 1 and 3650")
        for bad in ("30", 1.5, True, None):
            r = c.post(url, json={"csr": good, "validity_days": bad})
            assert r.status_code == 400 and r.json()["errors"][0]["code"] == 1001, r.text
        r = c.post(url, json={"csr": good})
        assert r.status_code == 400 and "validity_days" in r.text
        # Nothing half-written: no certificate exists after all those refusals.
        assert c.get(url).json()["result_info"]["total_count"] == 0
        # The bounds themselves are accepted.
        for days in (1, 3650):
            r = c.post(url, json={"csr": good, "validity_days": days})
            assert r.status_code == 200, r.text
            assert r.json()["result"]["validity_days"] == days


def test_pagination_status_filter_and_not_found(gateway: Gateway, tmp_path: Path) -> None:
    zone = gateway.zone_id
    url = f"/zones/{zone}/client_certificates"
    ids = []
    with gateway.http() as c:
        for i in range(7):
            r = c.post(url, json={"csr": ec_csr(tmp_path, f"dev{i}"), "validity_days": 10})
            assert r.status_code == 200, r.text
            ids.append(r.json()["result"]["id"])
        pages = [c.get(url, params={"per_page": 5, "page": p}).json() for p in (1, 2, 3)]
        assert [len(p["result"]) for p in pages] == [5, 2, 0]
        assert pages[0]["result_info"] == {
            "page": 1, "per_page": 5, "count": 5, "total_count": 7, "total_pages": 2
        }  # fmt: skip
        assert pages[2]["success"] is True and pages[2]["result_info"]["count"] == 0
        assert [x["id"] for p in pages for x in p["result"]] == ids  # oldest first, stable

        for cert_id in ids[:2]:
            r = c.delete(f"{url}/{cert_id}")
            assert r.json()["result"]["status"] == "pending_revocation"
        # No edge is running: the revocations stay pending.
        listed = c.get(url, params={"status": "pending_revocation"}).json()["result"]
        assert {x["id"] for x in listed} == set(ids[:2])
        assert len(c.get(url, params={"status": "active"}).json()["result"]) == 5
        assert c.get(url, params={"status": "revoked"}).json()["result"] == []
        assert len(c.get(url, params={"status": "all"}).json()["result"]) == 7
        error_of(c.get(url, params={"status": "gone"}), 400, 1001, "status must be one of")
        error_of(c.get(url, params={"per_page": 2}), 400, 1001, "per_page must be between 5")
        error_of(c.get(url, params={"page": 0}), 400, 1001, "page must be 1 or more")
        error_of(c.get(url, params={"limit": 3}), 400, 1001, "use page and per_page")

        error_of(c.get(f"{url}/{'0' * 32}"), 404, 1476, "not found")
        error_of(c.delete(f"{url}/{'0' * 32}"), 404, 1476, "not found")
        r = c.get(f"{url}/not-an-id")
        assert r.status_code == 400 and r.json()["errors"][0]["code"] == 7003
        # A certificate of one zone is not reachable through another zone of the account.
        other = gateway.zones["other.org"]
        error_of(c.get(f"/zones/{other}/client_certificates/{ids[0]}"), 404, 1476, "not found")
        error_of(c.patch(f"{url}/{ids[0]}", json={"reactivate": False}), 400, 1001, "DELETE")

    # The official SDK pages through everything (it asks until a page comes back empty).
    cf = gateway.sdk()
    seen = [x.id for x in cf.client_certificates.list(zone_id=zone, per_page=5)]
    assert seen == ids
    statuses = [x.status for x in cf.client_certificates.list(zone_id=zone, status="active")]
    assert statuses == ["active"] * 5


def test_permissions_and_other_accounts(gateway: Gateway, tmp_path: Path) -> None:
    zone = gateway.zone_id
    url = f"/zones/{zone}/client_certificates"
    with gateway.http() as c:
        r = c.post(url, json={"csr": ec_csr(tmp_path, "a"), "validity_days": 10})
        assert r.status_code == 200, r.text
        cert_id = r.json()["result"]["id"]
    one = f"{url}/{cert_id}"

    reader = gateway.cli_json("token", "create", "--permission", ZONE_SSL_READ, "--zone", zone)
    with gateway.http(reader["api_token"]) as c:
        assert c.get(url).status_code == 200
        assert c.get(one).json()["result"]["id"] == cert_id
        for r in (
            c.post(url, json={"csr": ec_csr(tmp_path, "b"), "validity_days": 10}),
            c.delete(one),
            c.patch(one),
        ):
            error_of(r, 403, 10000, "Authentication error")
    dns_only = gateway.cli_json("token", "create", "--permission", "DNS Write", "--zone", zone)
    with gateway.http(dns_only["api_token"]) as c:
        error_of(c.get(url), 403, 10000, "Authentication error")

    b = gateway.cli_json("account", "create", "--name", "B", "--zone", "b.test")
    with gateway.http(b["api_token"]) as c:
        for r in (
            c.get(url),
            c.get(one),
            c.delete(one),
            c.patch(one, json={"reactivate": True}),
            c.post(url, json={"csr": ec_csr(tmp_path, "c"), "validity_days": 10}),
        ):
            error_of(r, 403, 10000, "Authentication error")
        # B's own zone lists only B's certificates, signed by B's own managed CA.
        b_url = f"/zones/{b['zones']['b.test']}/client_certificates"
        assert c.get(b_url).json()["result"] == []
        r = c.post(b_url, json={"csr": ec_csr(tmp_path, "d"), "validity_days": 10})
        assert r.status_code == 200, r.text
        b_ca = r.json()["result"]["certificate_authority"]
        assert b_ca["name"] == "Managed CA for B"
        error_of(c.get(f"{b_url}/{cert_id}"), 404, 1476, "not found")
    with gateway.http() as c:
        a_cert = c.get(one).json()["result"]
        assert a_cert["status"] == "active"  # B's DELETE did nothing
        assert a_cert["certificate_authority"]["id"] != b_ca["id"]
        assert re.fullmatch(r"[0-9a-f]{32}", a_cert["id"])


def _raw_subject_csr(*attrs: tuple[x509.ObjectIdentifier, str]) -> str:
    """A CSR whose subject values are sent as given (cryptography, not validated): what a
    hostile or broken client can send."""
    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(oid, v, _validate=False) for oid, v in attrs])
    csr = x509.CertificateSigningRequestBuilder().subject_name(name).sign(key, hashes.SHA256())
    return csr.public_bytes(serialization.Encoding.PEM).decode()


def test_subject_values_are_refused_not_cut(gateway: Gateway, tmp_path: Path) -> None:
    """A NUL (which PostgreSQL refuses in text), CR/LF (header injection downstream) and
    values over the X.520 bounds get a 400 naming the attribute; nothing is stored."""
    url = f"/zones/{gateway.zone_id}/client_certificates"
    cn, org = NameOID.COMMON_NAME, NameOID.ORGANIZATION_NAME
    sha1_key = tmp_path / "s1.key"
    openssl("genpkey", "-algorithm", "RSA", "-pkeyopt", "rsa_keygen_bits:2048", "-out",
            str(sha1_key))  # fmt: skip
    sha1 = openssl("req", "-new", "-sha1", "-key", str(sha1_key), "-subj", "/CN=old")
    cases = [
        (_raw_subject_csr((cn, "a\x00b")), 1474, "common name (CN) contains the control"),
        (_raw_subject_csr((cn, "ok"), (org, "o\x00")), 1474, "organization (O) contains"),
        (_raw_subject_csr((cn, "evil\r\nX-Injected: 1")), 1474, "U+000D"),
        (_raw_subject_csr((cn, "ok"), (org, "\u00e9" * 300)), 1474,
         "organization (O) must be 1 to 64 characters"),
        (make_csr(tmp_path, "tab", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:P-256",
                  subject="/CN=a\tb"), 1474, "(CN) contains the control character U+0009"),
        (_raw_subject_csr((cn, "x"), (NameOID.COUNTRY_NAME, "USA")), 1474,
         "country (C) must be a two-letter"),
        (sha1, 1471, "unsupported signature algorithm (SHA-1)"),
    ]  # fmt: skip
    with gateway.http() as c:
        for csr, code, text in cases:
            error_of(c.post(url, json={"csr": csr, "validity_days": 3}), 400, code, text)
        assert c.get(url).json()["result_info"]["total_count"] == 0
        # At the bounds: accepted and shown exactly as signed.
        csr = _raw_subject_csr((cn, "c" * 64), (org, "\u00e9" * 64))
        r = c.post(url, json={"csr": csr, "validity_days": 3})
        assert r.status_code == 200, r.text
        assert r.json()["result"]["organization"] == "\u00e9" * 64


def test_issuing_does_not_bump_the_config_version(gateway: Gateway, tmp_path: Path) -> None:
    """A new certificate changes nothing the edge enforces: no config version (no edge
    rebuild), and it is active at once. Revoking does bump it."""
    url = f"/zones/{gateway.zone_id}/client_certificates"
    explain = f"/zones/{gateway.zone_id}/mtls/explain"
    body = {"hostname": "api.example.com", "certificates": ""}
    with gateway.http() as c:

        def version() -> int:
            r = c.post(explain, json=body)
            assert r.status_code == 200, r.text
            return int(r.json()["result"]["config_version"])

        before = version()
        for i in range(3):
            r = c.post(url, json={"csr": ec_csr(tmp_path, f"v{i}"), "validity_days": 3})
            assert r.status_code == 200, r.text
            assert r.json()["result"]["status"] == "active"
        assert version() == before
        cert_id = r.json()["result"]["id"]
        assert c.get(f"{url}/{cert_id}").json()["result"]["status"] == "active"
        assert c.delete(f"{url}/{cert_id}").json()["result"]["status"] == "pending_revocation"
        assert version() == before + 1
