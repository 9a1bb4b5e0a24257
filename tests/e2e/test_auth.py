"""Authentication and authorisation against a real `mtlsgate serve` (SQLite and PostgreSQL):
Cloudflare's auth errors, permission groups, and isolation between accounts.

Tokens and a second account are created once per backend through the CLI (module scope); the
tests only read, or make requests that must be refused, and check account A is left unchanged.
"""

from __future__ import annotations

import hashlib
import json
import secrets
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import httpx
import pytest
import sqlalchemy

from tests.certs import openssl_root
from tests.harness import Gateway, init_gateway

ASSOC = "/zones/{}/certificate_authorities/hostname_associations"
READ = "SSL and Certificates Read"
WRITE = "SSL and Certificates Write"
ACCOUNT_READ = "Account: SSL and Certificates Read"
ACCOUNT_WRITE = "Account: SSL and Certificates Write"


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
    assert body["messages"] == [], (where, body)
    errors = body["errors"]
    assert isinstance(errors, list) and errors, (where, body)
    for err in errors:
        assert isinstance(err.get("code"), int) and err["code"] >= 1000, (where, err)
        assert isinstance(err.get("message"), str) and len(err["message"]) >= 10, (where, err)
    assert errors[0]["code"] == code, f"{where}: expected code {code}: {errors}"
    if contains is not None:
        assert contains in errors[0]["message"], (where, errors)
    return dict(errors[0])


def assert_ok(r: httpx.Response) -> dict[str, Any]:
    where = f"{r.request.method} {r.request.url}"
    assert r.status_code == 200, f"{where}: expected 200, got {r.status_code}: {r.text}"
    body = r.json()
    assert body["success"] is True and body["errors"] == [], (where, body)
    return dict(body)


def random_hex() -> str:
    return uuid.uuid4().hex


@dataclass
class World:
    gw: Gateway
    a_zone: str  # example.com
    a_other: str  # other.org
    a_ca: str  # a CA uploaded to account A, associated with api.example.com
    a_leaf: str  # a ca: false upload of account A
    b_account: str
    b_zone: str
    b_token: str
    b_ca: str
    tokens: dict[str, dict[str, str]]  # label -> {"id", "api_token"}

    def client(self, token: str | None) -> httpx.Client:
        return self.gw.http(token)


def snapshot_a(w: World) -> dict[str, Any]:
    """Account A as its own admin sees it."""
    A = w.gw.account_id
    with w.gw.http() as c:
        certs = assert_ok(c.get(f"/accounts/{A}/mtls_certificates"))["result"]
        state: dict[str, Any] = {"certs": certs, "assoc": {}, "managed": {}}
        for cert in certs:
            r = c.get(f"/accounts/{A}/mtls_certificates/{cert['id']}/associations")
            state["assoc"][cert["id"]] = assert_ok(r)["result"]
        for zone in (w.a_zone, w.a_other):
            state["managed"][zone] = assert_ok(c.get(ASSOC.format(zone)))["result"]
        state["account"] = assert_ok(c.get(f"/accounts/{A}"))["result"]
        state["zones"] = assert_ok(c.get("/zones"))["result"]
    return state


@pytest.fixture(scope="module", params=["sqlite", "postgres"])
def world(
    request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[World]:
    database_url = None
    if request.param == "postgres":
        database_url = request.getfixturevalue("pg").create_database(f"auth{random_hex()[:12]}")
    tmp = tmp_path_factory.mktemp(f"auth-{request.param}")
    gw = init_gateway(tmp / "data", database_url, zones=("example.com", "other.org"))
    tokens = {
        "zone_read": gw.cli_json("token", "create", "--permission", READ, "--zone", "example.com"),
        "zone_write": gw.cli_json(
            "token", "create", "--permission", WRITE, "--zone", "example.com"
        ),
        "account_read": gw.cli_json("token", "create", "--permission", ACCOUNT_READ),
        "account_write": gw.cli_json("token", "create", "--permission", ACCOUNT_WRITE),
    }
    b = gw.cli_json("account", "create", "--name", "B", "--zone", "b.test")
    gw.start()
    a_root = openssl_root(tmp, cn="Account A Root")
    a_leaf = openssl_root(tmp, cn="Account A Leafish", kind="ec")
    b_root = openssl_root(tmp, cn="Account B Root")
    try:
        A, a_zone = gw.account_id, gw.zones["example.com"]
        with gw.http() as c:
            url = f"/accounts/{A}/mtls_certificates"
            a_ca = assert_ok(c.post(url, json={"ca": True, "certificates": a_root.cert_pem}))
            leaf = assert_ok(c.post(url, json={"ca": False, "certificates": a_leaf.cert_pem}))
            body = {"hostnames": ["api.example.com"], "mtls_certificate_id": a_ca["result"]["id"]}
            assert_ok(c.put(ASSOC.format(a_zone), json=body))
            assert_ok(c.put(ASSOC.format(a_zone), json={"hostnames": ["m.example.com"]}))
        with gw.http(b["api_token"]) as c:
            url = f"/accounts/{b['account_id']}/mtls_certificates"
            b_ca = assert_ok(c.post(url, json={"ca": True, "certificates": b_root.cert_pem}))
        yield World(
            gw=gw,
            a_zone=a_zone,
            a_other=gw.zones["other.org"],
            a_ca=a_ca["result"]["id"],
            a_leaf=leaf["result"]["id"],
            b_account=b["account_id"],
            b_zone=b["zones"]["b.test"],
            b_token=b["api_token"],
            b_ca=b_ca["result"]["id"],
            tokens=tokens,
        )
    finally:
        gw.stop()


# --- credentials ---------------------------------------------------------------------------------

ENDPOINTS = [
    ("GET", "/user/tokens/verify"),
    ("GET", "/accounts"),
    ("GET", "/accounts/{A}/mtls_certificates"),
    ("POST", "/accounts/{A}/mtls_certificates"),
    ("PUT", "/zones/{Z}/certificate_authorities/hostname_associations"),
]


def _request(w: World, method: str, path: str, headers: dict[str, str]) -> httpx.Response:
    url = w.gw.base_url + path.format(A=w.gw.account_id, Z=w.a_zone)
    body: Any = None
    if method == "POST":
        body = {"ca": True, "certificates": "x"}
    elif method == "PUT":
        body = {"hostnames": []}
    return httpx.request(method, url, headers=headers, json=body, timeout=30)


@pytest.mark.parametrize(("method", "path"), ENDPOINTS)
def test_missing_credentials(world: World, method: str, path: str) -> None:
    before = snapshot_a(world)
    r = _request(world, method, path, {})
    assert_error(r, 400, 9106, contains="Missing X-Auth-Key, X-Auth-Email or Authorization headers")
    assert snapshot_a(world) == before


MALFORMED_AUTHORIZATION = {
    "basic": "Basic x",
    "basic-real-looking": "Basic dXNlcjpwYXNz",
    "bearer-empty": "Bearer",
    "bearer-two-words": "Bearer abc def",
    "bearer-double-space": "Bearer  abcdef",
    "bearer-garbage": "Bearer !!!$$$",
    "bearer-too-long": "Bearer " + "a" * 201,
    "token-without-scheme": "abcdefabcdefabcdefabcdefabcdefabcdefabcd",
}


@pytest.mark.parametrize("label", list(MALFORMED_AUTHORIZATION))
@pytest.mark.parametrize(("method", "path"), ENDPOINTS[:1] + ENDPOINTS[3:4])
def test_malformed_authorization(world: World, label: str, method: str, path: str) -> None:
    r = _request(world, method, path, {"Authorization": MALFORMED_AUTHORIZATION[label]})
    err = assert_error(r, 400, 6003, contains="Invalid request headers")
    chain = err.get("error_chain")
    assert isinstance(chain, list) and 6111 in [c["code"] for c in chain], err
    assert all(isinstance(c["message"], str) and c["message"] for c in chain)


@pytest.mark.parametrize(
    "headers",
    [
        {"X-Auth-Key": "0123456789abcdef"},
        {"X-Auth-Email": "someone@example.com"},
        {"X-Auth-Key": "0123456789abcdef", "X-Auth-Email": "someone@example.com"},
    ],
    ids=["key-only", "email-only", "both"],
)
def test_global_api_key_headers(world: World, headers: dict[str, str]) -> None:
    for method, path in ENDPOINTS[:1] + ENDPOINTS[3:4]:
        err = assert_error(_request(world, method, path, headers), 400, 6003)
        codes = [c["code"] for c in err.get("error_chain", [])]
        assert set(codes) & {6102, 6103}, err


@pytest.mark.parametrize(("method", "path"), ENDPOINTS)
def test_unknown_token(world: World, method: str, path: str) -> None:
    before = snapshot_a(world)
    unknown = secrets.token_urlsafe(30)[:40]
    r = _request(world, method, path, {"Authorization": f"Bearer {unknown}"})
    assert_error(r, 403, 9109, contains="Invalid access token")
    assert snapshot_a(world) == before


def test_verify_works_for_every_valid_token(world: World) -> None:
    for label, tok in world.tokens.items():
        with world.client(tok["api_token"]) as c:
            body = assert_ok(c.get("/user/tokens/verify"))
        assert body["result"] == {"id": tok["id"], "status": "active"}, label
        assert body["messages"][0]["code"] == 10000
    for token in (world.gw.token, world.b_token):
        with world.client(token) as c:
            assert assert_ok(c.get("/user/tokens/verify"))["result"]["status"] == "active"


# --- permission groups ---------------------------------------------------------------------------


def test_zone_read_token(world: World) -> None:
    before = snapshot_a(world)
    A = world.gw.account_id
    with world.client(world.tokens["zone_read"]["api_token"]) as c:
        r = assert_ok(c.get(ASSOC.format(world.a_zone)))
        assert r["result"]["hostnames"] == ["m.example.com"]
        r = c.get(ASSOC.format(world.a_zone), params={"mtls_certificate_id": world.a_ca})
        assert assert_ok(r)["result"]["hostnames"] == ["api.example.com"]
        assert_error(c.put(ASSOC.format(world.a_zone), json={"hostnames": []}), 403, 10000)
        body = {"hostnames": [], "mtls_certificate_id": world.a_ca}
        assert_error(c.put(ASSOC.format(world.a_zone), json=body), 403, 10000)
        # The other zone of the same account is invisible, exactly like a zone that doesn't exist.
        other = c.get(ASSOC.format(world.a_other))
        missing = c.get(ASSOC.format(random_hex()))
        assert_error(other, 403, 10000)
        assert (other.status_code, other.json()) == (missing.status_code, missing.json())
        other, missing = c.get(f"/zones/{world.a_other}"), c.get(f"/zones/{random_hex()}")
        assert_error(other, 403, 10000)
        assert (other.status_code, other.json()) == (missing.status_code, missing.json())
        assert_ok(c.get(f"/zones/{world.a_zone}"))
        zones = assert_ok(c.get("/zones"))["result"]
        assert [z["name"] for z in zones] == ["example.com"]
        assert assert_ok(c.get("/zones", params={"name": "other.org"}))["result"] == []
        # Account-level certificate endpoints need the "Account: ..." group.
        assert_error(c.get(f"/accounts/{A}/mtls_certificates"), 403, 10000)
        assert_error(c.get(f"/accounts/{A}/mtls_certificates/{world.a_ca}"), 403, 10000)
        r = c.post(f"/accounts/{A}/mtls_certificates", json={"ca": True, "certificates": "x"})
        assert_error(r, 403, 10000)
    assert snapshot_a(world) == before


def test_zone_write_implies_read(world: World) -> None:
    before = snapshot_a(world)
    with world.client(world.tokens["zone_write"]["api_token"]) as c:
        assert assert_ok(c.get(ASSOC.format(world.a_zone)))["result"]["hostnames"] == [
            "m.example.com"
        ]
        # Writing the same set back is allowed and changes nothing.
        r = c.put(ASSOC.format(world.a_zone), json={"hostnames": ["m.example.com"]})
        assert assert_ok(r)["result"]["hostnames"] == ["m.example.com"]
        assert_error(c.put(ASSOC.format(world.a_other), json={"hostnames": []}), 403, 10000)
        assert_error(c.get(f"/accounts/{world.gw.account_id}/mtls_certificates"), 403, 10000)
    assert snapshot_a(world) == before


def test_account_read_token(world: World) -> None:
    before = snapshot_a(world)
    A = world.gw.account_id
    with world.client(world.tokens["account_read"]["api_token"]) as c:
        ids = [x["id"] for x in assert_ok(c.get(f"/accounts/{A}/mtls_certificates"))["result"]]
        assert world.a_ca in ids and world.a_leaf in ids
        assert assert_ok(c.get(f"/accounts/{A}/mtls_certificates/{world.a_ca}"))["result"]["ca"]
        assoc = assert_ok(c.get(f"/accounts/{A}/mtls_certificates/{world.a_ca}/associations"))
        assert [a["hostname"] for a in assoc["result"]] == ["api.example.com"]
        root = before["certs"][0]["certificates"]
        r = c.post(f"/accounts/{A}/mtls_certificates", json={"ca": True, "certificates": root})
        assert_error(r, 403, 10000)
        assert_error(c.delete(f"/accounts/{A}/mtls_certificates/{world.a_leaf}"), 403, 10000)
        # Zone endpoints need the zone group.
        assert_error(c.get(ASSOC.format(world.a_zone)), 403, 10000)
    assert snapshot_a(world) == before


def test_account_write_implies_read(world: World) -> None:
    before = snapshot_a(world)
    A = world.gw.account_id
    with world.client(world.tokens["account_write"]["api_token"]) as c:
        assert_ok(c.get(f"/accounts/{A}/mtls_certificates"))
        assert_ok(c.get(f"/accounts/{A}/mtls_certificates/{world.a_ca}"))
        assert_ok(c.get(f"/accounts/{A}/mtls_certificates/{world.a_ca}/associations"))
        assert_error(c.get(ASSOC.format(world.a_zone)), 403, 10000)
    assert snapshot_a(world) == before


def test_token_create_grants_exactly_the_requested_permission(world: World) -> None:
    out = world.gw.cli("token", "create", "--permission", ACCOUNT_READ, "--name", "exact")
    created = json.loads(out.stdout)
    assert set(created) == {"id", "api_token"}
    assert len(created["id"]) == 32 and len(created["api_token"]) >= 40
    A = world.gw.account_id
    with world.client(created["api_token"]) as c:
        assert assert_ok(c.get("/user/tokens/verify"))["result"]["id"] == created["id"]
        assert_ok(c.get(f"/accounts/{A}/mtls_certificates"))
        assert_error(c.delete(f"/accounts/{A}/mtls_certificates/{world.a_leaf}"), 403, 10000)
        assert_error(c.get(ASSOC.format(world.a_zone)), 403, 10000)
        assert_error(c.put(ASSOC.format(world.a_zone), json={"hostnames": []}), 403, 10000)


def test_tokens_are_stored_hashed(world: World) -> None:
    secrets_ = [world.gw.token, world.b_token, *(t["api_token"] for t in world.tokens.values())]
    if world.gw.database_url is None:
        # The SQLite database and its journal/WAL files, byte for byte (bootstrap.json, mode
        # 0600, holds the admin token on purpose so `init` can show it again).
        files = [p for p in world.gw.data_dir.glob("mtlsgate.db*") if p.is_file()]
        assert files
        stored = b"".join(p.read_bytes() for p in files)
    else:
        # PostgreSQL: every column of every row of every table, as text.
        engine = sqlalchemy.create_engine(world.gw.database_url)
        with engine.connect() as conn:
            tables = conn.execute(
                sqlalchemy.text("SELECT tablename FROM pg_tables WHERE schemaname = 'public'")
            ).scalars()
            stored = b"".join(
                str(row).encode()
                for table in list(tables)
                for row in conn.execute(sqlalchemy.text(f'SELECT * FROM "{table}"'))
            )
        engine.dispose()
    for secret in secrets_:
        assert secret.encode() not in stored
        assert hashlib.sha256(secret.encode()).hexdigest().encode() in stored
    # Nor does the server log show them.
    for log in world.gw.data_dir.parent.glob("serve-*.log"):
        text = log.read_text(errors="replace")
        assert not any(s in text for s in secrets_)


# --- isolation between accounts ------------------------------------------------------------------


def _same(r1: httpx.Response, r2: httpx.Response) -> None:
    assert (r1.status_code, r1.json()) == (r2.status_code, r2.json()), (r1.text, r2.text)


def test_cross_account_isolation(world: World) -> None:
    before = snapshot_a(world)
    A, B = world.gw.account_id, world.b_account
    nobody = random_hex()
    no_cert = str(uuid.uuid4())
    with world.client(world.b_token) as c:
        accounts = assert_ok(c.get("/accounts"))["result"]
        assert [a["id"] for a in accounts] == [B]
        zones = assert_ok(c.get("/zones"))["result"]
        assert [z["name"] for z in zones] == ["b.test"]
        assert assert_ok(c.get("/zones", params={"name": "example.com"}))["result"] == []
        assert assert_ok(c.get("/zones", params={"account.id": A}))["result"] == []

        r = c.get(f"/accounts/{A}")
        assert_error(r, 403, 10000)
        _same(r, c.get(f"/accounts/{nobody}"))
        r = c.get(f"/zones/{world.a_zone}")
        assert_error(r, 403, 10000)
        _same(r, c.get(f"/zones/{random_hex()}"))

        # A's certificates through A's account path: like an account that does not exist.
        for method, suffix in (
            ("GET", ""),
            ("GET", f"/{world.a_ca}"),
            ("GET", f"/{world.a_ca}/associations"),
            ("DELETE", f"/{world.a_ca}"),
            ("DELETE", f"/{world.a_leaf}"),
        ):
            r = c.request(method, f"/accounts/{A}/mtls_certificates{suffix}")
            assert_error(r, 403, 10000)
            _same(r, c.request(method, f"/accounts/{nobody}/mtls_certificates{suffix}"))
        r = c.post(f"/accounts/{A}/mtls_certificates", json={"ca": True, "certificates": "x"})
        assert_error(r, 403, 10000)

        # A's certificate ids under B's own path: like a certificate that does not exist.
        for method, suffix in (("GET", ""), ("GET", "/associations"), ("DELETE", "")):
            r = c.request(method, f"/accounts/{B}/mtls_certificates/{world.a_ca}{suffix}")
            assert_error(r, 404, 1404)
            _same(r, c.request(method, f"/accounts/{B}/mtls_certificates/{no_cert}{suffix}"))
        ids = [x["id"] for x in assert_ok(c.get(f"/accounts/{B}/mtls_certificates"))["result"]]
        assert ids == [world.b_ca]

        # A's zone.
        for body in ({"hostnames": []}, {"hostnames": [], "mtls_certificate_id": world.a_ca}):
            r = c.put(ASSOC.format(world.a_zone), json=body)
            assert_error(r, 403, 10000)
            _same(r, c.put(ASSOC.format(random_hex()), json=body))
        r = c.get(ASSOC.format(world.a_zone))
        assert_error(r, 403, 10000)
        _same(r, c.get(ASSOC.format(random_hex())))

        # B's zone with A's CA: like an id that does not exist (the id itself aside).
        def masked(r: httpx.Response, cert_id: str) -> tuple[int, str]:
            return r.status_code, r.text.replace(cert_id, "<id>")

        body = {"hostnames": ["x.b.test"], "mtls_certificate_id": world.a_ca}
        r = c.put(ASSOC.format(world.b_zone), json=body)
        assert_error(r, 400, 1005)
        r2 = c.put(ASSOC.format(world.b_zone), json={**body, "mtls_certificate_id": no_cert})
        assert masked(r, world.a_ca) == masked(r2, no_cert)
        r = c.get(ASSOC.format(world.b_zone), params={"mtls_certificate_id": world.a_ca})
        assert_error(r, 400, 1005)
        r2 = c.get(ASSOC.format(world.b_zone), params={"mtls_certificate_id": no_cert})
        assert masked(r, world.a_ca) == masked(r2, no_cert)
        # A's ca: false upload is just as unknown (not 1006, which would reveal it).
        r = c.put(ASSOC.format(world.b_zone), json={**body, "mtls_certificate_id": world.a_leaf})
        assert_error(r, 400, 1005)
        # A's hostnames are not B's to claim.
        r = c.put(ASSOC.format(world.b_zone), json={"hostnames": ["api.example.com"]})
        assert_error(r, 400, 1004)
        assert assert_ok(c.get(ASSOC.format(world.b_zone)))["result"]["hostnames"] == []

    # And A's admin cannot reach into B either.
    with world.gw.http() as c:
        _same(c.get(f"/accounts/{B}"), c.get(f"/accounts/{nobody}"))
        _same(
            c.get(f"/accounts/{B}/mtls_certificates"),
            c.get(f"/accounts/{nobody}/mtls_certificates"),
        )
        _same(
            c.get(f"/accounts/{A}/mtls_certificates/{world.b_ca}"),
            c.get(f"/accounts/{A}/mtls_certificates/{no_cert}"),
        )
    assert snapshot_a(world) == before


def test_account_listing_per_token(world: World) -> None:
    for label in ("zone_read", "zone_write", "account_read", "account_write"):
        with world.client(world.tokens[label]["api_token"]) as c:
            accounts = assert_ok(c.get("/accounts"))["result"]
            assert [a["id"] for a in accounts] == [world.gw.account_id], label
            assert_error(c.get(f"/accounts/{world.b_account}"), 403, 10000)
            assert_error(c.get(f"/zones/{world.b_zone}"), 403, 10000)
