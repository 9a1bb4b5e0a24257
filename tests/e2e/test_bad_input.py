"""Bad input against a real `mtlsgate serve` (SQLite and PostgreSQL): every rejection is a v4
envelope with the right status and code, a message a person understands, and nothing half-written.

Most cases are independent rejections, so they share one gateway per backend (module scope);
tests that change the account (plan, quota) get their own `gateway`.
"""

from __future__ import annotations

import json
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import httpx
import pytest

from tests.certs import (
    CertFiles,
    openssl,
    openssl_csr,
    openssl_dated_ca,
    openssl_encrypted_key,
    openssl_intermediate,
    openssl_leaf,
    openssl_root,
    openssl_v1_cert,
)
from tests.harness import Gateway, init_gateway

MAX_BODY = 1024 * 1024
ASSOC = "/zones/{Z}/certificate_authorities/hostname_associations"
CERTS = "/accounts/{A}/mtls_certificates"


# --- envelope helpers ---------------------------------------------------------------------------


def assert_error(
    r: httpx.Response, status: int, code: int, *, contains: str | None = None
) -> dict[str, Any]:
    """The response is the v4 error envelope with `status` and first error `code`."""
    where = f"{r.request.method} {r.request.url}"
    assert r.status_code == status, f"{where}: expected {status}, got {r.status_code}: {r.text}"
    assert r.headers.get("content-type", "").startswith("application/json"), (where, r.headers)
    body = r.json()
    assert set(body) == {"success", "errors", "messages", "result"}, (where, body)
    assert body["success"] is False, (where, body)
    assert body["result"] is None, (where, body)
    assert body["messages"] == [], (where, body)
    errors = body["errors"]
    assert isinstance(errors, list) and errors, (where, body)
    for err in errors:
        assert isinstance(err.get("code"), int) and err["code"] >= 1000, (where, err)
        message = err.get("message")
        assert isinstance(message, str) and len(message) >= 10, (where, err)
        assert "Traceback" not in message and "<html" not in message.lower(), (where, err)
    assert errors[0]["code"] == code, f"{where}: expected code {code}: {errors}"
    if contains is not None:
        assert contains.lower() in errors[0]["message"].lower(), (where, errors)
    return dict(errors[0])


def assert_ok(r: httpx.Response, status: int = 200) -> dict[str, Any]:
    where = f"{r.request.method} {r.request.url}"
    assert r.status_code == status, f"{where}: expected {status}, got {r.status_code}: {r.text}"
    body = r.json()
    assert body["success"] is True and body["errors"] == [], (where, body)
    return dict(body)


def assert_not_server_error(r: httpx.Response) -> None:
    """For input with no single right answer: any 2xx/4xx envelope, never a 5xx."""
    where = f"{r.request.method} {r.request.url}"
    assert r.status_code < 500, f"{where}: server error {r.status_code}: {r.text}"
    body = r.json()
    assert set(body) >= {"success", "errors", "messages", "result"}, (where, body)


def snapshot(gw: Gateway) -> dict[str, Any]:
    """Everything a rejected write could have half-written: certificates (full objects), their
    associations, and the managed CA's hostnames in every zone."""
    with gw.http() as c:
        certs = assert_ok(c.get(f"/accounts/{gw.account_id}/mtls_certificates"))["result"]
        state: dict[str, Any] = {"certs": certs, "assoc": {}, "managed": {}}
        for cert in certs:
            r = c.get(f"/accounts/{gw.account_id}/mtls_certificates/{cert['id']}/associations")
            state["assoc"][cert["id"]] = assert_ok(r)["result"]
        for name, zone_id in gw.zones.items():
            r = c.get(f"/zones/{zone_id}/certificate_authorities/hostname_associations")
            state["managed"][name] = assert_ok(r)["result"]["hostnames"]
    return state


def fill(gw: Gateway, path: str) -> str:
    return path.format(A=gw.account_id, Z=gw.zones["example.com"], O=gw.zones["other.org"])


# --- certificates made with the openssl CLI ------------------------------------------------------


@dataclass
class Pki:
    root: CertFiles
    inter: CertFiles
    leaf: CertFiles
    other_root: CertFiles
    csr: CertFiles
    v1: CertFiles
    pss: CertFiles
    ed25519: CertFiles
    sha1: CertFiles
    weak: CertFiles
    expired: CertFiles
    forms: list[CertFiles] = field(default_factory=list)


@pytest.fixture(scope="module")
def pki(tmp_path_factory: pytest.TempPathFactory) -> Pki:
    tmp = tmp_path_factory.mktemp("pki")
    root = openssl_root(tmp, cn="Bad Input Root")
    inter = openssl_intermediate(tmp, root, cn="Bad Input Intermediate")
    now = datetime.now(UTC)
    return Pki(
        root=root,
        inter=inter,
        leaf=openssl_leaf(tmp, inter, cn="Bad Input Client"),
        other_root=openssl_root(tmp, cn="Unrelated Root", kind="ec"),
        csr=openssl_csr(tmp, cn="A CSR"),
        v1=openssl_v1_cert(tmp),
        pss=openssl_root(tmp, cn="PSS Root", pss=True),
        ed25519=openssl_root(tmp, cn="Ed25519 Root", kind="ed25519"),
        sha1=openssl_root(tmp, cn="SHA1 Root", digest="sha1"),
        weak=openssl_root(tmp, cn="Weak Root", bits=1024),
        expired=openssl_dated_ca(
            tmp, not_before=now - timedelta(days=730), not_after=now - timedelta(days=365)
        ),
        forms=[openssl_root(tmp, cn=f"Form Root {i}", kind="ec") for i in range(3)],
    )


@pytest.fixture(scope="module", params=["sqlite", "postgres"])
def gw(
    request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[Gateway]:
    """One gateway per backend shared by the independent cases of this module."""
    database_url = None
    if request.param == "postgres":
        database_url = request.getfixturevalue("pg").create_database(f"bad{uuid.uuid4().hex[:12]}")
    data = tmp_path_factory.mktemp(f"gw-{request.param}") / "data"
    gateway = init_gateway(data, database_url, zones=("example.com", "other.org"))
    # Many successful (warned) CA uploads happen here; the quota has its own test.
    gateway.cli("account", "set-ca-quota", "--account", gateway.account_id, "--quota", "1000")
    gateway.start()
    try:
        yield gateway
    finally:
        gateway.stop()


@pytest.fixture(scope="module")
def leaf_upload_id(gw: Gateway, pki: Pki) -> str:
    """A `ca: false` upload in the shared gateway."""
    with gw.http() as c:
        body = {"ca": False, "certificates": pki.leaf.cert_pem, "name": "leaf"}
        return str(assert_ok(c.post(fill(gw, CERTS), json=body))["result"]["id"])


def upload(c: httpx.Client, gw: Gateway, **body: Any) -> httpx.Response:
    return c.post(fill(gw, CERTS), json=body)


# --- one rejection per case ----------------------------------------------------------------------

Body = Callable[[Pki], Any]
JSON_CT = {"content-type": "application/json"}


@dataclass(frozen=True)
class Case:
    method: str
    path: str
    status: int
    code: int
    json: Body | None = None
    content: bytes | None = None
    headers: dict[str, str] | None = None
    contains: str | None = None


def _key_in_certs(p: Pki) -> dict[str, Any]:
    return {"ca": True, "certificates": p.root.cert_pem + p.root.key_pem}


def _garbage_b64(p: Pki) -> dict[str, Any]:
    return {
        "ca": True,
        "certificates": "-----BEGIN CERTIFICATE-----\n!!not*base64~~\n-----END CERTIFICATE-----\n",
    }


CASES: dict[str, Case] = {
    # JSON and body shape
    "malformed-json-upload": Case(
        "POST", CERTS, 400, 1002, content=b'{"ca": true,', headers=JSON_CT, contains="JSON"
    ),
    "malformed-json-put": Case(
        "PUT", ASSOC, 400, 1002, content=b"{hostnames: [}", headers=JSON_CT, contains="JSON"
    ),
    # A JSON object sent as a form (curl -d without -H): the message must say what is wrong.
    # Bodies are read as JSON whatever the Content-Type (curl -d sends a form type): this one
    # gets as far as certificate validation.
    "json-object-with-form-content-type": Case(
        "POST",
        CERTS,
        400,
        1401,
        content=b'{"ca": true, "certificates": "x"}',
        headers={"content-type": "application/x-www-form-urlencoded"},
    ),
    "invalid-utf8-body": Case(
        "POST",
        CERTS,
        400,
        1002,
        content=b'{"ca": true, "certificates": "\xff\xfe"}',
        headers=JSON_CT,
    ),
    "body-is-array": Case("POST", CERTS, 400, 1001, json=lambda p: [], contains="JSON object"),
    "body-is-string": Case("POST", CERTS, 400, 1001, json=lambda p: "ca", contains="JSON object"),
    "body-is-number-put": Case("PUT", ASSOC, 400, 1001, json=lambda p: 5, contains="JSON object"),
    "body-is-null": Case("POST", CERTS, 400, 1001, content=b"null", headers=JSON_CT),
    "body-empty": Case("POST", CERTS, 400, 1001, content=b"", headers=JSON_CT),
    "ca-is-string": Case(
        "POST",
        CERTS,
        400,
        1001,
        json=lambda p: {"ca": "yes", "certificates": p.root.cert_pem},
        contains="ca",
    ),
    "ca-is-number": Case(
        "POST", CERTS, 400, 1001, json=lambda p: {"ca": 1, "certificates": p.root.cert_pem}
    ),
    "certificates-is-number": Case(
        "POST",
        CERTS,
        400,
        1001,
        json=lambda p: {"ca": True, "certificates": 5},
        contains="certificates",
    ),
    "certificates-is-list": Case(
        "POST", CERTS, 400, 1001, json=lambda p: {"ca": True, "certificates": [p.root.cert_pem]}
    ),
    "name-is-number": Case(
        "POST",
        CERTS,
        400,
        1001,
        json=lambda p: {"ca": True, "certificates": p.root.cert_pem, "name": 7},
        contains="name",
    ),
    "name-too-long": Case(
        "POST",
        CERTS,
        400,
        1001,
        json=lambda p: {"ca": True, "certificates": p.root.cert_pem, "name": "n" * 256},
        contains="name",
    ),
    "private-key-is-bool": Case(
        "POST",
        CERTS,
        400,
        1001,
        json=lambda p: {"ca": False, "certificates": p.leaf.cert_pem, "private_key": True},
    ),
    "hostnames-is-string": Case(
        "PUT",
        ASSOC,
        400,
        1001,
        json=lambda p: {"hostnames": "a.example.com"},
        contains="hostnames",
    ),
    "hostnames-with-number": Case(
        "PUT",
        ASSOC,
        400,
        1001,
        json=lambda p: {"hostnames": ["a.example.com", 5]},
        contains="hostnames",
    ),
    "hostnames-with-null": Case(
        "PUT", ASSOC, 400, 1001, json=lambda p: {"hostnames": ["a.example.com", None]}
    ),
    "mtls-certificate-id-is-number": Case(
        "PUT", ASSOC, 400, 1001, json=lambda p: {"hostnames": [], "mtls_certificate_id": 5}
    ),
    "unknown-field-upload": Case(
        "POST",
        CERTS,
        400,
        1001,
        json=lambda p: {"ca": True, "certificates": p.root.cert_pem, "bundle_method": "x"},
        contains="bundle_method",
    ),
    "unknown-field-put": Case(
        "PUT",
        ASSOC,
        400,
        1001,
        json=lambda p: {"hostnames": [], "enabled": True},
        contains="enabled",
    ),
    "missing-ca": Case(
        "POST",
        CERTS,
        400,
        1001,
        json=lambda p: {"certificates": p.root.cert_pem},
        contains="ca is required",
    ),
    "missing-certificates": Case(
        "POST",
        CERTS,
        400,
        1001,
        json=lambda p: {"ca": True},
        contains="certificates is required",
    ),
    "missing-hostnames": Case(
        "PUT", ASSOC, 400, 1001, json=lambda p: {}, contains="hostnames is required"
    ),
    # ids that are not ids
    "account-id-not-hex": Case("GET", "/accounts/not-an-account", 400, 7003),
    "account-id-uppercase": Case("GET", "/accounts/{A}/mtls_certificates", 400, 7003),
    "account-id-short-upload": Case(
        "POST",
        "/accounts/abc123/mtls_certificates",
        400,
        7003,
        json=lambda p: {"ca": True, "certificates": p.root.cert_pem},
    ),
    "zone-id-garbage": Case("GET", "/zones/zone!garbage", 400, 7003),
    "zone-id-garbage-assoc-get": Case(
        "GET", "/zones/xyz/certificate_authorities/hostname_associations", 400, 7003
    ),
    "zone-id-garbage-assoc-put": Case(
        "PUT",
        "/zones/0123456789abcdef/certificate_authorities/hostname_associations",
        400,
        7003,
        json=lambda p: {"hostnames": []},
    ),
    "cert-id-not-uuid-get": Case("GET", CERTS + "/not-a-uuid", 400, 7003),
    "cert-id-not-uuid-delete": Case("DELETE", CERTS + "/1234", 400, 7003),
    "cert-id-not-uuid-associations": Case(
        "GET", CERTS + "/zzzzzzzz-zzzz-zzzz-zzzz-zzzzzzzzzzzz/associations", 400, 7003
    ),
    "cert-id-unknown-uuid": Case("GET", CERTS + "/00000000-0000-4000-8000-000000000000", 404, 1404),
    # routes and methods
    "unknown-route": Case("GET", "/nope", 404, 7003, contains="Could not route"),
    "unknown-subroute": Case("GET", "/accounts/{A}/widgets", 404, 7003),
    "unknown-zone-subroute": Case("GET", "/zones/{Z}/certificate_authorities", 404, 7003),
    "post-accounts": Case("POST", "/accounts", 405, 7001, json=lambda p: {}),
    "patch-certificates": Case("PATCH", CERTS, 405, 7001, json=lambda p: {}),
    "put-certificate": Case(
        "PUT", CERTS + "/00000000-0000-4000-8000-000000000000", 405, 7001, json=lambda p: {}
    ),
    "delete-associations": Case("DELETE", ASSOC, 405, 7001),
    "post-associations": Case("POST", ASSOC, 405, 7001, json=lambda p: {"hostnames": []}),
    "post-verify": Case("POST", "/user/tokens/verify", 405, 7001),
    # hostnames
    **{
        f"invalid-hostname-{i}": Case(
            "PUT", ASSOC, 400, 1003, json=lambda p, h=h: {"hostnames": ["ok.example.com", h]}
        )
        for i, h in enumerate(
            [
                "-bad.example.com",
                "bad-.example.com",
                "a..example.com",
                "exa mple.example.com",
                "*.*.example.com",
                "foo.*.example.com",
                "f*o.example.com",
                "",
                "localhost",
                "x" * 64 + ".example.com",
                "under_score.example.com",
                "bücher..example.com",
            ]
        )
    },
    **{
        f"hostname-outside-zone-{i}": Case(
            "PUT", ASSOC, 400, 1004, json=lambda p, h=h: {"hostnames": ["ok.example.com", h]}
        )
        for i, h in enumerate(
            ["a.other.org", "notexample.com", "example.com.evil.org", "*.other.org", "example.net"]
        )
    },
    "too-many-hostnames": Case(
        "PUT",
        ASSOC,
        400,
        1001,
        json=lambda p: {"hostnames": [f"h{i}.example.com" for i in range(1001)]},
    ),
    "mtls-certificate-id-unknown": Case(
        "PUT",
        ASSOC,
        400,
        1005,
        json=lambda p: {
            "hostnames": ["a.example.com"],
            "mtls_certificate_id": "00000000-0000-4000-8000-000000000000",
        },
    ),
    "mtls-certificate-id-not-uuid": Case(
        "PUT",
        ASSOC,
        400,
        1005,
        json=lambda p: {"hostnames": ["a.example.com"], "mtls_certificate_id": "not-a-uuid"},
    ),
    "mtls-certificate-id-not-uuid-get": Case(
        "GET", ASSOC + "?mtls_certificate_id=12345", 400, 1005
    ),
    # uploads refused after inspecting real openssl certificates
    "not-pem": Case(
        "POST", CERTS, 400, 1401, json=lambda p: {"ca": True, "certificates": "hello world"}
    ),
    "empty-certificates": Case(
        "POST", CERTS, 400, 1401, json=lambda p: {"ca": True, "certificates": ""}
    ),
    "der-as-base64-without-pem": Case(
        "POST",
        CERTS,
        400,
        1401,
        json=lambda p: {"ca": True, "certificates": "".join(p.root.cert_pem.splitlines()[1:-1])},
    ),
    "garbage-base64": Case("POST", CERTS, 400, 1401, json=_garbage_b64),
    "base64-not-a-certificate": Case(
        "POST",
        CERTS,
        400,
        1401,
        json=lambda p: {
            "ca": True,
            "certificates": "-----BEGIN CERTIFICATE-----\n"
            "aGVsbG8gd29ybGQsIHRoaXMgaXMgbm90IGEgY2VydGlmaWNhdGU=\n"
            "-----END CERTIFICATE-----\n",
        },
    ),
    "truncated-pem": Case(
        "POST",
        CERTS,
        400,
        1401,
        json=lambda p: {"ca": True, "certificates": p.root.cert_pem.rsplit("-----END", 1)[0]},
    ),
    "mismatched-pem-labels": Case(
        "POST",
        CERTS,
        400,
        1401,
        json=lambda p: {
            "ca": True,
            "certificates": p.root.cert_pem.replace("END CERTIFICATE", "END X509 CRL"),
        },
    ),
    "csr-in-certificates": Case(
        "POST",
        CERTS,
        400,
        1404,
        json=lambda p: {"ca": True, "certificates": p.csr.cert_pem},
        contains="CSR",
    ),
    "private-key-in-certificates": Case(
        "POST", CERTS, 400, 1404, json=_key_in_certs, contains="private_key"
    ),
    "leaf-as-ca": Case(
        "POST",
        CERTS,
        400,
        1402,
        json=lambda p: {"ca": True, "certificates": p.leaf.cert_pem},
        contains="not a CA",
    ),
    "leaf-first-in-ca-bundle": Case(
        "POST",
        CERTS,
        400,
        1402,
        json=lambda p: {"ca": True, "certificates": p.leaf.cert_pem + p.inter.cert_pem},
    ),
    "v1-cert-as-ca": Case(
        "POST",
        CERTS,
        400,
        1402,
        json=lambda p: {"ca": True, "certificates": p.v1.cert_pem},
        contains="Basic Constraints",
    ),
    "rsa-pss-signature": Case(
        "POST",
        CERTS,
        400,
        1403,
        json=lambda p: {"ca": True, "certificates": p.pss.cert_pem},
        contains="PSS",
    ),
    "ed25519-signature": Case(
        "POST",
        CERTS,
        400,
        1403,
        json=lambda p: {"ca": True, "certificates": p.ed25519.cert_pem},
        contains="Ed25519",
    ),
    "ed25519-signature-not-ca": Case(
        "POST",
        CERTS,
        400,
        1403,
        json=lambda p: {"ca": False, "certificates": p.ed25519.cert_pem},
    ),
    "unrelated-two-ca-bundle": Case(
        "POST",
        CERTS,
        400,
        1406,
        json=lambda p: {"ca": True, "certificates": p.root.cert_pem + p.other_root.cert_pem},
    ),
    "chain-in-wrong-order": Case(
        "POST",
        CERTS,
        400,
        1406,
        json=lambda p: {"ca": True, "certificates": p.root.cert_pem + p.inter.cert_pem},
    ),
    "private-key-not-matching": Case(
        "POST",
        CERTS,
        400,
        1405,
        json=lambda p: {
            "ca": False,
            "certificates": p.leaf.cert_pem,
            "private_key": p.root.key_pem,
        },
        contains="does not match",
    ),
    "private-key-not-matching-ca": Case(
        "POST",
        CERTS,
        400,
        1405,
        json=lambda p: {
            "ca": True,
            "certificates": p.root.cert_pem,
            "private_key": p.inter.key_pem,
        },
    ),
    "private-key-encrypted-pkcs8": Case(
        "POST",
        CERTS,
        400,
        1405,
        json=lambda p: {
            "ca": False,
            "certificates": p.leaf.cert_pem,
            "private_key": openssl_encrypted_key(p.leaf),
        },
        contains="encrypted",
    ),
    "private-key-encrypted-legacy": Case(
        "POST",
        CERTS,
        400,
        1405,
        json=lambda p: {
            "ca": False,
            "certificates": p.leaf.cert_pem,
            "private_key": openssl_encrypted_key(p.leaf, legacy=True),
        },
        contains="encrypted",
    ),
    "private-key-garbage": Case(
        "POST",
        CERTS,
        400,
        1405,
        json=lambda p: {"ca": False, "certificates": p.leaf.cert_pem, "private_key": "hunter2"},
    ),
    "private-key-is-a-certificate": Case(
        "POST",
        CERTS,
        400,
        1405,
        json=lambda p: {
            "ca": False,
            "certificates": p.leaf.cert_pem,
            "private_key": p.leaf.cert_pem,
        },
    ),
    "private-key-two-keys": Case(
        "POST",
        CERTS,
        400,
        1405,
        json=lambda p: {
            "ca": False,
            "certificates": p.leaf.cert_pem,
            "private_key": p.leaf.key_pem + p.root.key_pem,
        },
    ),
}


@pytest.mark.parametrize("name", list(CASES))
def test_rejected(gw: Gateway, pki: Pki, name: str) -> None:
    case = CASES[name]
    path = fill(gw, case.path)
    if name == "account-id-uppercase":
        path = path.replace(gw.account_id, gw.account_id.upper())
    before = snapshot(gw)
    kwargs: dict[str, Any] = {"headers": case.headers}
    if case.json is not None:
        kwargs["json"] = case.json(pki)
    elif case.content is not None:
        kwargs["content"] = case.content
    with gw.http() as c:
        r = c.request(case.method, path, **kwargs)
    err = assert_error(r, case.status, case.code, contains=case.contains)
    # Secret material sent by mistake is never echoed back.
    for key in (pki.root.key_pem, pki.inter.key_pem, pki.leaf.key_pem):
        assert key.splitlines()[1] not in r.text, err
    assert snapshot(gw) == before, "a rejected request changed the stored state"


def test_ca_false_certificate_cannot_be_associated(
    gw: Gateway, pki: Pki, leaf_upload_id: str
) -> None:
    before = snapshot(gw)
    with gw.http() as c:
        body = {"hostnames": ["a.example.com"], "mtls_certificate_id": leaf_upload_id}
        assert_error(c.put(fill(gw, ASSOC), json=body), 400, 1006, contains="ca: false")
        r = c.get(fill(gw, ASSOC), params={"mtls_certificate_id": leaf_upload_id})
        assert_error(r, 400, 1006)
    assert snapshot(gw) == before


def test_body_too_large(gw: Gateway) -> None:
    before = snapshot(gw)
    big = b'{"ca": true, "certificates": "' + b"A" * (10 * 1024 * 1024) + b'"}'
    with gw.http() as c:
        r = c.post(fill(gw, CERTS), content=big, headers=JSON_CT)
    assert r.request.headers["content-length"] == str(len(big))
    assert_error(r, 413, 1413, contains=str(MAX_BODY))

    def chunks() -> Iterator[bytes]:
        yield b'{"ca": true, "certificates": "'
        for _ in range(160):
            yield b"A" * 65536
        yield b'"}'

    with gw.http() as c:
        r = c.post(fill(gw, CERTS), content=chunks(), headers=JSON_CT)
    assert "content-length" not in r.request.headers
    assert r.request.headers["transfer-encoding"] == "chunked"
    assert_error(r, 413, 1413)
    # Just over the limit on a PUT too; the server keeps serving afterwards.
    with gw.http() as c:
        hostnames = json.dumps({"hostnames": ["a" * 60 + ".example.com"] * 20000}).encode()
        assert len(hostnames) > MAX_BODY
        assert_error(c.put(fill(gw, ASSOC), content=hostnames, headers=JSON_CT), 413, 1413)
        assert_ok(c.get("/user/tokens/verify"))
    assert snapshot(gw) == before


def test_unicode_hostnames(gw: Gateway) -> None:
    with gw.http() as c:
        body = {"hostnames": ["bücher.example.com", "BÜCHER.example.com.", "*.Example.COM"]}
        r = assert_ok(c.put(fill(gw, ASSOC), json=body))
        assert r["result"]["hostnames"] == ["*.example.com", "xn--bcher-kva.example.com"]
        listed = assert_ok(c.get(fill(gw, ASSOC)))["result"]["hostnames"]
        assert listed == ["*.example.com", "xn--bcher-kva.example.com"]
        # The zone apex itself is in the zone.
        r = assert_ok(c.put(fill(gw, ASSOC), json={"hostnames": ["example.com"]}))
        assert r["result"]["hostnames"] == ["example.com"]
        assert_ok(c.put(fill(gw, ASSOC), json={"hostnames": []}))
        assert assert_ok(c.get(fill(gw, ASSOC)))["result"]["hostnames"] == []


# --- accepted uploads: warnings, PEM forms, private keys -----------------------------------------


def _message_codes(body: dict[str, Any]) -> list[int]:
    return [m["code"] for m in body["messages"]]


@pytest.mark.parametrize(("which", "code"), [("sha1", 1450), ("weak", 1451), ("expired", 1452)])
def test_warning_does_not_reject(gw: Gateway, pki: Pki, which: str, code: int) -> None:
    cert: CertFiles = getattr(pki, which)
    with gw.http() as c:
        body = assert_ok(upload(c, gw, ca=True, certificates=cert.cert_pem, name=which))
        assert code in _message_codes(body), body["messages"]
        for m in body["messages"]:
            assert isinstance(m["message"], str) and len(m["message"]) > 10
        cert_id = body["result"]["id"]
        got = assert_ok(c.get(fill(gw, CERTS) + f"/{cert_id}"))["result"]
        assert got["certificates"] == cert.cert_pem.strip()
        if which == "sha1":
            assert got["signature"] == "SHA1WithRSA"


def test_duplicate_upload_warns(gw: Gateway, pki: Pki) -> None:
    with gw.http() as c:
        first = assert_ok(upload(c, gw, ca=True, certificates=pki.inter.cert_pem))
        second = assert_ok(upload(c, gw, ca=True, certificates=pki.inter.cert_pem))
    assert 1455 in _message_codes(second), second["messages"]
    dup = next(m for m in second["messages"] if m["code"] == 1455)
    assert first["result"]["id"] in dup["message"]
    assert second["result"]["id"] != first["result"]["id"]


@pytest.mark.parametrize("form", ["newlines", "crlf", "escaped"])
def test_pem_forms_accepted(gw: Gateway, pki: Pki, form: str) -> None:
    def encode(pem: str) -> str:
        if form == "crlf":
            return pem.replace("\n", "\r\n")
        if form == "escaped":
            return pem.replace("\n", "\\n")  # the two characters backslash and n
        return pem

    cert = pki.forms[["newlines", "crlf", "escaped"].index(form)]
    with gw.http() as c:
        body = assert_ok(upload(c, gw, ca=True, certificates=encode(cert.cert_pem)))
        assert body["result"]["certificates"] == cert.cert_pem.strip()
        # A key in the same form is accepted too (ca: false with a matching key).
        body = assert_ok(
            upload(
                c,
                gw,
                ca=False,
                certificates=encode(cert.cert_pem),
                private_key=encode(cert.key_pem),
            )
        )
        assert "PRIVATE KEY" not in json.dumps(body)


def test_private_key_never_returned(gw: Gateway, pki: Pki, tmp_path: Path) -> None:
    key_lines = [ln for ln in pki.leaf.key_pem.splitlines() if "-----" not in ln]
    pkcs1 = openssl("pkey", "-in", pki.leaf.key_path, "-traditional")
    pkcs1_lines = [ln for ln in pkcs1.splitlines() if "-----" not in ln]

    def assert_no_key(r: httpx.Response) -> None:
        assert "PRIVATE KEY" not in r.text and "private_key" not in r.text, r.text
        for line in key_lines + pkcs1_lines:
            assert line not in r.text

    with gw.http() as c:
        r = upload(
            c,
            gw,
            ca=False,
            certificates=pki.leaf.cert_pem,
            private_key=pki.leaf.key_pem,
            name="with key",
        )
        assert_ok(r)
        assert_no_key(r)
        cert_id = r.json()["result"]["id"]
        r2 = upload(c, gw, ca=False, certificates=pki.leaf.cert_pem, private_key=pkcs1)
        assert_ok(r2)
        assert_no_key(r2)
        for path in ("", f"/{cert_id}", f"/{cert_id}/associations"):
            r = c.get(fill(gw, CERTS) + path)
            assert_ok(r)
            assert_no_key(r)
        r = c.delete(fill(gw, CERTS) + f"/{r2.json()['result']['id']}")
        assert_ok(r)
        assert_no_key(r)


def test_delete_with_associations(gw: Gateway, pki: Pki, tmp_path: Path) -> None:
    ca = openssl_root(tmp_path, cn="In Use Root", kind="ec")
    with gw.http() as c:
        cert_id = assert_ok(upload(c, gw, ca=True, certificates=ca.cert_pem))["result"]["id"]
        for zone, names in (
            ("example.com", ["api.example.com", "*.example.com"]),
            ("other.org", ["www.other.org"]),
        ):
            path = f"/zones/{gw.zones[zone]}/certificate_authorities/hostname_associations"
            body = {"hostnames": names, "mtls_certificate_id": cert_id}
            assert assert_ok(c.put(path, json=body))["result"]["hostnames"] == sorted(names)
        before = snapshot(gw)
        r = c.delete(fill(gw, CERTS) + f"/{cert_id}")
        err = assert_error(r, 409, 1491)
        for name in ("api.example.com", "*.example.com", "www.other.org"):
            assert name in err["message"]
        assert snapshot(gw) == before
        assoc = assert_ok(c.get(fill(gw, CERTS) + f"/{cert_id}/associations"))["result"]
        assert sorted(a["hostname"] for a in assoc) == [
            "*.example.com",
            "api.example.com",
            "www.other.org",
        ]
        # Removing only one zone's associations is not enough.
        path = f"/zones/{gw.zones['example.com']}/certificate_authorities/hostname_associations"
        assert_ok(c.put(path, json={"hostnames": [], "mtls_certificate_id": cert_id}))
        err = assert_error(c.delete(fill(gw, CERTS) + f"/{cert_id}"), 409, 1491)
        assert "www.other.org" in err["message"] and "api.example.com" not in err["message"]
        path = f"/zones/{gw.zones['other.org']}/certificate_authorities/hostname_associations"
        assert_ok(c.put(path, json={"hostnames": [], "mtls_certificate_id": cert_id}))
        assert assert_ok(c.delete(fill(gw, CERTS) + f"/{cert_id}"))["result"]["id"] == cert_id
        assert_error(c.get(fill(gw, CERTS) + f"/{cert_id}"), 404, 1404)
        ids = [x["id"] for x in assert_ok(c.get(fill(gw, CERTS)))["result"]]
        assert cert_id not in ids


# --- input the storage layer must not turn into a 500 --------------------------------------------


def test_nul_character_in_name_is_not_a_server_error(gw: Gateway, pki: Pki) -> None:
    before = snapshot(gw)
    with gw.http() as c:
        r = upload(c, gw, ca=False, certificates=pki.leaf.cert_pem, name="bad\u0000name")
        assert_not_server_error(r)
        if r.status_code == 200:
            got = c.get(fill(gw, CERTS) + f"/{r.json()['result']['id']}")
            assert assert_ok(got)["result"]["name"] == "bad\u0000name"
        else:
            assert_error(r, 400, 1001)
            assert snapshot(gw) == before


def test_nul_character_in_zone_name_filter_is_not_a_server_error(gw: Gateway) -> None:
    with gw.http() as c:
        r = c.get("/zones", params={"name": "example.com\u0000"})
    assert_not_server_error(r)
    if r.status_code == 200:
        assert r.json()["result"] == []


def test_oversized_serial_number_is_not_a_server_error(gw: Gateway, tmp_path: Path) -> None:
    """RFC 5280 caps serials at 20 octets; a 40-octet one must be refused or stored, not 500."""
    cnf = tmp_path / "big.cnf"
    cnf.write_text(
        "[req]\ndistinguished_name=dn\nprompt=no\n[dn]\nCN=x\n[ext]\n"
        "basicConstraints=critical,CA:TRUE\nkeyUsage=critical,keyCertSign\n"
    )
    cert, key = tmp_path / "big.pem", tmp_path / "big.key"
    openssl(
        "req",
        "-x509",
        "-newkey",
        "rsa:2048",
        "-nodes",
        "-keyout",
        key,
        "-out",
        cert,
        "-subj",
        "/CN=Big Serial CA",
        "-days",
        "365",
        "-extensions",
        "ext",
        "-set_serial",
        "0x" + "7f" * 40,
        config=cnf,
    )
    before = snapshot(gw)
    with gw.http() as c:
        r = upload(c, gw, ca=True, certificates=cert.read_text())
    assert_not_server_error(r)
    if r.status_code == 200:
        assert r.json()["result"]["serial_number"] == str(int("7f" * 40, 16))
    else:
        assert_error(r, 400, 1401)
        assert snapshot(gw) == before


# --- account plan and CA quota (own gateway: they change the account) ----------------------------


def test_non_enterprise_account_cannot_upload_ca(gateway: Gateway, pki: Pki) -> None:
    gateway.cli("account", "set-plan", "--account", gateway.account_id, "--plan", "pro")
    before = snapshot(gateway)
    with gateway.http() as c:
        err = assert_error(upload(c, gateway, ca=True, certificates=pki.root.cert_pem), 403, 1490)
        assert "Enterprise" in err["message"]
        assert snapshot(gateway) == before
        body = assert_ok(upload(c, gateway, ca=False, certificates=pki.leaf.cert_pem))
        assert body["result"]["ca"] is False
    gateway.cli("account", "set-plan", "--account", gateway.account_id, "--plan", "enterprise")
    with gateway.http() as c:
        assert assert_ok(upload(c, gateway, ca=True, certificates=pki.root.cert_pem))


def test_ca_quota(gateway: Gateway, pki: Pki) -> None:
    gateway.cli("account", "set-ca-quota", "--account", gateway.account_id, "--quota", "2")
    with gateway.http() as c:
        assert_ok(upload(c, gateway, ca=False, certificates=pki.leaf.cert_pem))
        assert_ok(upload(c, gateway, ca=True, certificates=pki.root.cert_pem))
        assert_ok(upload(c, gateway, ca=True, certificates=pki.inter.cert_pem))
        before = snapshot(gateway)
        r = upload(c, gateway, ca=True, certificates=pki.other_root.cert_pem)
        err = assert_error(r, 400, 1489)
        assert err["message"] == "Hit maximum CA cert allocation."
        assert snapshot(gateway) == before
        # ca: false uploads do not count against the CA quota.
        assert_ok(upload(c, gateway, ca=False, certificates=pki.leaf.cert_pem))
        certs = assert_ok(c.get(fill(gateway, CERTS)))["result"]
        assert sorted(x["ca"] for x in certs) == [False, False, True, True]
        # Deleting a CA frees its slot.
        ca_id = next(x["id"] for x in certs if x["ca"])
        assert_ok(c.delete(fill(gateway, CERTS) + f"/{ca_id}"))
        assert_ok(upload(c, gateway, ca=True, certificates=pki.other_root.cert_pem))
