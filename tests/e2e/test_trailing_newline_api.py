"""Values ending in (or containing) a newline, through a real `mtlsgate serve` (SQLite and
PostgreSQL): every one is refused with the v4 error envelope the route uses for any malformed
value of that kind, and nothing is stored.

`re.match(r"^...$", s)` accepts `s + "\\n"`; before the fix "api\\n.example.com" was stored as a
hostname, and ids with a trailing `%0A` got past the id check. The function-level tests are in
tests/test_trailing_newline.py.
"""

from __future__ import annotations

import socket
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import httpx
import pytest

from tests.certs import openssl_root
from tests.harness import Gateway, init_gateway

ASSOC = "/zones/{Z}/certificate_authorities/hostname_associations"
CERTS = "/accounts/{A}/mtls_certificates"

BAD_HOSTNAMES = [
    "api\n.example.com",
    "api.example.com\n",
    "api.example.com.\n",
    "api.example.com\r\n",
    "\napi.example.com",
    "*.example.com\n",
    "api.example.com\nX-Injected: 1",
]
NEWLINES = ["%0A", "%0D%0A", "%0A%0A"]


def assert_error(
    r: httpx.Response, status: int, code: int, *, contains: str | None = None
) -> dict[str, Any]:
    """The response is the v4 error envelope with `status` and first error `code`."""
    where = f"{r.request.method} {r.request.url}"
    assert r.status_code == status, f"{where}: expected {status}, got {r.status_code}: {r.text}"
    assert r.headers.get("content-type", "").startswith("application/json"), (where, r.headers)
    body = r.json()
    assert set(body) == {"success", "errors", "messages", "result"}, (where, body)
    assert body["success"] is False and body["result"] is None, (where, body)
    errors = body["errors"]
    assert isinstance(errors, list) and errors, (where, body)
    for err in errors:
        assert isinstance(err.get("message"), str) and len(err["message"]) >= 10, (where, err)
    assert errors[0]["code"] == code, f"{where}: expected code {code}: {errors}"
    if contains is not None:
        assert contains.lower() in errors[0]["message"].lower(), (where, errors)
    return dict(errors[0])


def assert_ok(r: httpx.Response) -> dict[str, Any]:
    where = f"{r.request.method} {r.request.url}"
    assert r.status_code == 200, f"{where}: expected 200, got {r.status_code}: {r.text}"
    body = r.json()
    assert body["success"] is True and body["errors"] == [], (where, body)
    return dict(body)


def fill(gw: Gateway, path: str) -> str:
    return path.format(A=gw.account_id, Z=gw.zone_id)


def snapshot(gw: Gateway) -> dict[str, Any]:
    """What a rejected write could have changed: certificates, every association, DNS records."""
    with gw.http() as c:
        certs = assert_ok(c.get(fill(gw, CERTS)))["result"]
        state: dict[str, Any] = {"certs": certs, "assoc": {}}
        for cert in certs:
            r = c.get(fill(gw, CERTS) + f"/{cert['id']}/associations")
            state["assoc"][cert["id"]] = assert_ok(r)["result"]
        state["managed"] = assert_ok(c.get(fill(gw, ASSOC)))["result"]["hostnames"]
        state["dns"] = assert_ok(c.get(f"/zones/{gw.zone_id}/dns_records"))["result"]
    return state


@dataclass(frozen=True)
class World:
    gw: Gateway
    ca: str  # an uploaded CA, associated with ok.example.com


@pytest.fixture(scope="module", params=["sqlite", "postgres"])
def world(
    request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[World]:
    """One gateway per backend; the managed CA has managed.example.com, an uploaded CA has
    ok.example.com."""
    database_url = None
    if request.param == "postgres":
        database_url = request.getfixturevalue("pg").create_database(f"nl{uuid.uuid4().hex[:12]}")
    tmp = tmp_path_factory.mktemp(f"nl-{request.param}")
    gateway = init_gateway(tmp / "data", database_url, zones=("example.com", "other.org"))
    gateway.start()
    try:
        root = openssl_root(tmp, cn="Trailing Newline Root")
        with gateway.http() as c:
            body = {"ca": True, "certificates": root.cert_pem, "name": "nl"}
            r = c.post(fill(gateway, CERTS), json=body)
            assert r.status_code in (200, 201), r.text
            ca = str(r.json()["result"]["id"])
            assoc = {"hostnames": ["ok.example.com"], "mtls_certificate_id": ca}
            assert_ok(c.put(fill(gateway, ASSOC), json=assoc))
            assert_ok(c.put(fill(gateway, ASSOC), json={"hostnames": ["managed.example.com"]}))
        yield World(gateway, ca)
    finally:
        gateway.stop()


# --- hostnames in PUT hostname_associations ------------------------------------------------------


@pytest.mark.parametrize("hostname", BAD_HOSTNAMES)
@pytest.mark.parametrize("target", ["managed", "uploaded"])
def test_hostname_with_newline_refused_and_nothing_stored(
    world: World, hostname: str, target: str
) -> None:
    gw = world.gw
    before = snapshot(gw)
    body: dict[str, Any] = {"hostnames": ["ok.example.com", "new.example.com", hostname]}
    if target == "uploaded":
        body["mtls_certificate_id"] = world.ca
    with gw.http() as c:
        r = c.put(fill(gw, ASSOC), json=body)
    err = assert_error(r, 400, 1003, contains="is not a valid hostname")
    assert "control character" in err["message"], err
    assert repr(hostname) in err["message"], err  # shown escaped, e.g. 'api.example.com\n'
    assert "\n" not in err["message"] and "\r" not in err["message"], err
    assert snapshot(gw) == before, "a refused hostname changed the stored state"


def test_same_hostnames_without_newline_are_accepted(world: World) -> None:
    """The refusals above are about the newline, not the names."""
    gw = world.gw
    with gw.http() as c:
        body: dict[str, Any] = {
            "hostnames": ["ok.example.com", " api.example.com ", "*.example.com"],
            "mtls_certificate_id": world.ca,
        }
        r = assert_ok(c.put(fill(gw, ASSOC), json=body))
        assert r["result"]["hostnames"] == ["*.example.com", "api.example.com", "ok.example.com"]
        body["hostnames"] = ["ok.example.com"]
        assert_ok(c.put(fill(gw, ASSOC), json=body))


def test_dns_record_name_with_newline_refused(world: World) -> None:
    gw = world.gw
    before = snapshot(gw)
    with gw.http() as c:
        for name in ("a.example.com\n", "a\n.example.com"):
            r = c.post(
                f"/zones/{gw.zone_id}/dns_records",
                json={"type": "A", "name": name, "content": "10.0.0.1"},
            )
            assert_error(r, 400, 1003, contains="control character")
    assert snapshot(gw) == before


# --- ids in paths --------------------------------------------------------------------------------


def _path_cases(world: World) -> list[tuple[str, str]]:
    a, z, cert = world.gw.account_id, world.gw.zone_id, world.ca
    out: list[tuple[str, str]] = []
    for nl in NEWLINES:
        out += [
            ("GET", f"/accounts/{a}{nl}"),
            ("GET", f"/accounts/{a}{nl}/mtls_certificates"),
            ("GET", f"/zones/{z}{nl}"),
            ("GET", f"/zones/{z}{nl}/certificate_authorities/hostname_associations"),
            ("PUT", f"/zones/{z}{nl}/certificate_authorities/hostname_associations"),
            ("GET", f"/accounts/{a}/mtls_certificates/{cert}{nl}"),
            ("GET", f"/accounts/{a}/mtls_certificates/{cert.replace('-', '')}{nl}"),
            ("GET", f"/accounts/{a}/mtls_certificates/{cert}{nl}/associations"),
            ("DELETE", f"/accounts/{a}/mtls_certificates/{cert}{nl}"),
            ("GET", f"/zones/{z}{nl}/dns_records"),
        ]
    # A newline inside the id (refused before the fix too: `$` only skips a final newline).
    out += [
        ("GET", f"/accounts/{a[:16]}%0A{a[16:]}"),
        ("GET", f"/accounts/{a}/mtls_certificates/{cert[:8]}%0A{cert[9:]}"),
    ]
    return out


def test_ids_with_newline_in_path_refused_like_any_malformed_id(world: World) -> None:
    gw = world.gw
    before = snapshot(gw)
    with gw.http() as c:
        for method, path in _path_cases(world):
            kwargs: dict[str, Any] = {}
            if method == "PUT":
                kwargs["json"] = {"hostnames": []}
            r = c.request(method, path, **kwargs)
            err = assert_error(r, 400, 7003, contains="perhaps your object identifier is invalid")
            assert "\n" not in err["message"] and "\r" not in err["message"], err
        # The same ids without the newline are accepted.
        assert_ok(c.get(f"/accounts/{gw.account_id}"))
        assert_ok(c.get(f"/accounts/{gw.account_id}/mtls_certificates/{world.ca}"))
        assert_ok(c.get(fill(gw, ASSOC)))
    assert snapshot(gw) == before, "a refused id changed the stored state"


def test_route_names_with_control_characters_name_no_route(world: World) -> None:
    """`$` in a route's pattern matches before a final newline: `/dns_records%0A` used to reach
    the DNS records route, and a POST there wrote a record. Any control character in a path is
    refused as a malformed id is, whatever the route, before any handler runs."""
    gw = world.gw
    z = gw.zone_id
    before = snapshot(gw)
    record = {"type": "A", "name": "nl-route.example.com", "content": "10.0.0.9"}
    cases: list[tuple[str, str, dict[str, Any] | None]] = []
    for bad in [*NEWLINES, "%00", "%09", "%7F"]:
        cases += [
            ("GET", f"/user/tokens/verify{bad}", None),
            ("GET", f"/zones/{z}/dns_records{bad}", None),
            ("POST", f"/zones/{z}/dns_records{bad}", record),
            ("PUT", fill(gw, ASSOC) + bad, {"hostnames": []}),
            ("GET", f"/zones{bad}", None),
        ]
    with gw.http() as c:
        for method, path, body in cases:
            r = c.request(method, path, json=body)
            err = assert_error(r, 400, 7003, contains="perhaps your object identifier is invalid")
            assert not any(ch in err["message"] for ch in "\n\r\t\x00\x7f"), err
            assert err["error_chain"] == [{"code": 7000, "message": "No route for that URI"}]
        # The same routes without the character still answer.
        assert_ok(c.get("/user/tokens/verify"))
        assert_ok(c.get(f"/zones/{z}/dns_records"))
    assert snapshot(gw) == before, "a refused path changed the stored state"


# --- mtls_certificate_id in a body or query -----------------------------------------------------


@pytest.mark.parametrize("suffix", ["\n", "\r\n", "\t"])
def test_certificate_id_with_newline_refused(world: World, suffix: str) -> None:
    gw = world.gw
    before = snapshot(gw)
    bad = world.ca + suffix
    with gw.http() as c:
        body = {"hostnames": ["ok.example.com", "new.example.com"], "mtls_certificate_id": bad}
        assert_error(
            c.put(fill(gw, ASSOC), json=body), 400, 1005, contains="must be the id of an uploaded"
        )
        r = c.get(fill(gw, ASSOC), params={"mtls_certificate_id": bad})
        assert_error(r, 400, 1005, contains="must be the id of an uploaded")
        # Without the suffix the same id is accepted.
        r = c.get(fill(gw, ASSOC), params={"mtls_certificate_id": world.ca})
        assert assert_ok(r)["result"]["hostnames"] == ["ok.example.com"]
    assert snapshot(gw) == before


# --- the Authorization header --------------------------------------------------------------------


def _raw_get(gw: Gateway, authorization: bytes) -> bytes:
    """A hand-written request: httpx refuses to send a header value with a newline."""
    with socket.create_connection(("127.0.0.1", gw.port), timeout=10) as s:
        s.sendall(
            b"GET /client/v4/user/tokens/verify HTTP/1.1\r\nHost: 127.0.0.1\r\n"
            b"Authorization: " + authorization + b"\r\nConnection: close\r\n\r\n"
        )
        data = b""
        while chunk := s.recv(65536):
            data += chunk
    return data


@pytest.mark.parametrize(
    "suffix", [b"\n", b"\r", b"\n X-Injected: 1", b"\r\n continued", b"\x0b", b"\x00"]
)
def test_token_with_newline_never_authenticates(world: World, suffix: bytes) -> None:
    """A newline cannot reach the application inside a header: the HTTP parser answers 400 before
    the route runs (a plain-text 400, not an envelope; the application-level check is covered by
    tests/test_trailing_newline.py). What matters here is that it never authenticates."""
    gw = world.gw
    token = gw.token.encode()
    assert _raw_get(gw, b"Bearer " + token).startswith(b"HTTP/1.1 200 ")
    response = _raw_get(gw, b"Bearer " + token + suffix)
    assert response.startswith(b"HTTP/1.1 400 "), response[:200]
    assert b'"success":true' not in response


def test_malformed_token_envelope_unchanged(world: World) -> None:
    """What a malformed token that does reach the application gets, before and after the fix."""
    gw = world.gw
    with gw.http(token=gw.token + " x") as c:
        err = assert_error(c.get("/user/tokens/verify"), 400, 6003)
    assert err["error_chain"] == [
        {"code": 6111, "message": "Invalid format for Authorization header"}
    ]
