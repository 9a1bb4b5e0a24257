"""POST /zones/{zone_id}/mtls/explain agrees with the live edge.

Through a real `mtlsgate serve` with its edge and the echo origin: a table of client chains made
with the `openssl` CLI (and a managed certificate issued through the API) is sent both ways, to
the edge with curl and to the explain API, and what each says is compared: the HTTP status (a
block rule, or the origin's 200), the cf-cert-* headers the origin receives, the edge's log line
(mTLS status word, rule, action) and the CLI's answer for a few of them.
"""

from __future__ import annotations

import json
import os
import subprocess
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import pytest

from mtlsgate.pki.client_auth import MANAGED_HEADERS
from tests import harness
from tests.certs import (
    CertFiles,
    openssl,
    openssl_csr,
    openssl_intermediate,
    openssl_leaf,
    openssl_root,
)
from tests.crl_tools import OpensslCA
from tests.harness import Gateway

HOST = "api.example.com"
UNSERVED = "nothing.example.com"
FIREWALL = "/rulesets/phases/http_request_firewall_custom/entrypoint"
# A log rule first (it never ends evaluation), then two blocks; /inspect/... is never blocked, so
# the origin shows every client's cf-cert-* headers.
RULES = [
    {
        "expression": 'cf.tls_client_auth.cert_presented and http.request.uri.path eq "/"',
        "action": "log",
    },
    {
        "expression": "cf.tls_client_auth.cert_revoked"
        ' and not starts_with(http.request.uri.path, "/inspect")',
        "action": "block",
        "action_parameters": {
            "response": {"status_code": 451, "content": "revoked\n", "content_type": "text/plain"}
        },
    },
    {
        "expression": "not cf.tls_client_auth.cert_verified"
        ' and not starts_with(http.request.uri.path, "/inspect")',
        "action": "block",
    },
]


@dataclass(frozen=True)
class Client:
    name: str
    chain_pem: str  # what the client sends (leaf first); "" for no certificate
    key_path: Path | None
    status_word: str  # what the edge should conclude (Verdict.status)
    error_code: int | None = None


@pytest.fixture
def edge(tmp_path: Path) -> Iterator[tuple[Gateway, int]]:
    # Another hostname first: a connection starts on its context (it asks for no certificate)
    # and switches to HOST's on SNI, as on any edge with several hosts.
    with harness.edge_gateway(tmp_path / "data", None, ("open.example.com", HOST)) as running:
        gw, _ = running
        with gw.http() as c:
            ok(
                c.patch(
                    f"/zones/{gw.zone_id}/managed_headers",
                    json={
                        "managed_request_headers": [
                            {"id": "add_client_certificate_headers", "enabled": True}
                        ],
                        "managed_response_headers": [],
                    },
                )
            )
        yield running


def ok(r: httpx.Response) -> Any:
    assert r.status_code == 200, r.text
    return r.json()["result"]


# --- certificates made with the openssl CLI ----------------------------------------------------


def dated_leaf(
    tmp: Path, ca: CertFiles, cn: str, *, start: str, end: str, eku: str = "clientAuth"
) -> CertFiles:
    """A client certificate with exact dates and extended key usage, by `openssl ca`."""
    tmp.mkdir(parents=True)
    request = openssl_csr(tmp, kind="ec", cn=cn)
    key, csr, cert = request.key_path, request.cert_path, tmp / "leaf.pem"
    (tmp / "index.txt").write_text("")
    (tmp / "serial").write_text("2000\n")
    cnf = tmp / "ca.cnf"
    cnf.write_text(
        f"[ca]\ndefault_ca=d\n[d]\ndatabase={tmp}/index.txt\nnew_certs_dir={tmp}\n"
        f"serial={tmp}/serial\ndefault_md=sha256\npolicy=p\nunique_subject=no\n"
        "[p]\ncommonName=supplied\n"
        f"[ext]\nbasicConstraints=CA:FALSE\nextendedKeyUsage={eku}\n"
        "subjectKeyIdentifier=hash\nauthorityKeyIdentifier=keyid\n"
    )
    openssl(
        "ca",
        "-batch",
        "-config",
        cnf,
        "-in",
        csr,
        "-out",
        cert,
        "-cert",
        ca.cert_path,
        "-keyfile",
        ca.key_path,
        "-startdate",
        start,
        "-enddate",
        end,
        "-extensions",
        "ext",
        "-notext",
    )
    return CertFiles(cert.read_text(), key.read_text(), cert, key)


def self_signed_leaf(tmp: Path, cn: str) -> CertFiles:
    tmp.mkdir(parents=True)
    key, cert = tmp / "leaf.key", tmp / "leaf.pem"
    openssl(
        "req",
        "-x509",
        "-newkey",
        "ec",
        "-pkeyopt",
        "ec_paramgen_curve:P-256",
        "-nodes",
        "-keyout",
        key,
        "-out",
        cert,
        "-subj",
        f"/CN={cn}",
        "-days",
        "30",
        "-addext",
        "basicConstraints=critical,CA:FALSE",
        "-addext",
        "extendedKeyUsage=clientAuth",
    )
    return CertFiles(cert.read_text(), key.read_text(), cert, key)


def managed_leaf(gw: Gateway, tmp: Path, cn: str) -> tuple[CertFiles, str]:
    """A key and CSR from `openssl req`, signed by the account's managed CA through the API."""
    tmp.mkdir(parents=True)
    request = openssl_csr(tmp, kind="ec", cn=cn)
    key = request.key_path
    with gw.http() as c:
        made = ok(
            c.post(
                f"/zones/{gw.zone_id}/client_certificates",
                json={"csr": request.cert_pem, "validity_days": 30},
            )
        )
    cert = tmp / "leaf.pem"
    cert.write_text(made["certificate"])
    return CertFiles(cert.read_text(), key.read_text(), cert, key), made["id"]


# --- the two ways ------------------------------------------------------------------------------


# The client side must be willing to send SHA-1-signed and 1024-bit certificates: curl's
# OpenSSL refuses to load them at its default security level, before any --ciphers applies.
_WEAK_CLIENT_CONF = """openssl_conf = init
[init]
ssl_conf = ssl_sect
[ssl_sect]
system_default = sys
[sys]
CipherString = DEFAULT:@SECLEVEL=0
"""


def curl(gw: Gateway, port: int, client: Client, path: str) -> tuple[int, str]:
    conf = gw.data_dir.parent / "weak-client.cnf"
    conf.write_text(_WEAK_CLIENT_CONF)
    ca = str(gw.data_dir / "edge-ca.pem")
    args = ["curl", "-s", "--max-time", "5", "-w", "\n%{http_code}",
            "--resolve", f"{HOST}:{port}:127.0.0.1", "--cacert", ca]  # fmt: skip
    if client.key_path is not None:
        chain = client.key_path.parent / "sent-chain.pem"
        chain.write_text(client.chain_pem)
        args += ["--cert", str(chain), "--key", str(client.key_path)]
    out = subprocess.run(
        [*args, f"https://{HOST}:{port}{path}"],
        capture_output=True,
        text=True,
        env={**os.environ, "OPENSSL_CONF": str(conf)},
    )
    body, _, code = out.stdout.rpartition("\n")
    assert code != "000", f"curl failed ({out.returncode}): {out.stderr}"
    return int(code), body


def explain(gw: Gateway, client: Client, path: str, token: str | None = None) -> Any:
    with gw.http(token) as c:
        return ok(
            c.post(
                f"/zones/{gw.zone_id}/mtls/explain",
                json={
                    "hostname": HOST,
                    "certificates": client.chain_pem,
                    "path": path,
                    "method": "GET",
                },
            )
        )


def expected_headers(fields: dict[str, Any]) -> list[tuple[str, str]]:
    """The cf-cert-* headers the edge sends for these field values (pki.client_auth rules:
    booleans always, strings only when not empty)."""
    out = []
    for header, field in MANAGED_HEADERS:
        value = fields[field]
        if isinstance(value, bool):
            out.append((header, "true" if value else "false"))
        elif value:
            out.append((header, str(value)))
    return out


def log_lines(gw: Gateway, uris: set[str]) -> dict[str, dict[str, Any]]:
    deadline = time.monotonic() + 8
    by_uri: dict[str, dict[str, Any]] = {}
    while time.monotonic() < deadline:
        text = (gw.data_dir.parent / f"serve-{gw.port}.log").read_text(errors="replace")
        by_uri = {}
        for line in text.splitlines():
            if line.startswith("{"):
                record = json.loads(line)
                by_uri[record["uri"]] = record
        if uris <= by_uri.keys():
            return by_uri
        time.sleep(0.2)
    raise AssertionError(f"no log line for {sorted(uris - by_uri.keys())}")


def wait_for_edge(gw: Gateway, port: int, client: Client, status: int) -> None:
    deadline = time.monotonic() + 5
    got = None
    while time.monotonic() < deadline:
        got = curl(gw, port, client, "/")[0]
        if got == status:
            return
        time.sleep(0.1)
    raise AssertionError(f"the edge answered {got}, expected {status}")


# --- the table ---------------------------------------------------------------------------------


def test_explain_agrees_with_the_edge(edge: tuple[Gateway, int], tmp_path: Path) -> None:
    gw, port = edge
    t = tmp_path
    devices = openssl_root(t / "devices", cn="Devices CA")
    other = openssl_root(t / "other", kind="ec", cn="Other CA")
    hidden_root = openssl_root(t / "hidden", cn="Hidden Root")
    inter_anchor = openssl_intermediate(t / "ia", hidden_root, cn="Uploaded Intermediate")
    partner_root = openssl_root(t / "partner", kind="ec", cn="Partner Root")
    partner_inter = openssl_intermediate(t / "pi", partner_root, kind="ec", cn="Partner Issuing")

    def client(
        name: str, cert: CertFiles, word: str, code: int | None = None, extra: str = ""
    ) -> Client:
        return Client(name, cert.cert_pem + extra, cert.key_path, word, code)

    # Two operator CAs with `openssl ca` databases: one publishes a CRL revoking a client, the
    # other is fail_closed and has no CRL (every client it signed counts as revoked).
    crl_ca = OpensslCA.create(t / "crlca", cn="CRL CA")
    crl_revoked = crl_ca.issue("crl-revoked")
    crl_ca.revoke(crl_revoked)
    closed_ca = OpensslCA.create(t / "closedca", cn="Closed CA")
    valid = openssl_leaf(t / "valid", devices, kind="ec", cn="device-ok")
    denied = openssl_leaf(t / "denied", devices, kind="ec", cn="device-denied")
    partner_leaf = openssl_leaf(t / "pl", partner_inter, kind="ec", cn="partner-device")
    clients = [
        client("valid", valid, "ok"),
        client(
            "expired",
            dated_leaf(t / "exp", devices, "old", start="20200101000000Z", end="20200201000000Z"),
            "expired",
            10,
        ),
        client(
            "notyet",
            dated_leaf(t / "ny", devices, "future", start="20400101000000Z", end="20410101000000Z"),
            "notyetvalid",
            9,
        ),
        client("otherca", openssl_leaf(t / "oc", other, kind="ec"), "untrusted", 20),
        client("selfsigned", self_signed_leaf(t / "ss", "myself"), "untrusted", 18),
        client(
            "under-uploaded-intermediate",
            openssl_leaf(t / "ui", inter_anchor, kind="ec", cn="via-intermediate"),
            "ok",
        ),
        client("leaf-plus-intermediate", partner_leaf, "ok", extra=partner_inter.cert_pem),
        client("missing-intermediate", partner_leaf, "untrusted", 20),
        client("sha1", openssl_leaf(t / "sha1", devices, digest="sha1", cn="sha1-device"), "ok"),
        client("rsa1024", openssl_leaf(t / "r1024", devices, bits=1024, cn="weak"), "invalid", 66),
        client(
            "serverauth-eku",
            dated_leaf(
                t / "eku",
                devices,
                "server",
                start="20240101000000Z",
                end="20390101000000Z",
                eku="serverAuth",
            ),
            "invalid",
            26,
        ),
        Client("nocert", "", None, "absent"),
        client("denylisted", denied, "revoked"),
        client("crl-revoked", crl_revoked, "revoked"),
        client("crl-missing-fail-closed", closed_ca.issue("closed-client"), "revoked"),
    ]

    with gw.http() as c:
        ids = {}
        for name, ca in (
            ("devices", devices),
            ("intermediate", inter_anchor),
            ("partner", partner_root),
            ("crl", crl_ca.cert),
            ("closed", closed_ca.cert),
        ):
            up = ok(
                c.post(
                    f"/accounts/{gw.account_id}/mtls_certificates",
                    json={"ca": True, "name": name, "certificates": ca.cert_pem},
                )
            )
            ids[name] = up["id"]
            ok(
                c.put(
                    f"/zones/{gw.zone_id}/certificate_authorities/hostname_associations",
                    json={"hostnames": [HOST], "mtls_certificate_id": ids[name]},
                )
            )
        # The managed CA too (no mtls_certificate_id), for the revoked managed certificate.
        ok(
            c.put(
                f"/zones/{gw.zone_id}/certificate_authorities/hostname_associations",
                json={"hostnames": [HOST]},
            )
        )
        ok(c.put(f"/zones/{gw.zone_id}{FIREWALL}", json={"rules": RULES}))
        cas = f"/accounts/{gw.account_id}/mtls_certificates"
        ok(c.put(f"{cas}/{ids['crl']}/crl", json={"crl": crl_ca.gencrl()}))
        ok(c.patch(f"{cas}/{ids['closed']}/crl_settings", json={"stale_policy": "fail_closed"}))
        ok(
            c.post(
                f"/accounts/{gw.account_id}/mtls_deny_list",
                json={"serial_number": _serial(denied), "reason": "lost laptop"},
            )
        )
    revoked_cert, revoked_id = managed_leaf(gw, t / "revoked", "managed-revoked")
    clients.append(
        Client("revoked-managed", revoked_cert.cert_pem, revoked_cert.key_path, "revoked")
    )
    with gw.http() as c:
        assert c.delete(f"/zones/{gw.zone_id}/client_certificates/{revoked_id}").status_code == 200
    with gw.http() as c:
        rules = ok(c.get(f"/zones/{gw.zone_id}{FIREWALL}"))["rules"]
    log_id, revoked_rule, seed_rule = (r["id"] for r in rules)

    # Wait until the edge has the whole configuration: the revoked managed certificate blocked.
    wait_for_edge(gw, port, clients[-1], 451)

    assert len(clients) >= 16
    answers = {}
    for cl in clients:
        root = explain(gw, cl, "/")
        inspect_path = f"/inspect/{cl.name}"
        inspected = explain(gw, cl, inspect_path)
        status, _ = curl(gw, port, cl, "/")
        inspect_status, body = curl(gw, port, cl, inspect_path)
        answers[cl.name] = root
        auth = root["client_auth"]
        where = f"{cl.name}: {json.dumps(root, indent=1)[:3000]}"

        # What the table says the edge should conclude, and explain says the same.
        assert root["served"] is True, where
        assert auth["status"] == cl.status_word, where
        assert auth["error_code"] == cl.error_code, where
        assert auth["presented"] is (cl.key_path is not None), where
        if cl.error_code is not None:
            assert auth["error_reason"], where
        # The verdict shows in the status the edge answers.
        decision = root["decision"]
        if decision["outcome"] == "block":
            assert status == decision["status"], where
            assert decision["action"] == "block"
        else:
            assert decision["status"] is None and status == 200, where
        # Blocked with the custom 451 exactly when revoked; with 403 exactly when not verified.
        expected = 451 if auth["revoked"] else 403 if not auth["verified"] else 200
        assert status == expected, where
        # The headers the origin got are those explain computes, value for value.
        assert inspect_status == 200, (cl.name, body)
        assert inspected["decision"]["outcome"] == "origin"
        seen = [tuple(h) for h in json.loads(body)["headers"] if h[0].startswith("cf-cert-")]
        assert seen == expected_headers(inspected["client_auth"]["fields"]), where
        assert inspected["client_auth"]["fields"] == auth["fields"]

    # The edge's own log lines: verdict word, rule and action, for the requests to "/".
    lines = log_lines(gw, {"/", *(f"/inspect/{cl.name}" for cl in clients)})
    for cl in clients:
        line = lines[f"/inspect/{cl.name}"]
        assert line["mtls"] == answers[cl.name]["client_auth"]["status"], (cl.name, line)
        decision = answers[cl.name]["decision"]
        assert decision["action"] in ("block", "log", None)
        if decision["action"] == "block":
            assert decision["rule_id"] in (revoked_rule, seed_rule)
        elif decision["action"] == "log":
            assert decision["rule_id"] == log_id and decision["logged_by"] == log_id
    by_action = {(r["action"], r["rule"]) for r in _all_lines(gw) if r["uri"] == "/"}
    assert ("log", log_id) in by_action and ("block", seed_rule) in by_action
    assert ("block", revoked_rule) in by_action

    # Spot checks of what explain adds: the anchor and the candidates in the edge's order.
    cands = answers["valid"]["candidate_cas"]
    assert [c["kind"] for c in cands] == ["uploaded"] * 5 + ["managed"]
    order = ["closed", "crl", "partner", "intermediate", "devices"]
    assert [c["id"] for c in cands[:5]] == [ids[name] for name in order]
    assert answers["valid"]["anchor"]["id"] == ids["devices"]
    assert answers["under-uploaded-intermediate"]["anchor"]["id"] == ids["intermediate"]
    assert answers["leaf-plus-intermediate"]["anchor"]["id"] == ids["partner"]
    assert answers["revoked-managed"]["anchor"]["kind"] == "managed"
    assert answers["revoked-managed"]["client_auth"]["revocation_reason"] == "managed"
    assert answers["denylisted"]["client_auth"]["revocation_reason"] == "denylist"
    assert answers["denylisted"]["client_auth"]["verified"] is True
    assert answers["crl-revoked"]["client_auth"]["revocation_reason"] == "crl"
    assert answers["crl-missing-fail-closed"]["client_auth"]["revocation_reason"] == "crl_missing"
    assert answers["crl-missing-fail-closed"]["anchor"]["id"] == ids["closed"]
    assert answers["otherca"]["anchor"] is None
    assert "no associated CA" in answers["otherca"]["anchor_reason"]
    assert answers["expired"]["anchor"]["id"] == ids["devices"]
    assert "certificate has expired" in answers["expired"]["anchor_reason"]
    assert answers["valid"]["decision"] == {
        "action": "log",
        "rule_id": log_id,
        "status": None,
        "outcome": "origin",
        "logged_by": log_id,
    }
    assert answers["nocert"]["decision"]["action"] == "block"
    assert answers["nocert"]["decision"]["logged_by"] is None
    assert [r["matches"] for r in answers["expired"]["rules"]] == [True, False, True]

    # A hostname of the zone that is not served: the edge fails the handshake, explain says so.
    with gw.http() as c:
        body = {"hostname": UNSERVED, "certificates": valid.cert_pem}
        unserved = ok(c.post(f"/zones/{gw.zone_id}/mtls/explain", json=body))
    assert unserved["served"] is False
    assert unserved["decision"]["outcome"] == "handshake_failure"
    out = subprocess.run(
        ["curl", "-s", "-o", "/dev/null", "-w", "%{http_code}", "--max-time", "5",
         "--resolve", f"{UNSERVED}:{port}:127.0.0.1", "--cacert", str(gw.data_dir / "edge-ca.pem"),
         f"https://{UNSERVED}:{port}/"],
        capture_output=True, text=True,
    )  # fmt: skip
    assert out.returncode == 35 and out.stdout == "000"  # CURLE_SSL_CONNECT_ERROR

    # The CLI gives the same answer as the API.
    for name in ("valid", "expired", "revoked-managed"):
        cl = next(c for c in clients if c.name == name)
        cert_file = tmp_path / f"{name}-chain.pem"
        cert_file.write_text(cl.chain_pem)
        out = gw.cli(
            "explain",
            "--zone",
            "example.com",
            "--hostname",
            HOST,
            "--cert",
            str(cert_file),
            "--path",
            "/",
            "--method",
            "GET",
        )
        from_cli = json.loads(out.stdout)
        assert from_cli["client_auth"] == answers[name]["client_auth"]
        assert from_cli["decision"] == answers[name]["decision"]
        assert from_cli["anchor"] == answers[name]["anchor"]


def _serial(cert: CertFiles) -> str:
    # `openssl x509 -noout -serial` prints serial=HEX.
    return openssl("x509", "-noout", "-serial", "-in", cert.cert_path).strip().split("=", 1)[1]


def _all_lines(gw: Gateway) -> list[dict[str, Any]]:
    text = (gw.data_dir.parent / f"serve-{gw.port}.log").read_text(errors="replace")
    return [json.loads(line) for line in text.splitlines() if line.startswith("{")]
