"""Managed CA rotation end to end, through a real `mtlsgate serve` with its edge and curl:
`mtlsgate managed-ca rotate` makes a new CA sign while certificates of the previous (retiring)
one keep working and stay revocable; `managed-ca retire` refuses while they are live, and with
--force makes them fail verification at the edge. Two rules with distinct block bodies tell a
revocation (`cf.tls_client_auth.cert_revoked`) from a failed verification
(`not cf.tls_client_auth.cert_verified`)."""

from __future__ import annotations

import json
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import serialization
from cryptography.x509.oid import NameOID
from sqlalchemy import select

from mtlsgate.store.db import Store
from mtlsgate.store.keystore import KeyStore
from mtlsgate.store.models import ManagedCA
from tests import harness
from tests.certs import openssl, openssl_csr, openssl_root
from tests.harness import Gateway, init_gateway

HOST = "api.example.com"
REVOKED_RULE = f'(http.host eq "{HOST}" and cf.tls_client_auth.cert_revoked)'
UNVERIFIED_RULE = f'(http.host eq "{HOST}" and not cf.tls_client_auth.cert_verified)'


def _block(body: str) -> dict[str, object]:
    return {"response": {"status_code": 403, "content": body, "content_type": "text/plain"}}


@pytest.fixture
def edge_gateway(tmp_path: Path, database_url: str | None) -> Iterator[tuple[Gateway, int]]:
    with harness.edge_gateway(tmp_path / "data", database_url, (HOST,)) as (gw, edge_port):
        zone = gw.zone_id
        with gw.http() as c:
            for method, path, body in (
                (
                    "PUT",
                    f"/zones/{zone}/certificate_authorities/hostname_associations",
                    {"hostnames": [HOST]},
                ),
                (
                    "PUT",
                    f"/zones/{zone}/rulesets/phases/http_request_firewall_custom/entrypoint",
                    {
                        "rules": [
                            {
                                "expression": UNVERIFIED_RULE,
                                "action": "block",
                                "action_parameters": _block("unverified"),
                            },
                            {
                                "expression": REVOKED_RULE,
                                "action": "block",
                                "action_parameters": _block("revoked"),
                            },
                        ]
                    },
                ),
            ):
                r = c.request(method, path, json=body)
                assert r.status_code == 200, r.text
        yield gw, edge_port


def _issue(gw: Gateway, tmp: Path, cn: str) -> tuple[dict[str, object], Path, Path]:
    # An ECDSA key and CSR from `openssl req`, as an operator would make them.
    request = openssl_csr(tmp / cn, kind="ec", cn=cn)
    key, csr = request.key_path, request.cert_pem
    with gw.http() as c:
        r = c.post(
            f"/zones/{gw.zone_id}/client_certificates", json={"csr": csr, "validity_days": 30}
        )
    assert r.status_code == 200, r.text
    result = r.json()["result"]
    pem = tmp / cn / "client.pem"
    pem.write_text(str(result["certificate"]))
    return result, pem, key


def _curl(gw: Gateway, port: int, cert: Path, key: Path) -> tuple[int, str]:
    out = subprocess.run(
        ["curl", "-s", "-w", "\n%{http_code}", "--max-time", "5",
         "--resolve", f"{HOST}:{port}:127.0.0.1", "--cacert", str(gw.data_dir / "edge-ca.pem"),
         "--cert", str(cert), "--key", str(key), f"https://{HOST}:{port}/"],
        capture_output=True, text=True,
    )  # fmt: skip
    body, _, code = out.stdout.rpartition("\n")
    return int(code or 0), body.strip() if int(code or 0) == 403 else ""


def _until(check: object, expected: object, timeout: float = 3.0) -> None:
    assert callable(check)
    deadline = time.monotonic() + timeout
    got = None
    while time.monotonic() < deadline:
        got = check()
        if got == expected:
            return
        time.sleep(0.05)
    raise AssertionError(f"expected {expected!r} within {timeout}s, last saw {got!r}")


def _cas(gw: Gateway) -> dict[str, dict[str, object]]:
    return {str(ca["id"]): ca for ca in gw.cli_json("managed-ca", "list")}


def _explain(gw: Gateway, pem: Path) -> dict[str, Any]:
    with gw.http() as c:
        r = c.post(
            f"/zones/{gw.zone_id}/mtls/explain",
            json={"hostname": HOST, "certificates": pem.read_text(), "path": "/"},
        )
    assert r.status_code == 200, r.text
    result: dict[str, Any] = r.json()["result"]
    return result


def _cn(pem: object) -> str:
    cert = x509.load_pem_x509_certificate(str(pem).encode())
    return str(cert.subject.get_attributes_for_oid(NameOID.COMMON_NAME)[0].value)


def _advertised(gw: Gateway, port: int) -> list[str]:
    """The CA names the edge sends in its CertificateRequest, in order, per `openssl s_client`."""
    out = subprocess.run(
        ["openssl", "s_client", "-connect", f"127.0.0.1:{port}", "-servername", HOST,
         "-CAfile", str(gw.data_dir / "edge-ca.pem")],
        input="", capture_output=True, text=True, timeout=10,
    ).stdout  # fmt: skip
    lines = out.splitlines()
    if "Acceptable client certificate CA names" not in lines:
        return []
    start = lines.index("Acceptable client certificate CA names") + 1
    names: list[str] = []
    for line in lines[start:]:
        if not line.startswith(("CN", "O", "C ", "C=")):
            break
        names.append(line.replace(" = ", "="))
    return names


def _openssl_verify(tmp: Path, ca_pem: object, cert: Path) -> subprocess.CompletedProcess[str]:
    ca_file = tmp / "ca-under-test.pem"
    ca_file.write_text(str(ca_pem))
    return subprocess.run(
        ["openssl", "verify", "-CAfile", str(ca_file), str(cert)], capture_output=True, text=True
    )


def test_rotate_reissue_retire_through_the_edge(
    edge_gateway: tuple[Gateway, int], tmp_path: Path
) -> None:
    gw, port = edge_gateway
    zone = gw.zone_id

    old_cert, old_pem, old_key = _issue(gw, tmp_path, "before-rotation")
    _until(lambda: _curl(gw, port, old_pem, old_key), (200, ""), 5)
    (first,) = _cas(gw).values()
    assert first["status"] == "active" and first["certificates"] == {
        "live": 1, "revoked": 0, "expired": 0
    }  # fmt: skip
    old_ca_id = str(first["id"])
    assert old_cert["certificate_authority"] == {"id": old_ca_id, "name": first["name"]}

    # Rotate: a new active CA, the old one retiring.
    rotated = gw.cli_json("managed-ca", "rotate")
    assert rotated["account_id"] == gw.account_id
    assert rotated["previous_ca"]["id"] == old_ca_id
    new_ca_id = rotated["new_ca"]["id"]
    assert new_ca_id != old_ca_id
    cas = _cas(gw)
    assert [ca["status"] for ca in cas.values()] == ["active", "retiring"]
    assert list(cas) == [new_ca_id, old_ca_id]
    assert cas[new_ca_id]["subject"] != cas[old_ca_id]["subject"]

    # The new CA's key is sealed like the first: not PEM in the database, and it opens only with
    # the master key, for this CA's id, to the key of the CA certificate.
    store = Store(gw.database_url or f"sqlite:///{gw.data_dir / 'mtlsgate.db'}")
    try:
        with store.transaction() as session:
            row = session.get_one(ManagedCA, new_ca_id)
            sealed, ca_pem = row.private_key_sealed, row.certificate_pem
            stored_ids = set(session.scalars(select(ManagedCA.id)))
    finally:
        store.dispose()
    assert stored_ids == {old_ca_id, new_ca_id}
    assert sealed.startswith("aesgcm1:") and "PRIVATE KEY" not in sealed
    opened = KeyStore.for_data_dir(gw.data_dir).open(sealed, context=new_ca_id)
    private = serialization.load_pem_private_key(opened.encode(), password=None)
    raw = serialization.PublicFormat.SubjectPublicKeyInfo
    assert private.public_key().public_bytes(
        serialization.Encoding.PEM, raw
    ) == x509.load_pem_x509_certificate(ca_pem.encode()).public_key().public_bytes(
        serialization.Encoding.PEM, raw
    )

    # A certificate issued now is signed by the new CA (openssl agrees) and works; the one the
    # old CA issued keeps working. The new one's 200 shows the edge has the rotated config.
    new_cert, new_pem, new_key = _issue(gw, tmp_path, "after-rotation")
    assert new_cert["certificate_authority"] == {"id": new_ca_id, "name": cas[new_ca_id]["name"]}
    assert _openssl_verify(tmp_path, cas[new_ca_id]["certificate"], new_pem).returncode == 0
    assert _openssl_verify(tmp_path, cas[old_ca_id]["certificate"], new_pem).returncode != 0
    assert _openssl_verify(tmp_path, cas[old_ca_id]["certificate"], old_pem).returncode == 0
    issuer = openssl("x509", "-in", str(new_pem), "-noout", "-issuer").strip()
    new_cn = _cn(cas[new_ca_id]["certificate"])
    assert new_ca_id[:8] in new_cn
    assert issuer.replace(" = ", "=") == f"issuer=O=mtlsgate, CN={new_cn}"
    _until(lambda: _curl(gw, port, new_pem, new_key), (200, ""), 5)
    assert _curl(gw, port, old_pem, old_key) == (200, "")
    # With an uploaded CA on the hostname too, the advertised CA names (as `openssl s_client`
    # sees them) and explain's candidates are: uploaded, then the active managed CA, then the
    # retiring one; the old certificate is anchored by the retiring CA.
    partner = openssl_root(tmp_path / "partner", kind="ec", cn="Partner Root CA")
    with gw.http() as c:
        up = c.post(
            f"/accounts/{gw.account_id}/mtls_certificates",
            json={"ca": True, "name": "partner", "certificates": partner.cert_pem},
        )
        assert up.status_code == 200, up.text
        partner_id = up.json()["result"]["id"]
        r = c.put(
            f"/zones/{zone}/certificate_authorities/hostname_associations",
            json={"hostnames": [HOST], "mtls_certificate_id": partner_id},
        )
        assert r.status_code == 200, r.text
        # The managed association is still listed (it follows the active CA).
        r = c.get(f"/zones/{zone}/certificate_authorities/hostname_associations")
        assert r.json()["result"]["hostnames"] == [HOST]
    names = [
        "CN=Partner Root CA",
        f"O=mtlsgate, CN={_cn(cas[new_ca_id]['certificate'])}",
        f"O=mtlsgate, CN={_cn(cas[old_ca_id]['certificate'])}",
    ]
    _until(lambda: _advertised(gw, port), names, 5)
    explained = _explain(gw, old_pem)
    candidates = [c["id"] for c in explained["candidate_cas"]]
    assert candidates == [partner_id, new_ca_id, old_ca_id]
    assert explained["anchor"]["id"] == old_ca_id
    assert explained["decision"]["action"] is None

    # The API keeps naming the CA that issued each certificate.
    with gw.http() as c:
        listed = c.get(f"/zones/{zone}/client_certificates", params={"per_page": 50}).json()
    by_id = {item["id"]: item["certificate_authority"]["id"] for item in listed["result"]}
    assert by_id == {old_cert["id"]: old_ca_id, new_cert["id"]: new_ca_id}

    # Retiring the active CA, or the old one while it has a live certificate, is refused.
    refused = gw.cli("managed-ca", "retire", "--ca", new_ca_id, check=False)
    assert refused.returncode == 1 and "active CA" in refused.stderr
    refused = gw.cli("managed-ca", "retire", "--ca", old_ca_id, check=False)
    assert refused.returncode == 1, refused.stdout
    assert "1 active unexpired client certificate" in refused.stderr
    assert str(old_cert["id"]) in refused.stderr

    # Revoking a certificate of the retiring CA works as before: the cert_revoked rule blocks.
    with gw.http() as c:
        r = c.delete(f"/zones/{zone}/client_certificates/{old_cert['id']}")
        assert r.status_code == 200, r.text
    _until(lambda: _curl(gw, port, old_pem, old_key), (403, "revoked"))
    assert _curl(gw, port, new_pem, new_key) == (200, "")
    still = _cas(gw)[old_ca_id]
    assert still["status"] == "retiring"
    assert still["certificates"] == {"live": 0, "revoked": 1, "expired": 0}

    # Reactivated, it is live again, so retiring needs --force; after that the edge no longer
    # trusts the old CA: its certificate fails verification (the cert_verified rule), the new
    # CA's still works.
    with gw.http() as c:
        r = c.patch(f"/zones/{zone}/client_certificates/{old_cert['id']}")
        assert r.status_code == 200, r.text
    _until(lambda: _curl(gw, port, old_pem, old_key), (200, ""))
    assert gw.cli("managed-ca", "retire", "--ca", old_ca_id, check=False).returncode == 1
    retired = gw.cli_json("managed-ca", "retire", "--ca", old_ca_id, "--force")
    assert (retired["id"], retired["status"]) == (old_ca_id, "retired")
    assert retired["live_certificates_cut_off"] == 1
    _until(lambda: _curl(gw, port, old_pem, old_key), (403, "unverified"))
    assert _curl(gw, port, new_pem, new_key) == (200, "")
    assert _advertised(gw, port) == names[:2]
    explained = _explain(gw, old_pem)
    assert [c["id"] for c in explained["candidate_cas"]] == [partner_id, new_ca_id]
    assert explained["anchor"] is None and explained["decision"]["status"] == 403
    assert [ca["status"] for ca in _cas(gw).values()] == ["active", "retired"]
    again = gw.cli("managed-ca", "retire", "--ca", old_ca_id, "--force", check=False)
    assert again.returncode == 1 and "already retired" in again.stderr


def test_rotate_needs_an_account_when_there_are_several(tmp_path: Path) -> None:
    gw = init_gateway(tmp_path / "data", None, zones=("example.com",))
    other = gw.cli_json("account", "create", "--name", "second", "--zone", "second.example")
    refused = gw.cli("managed-ca", "rotate", check=False)
    assert refused.returncode == 1 and "--account" in refused.stderr
    done = json.loads(gw.cli("managed-ca", "rotate", "--account", other["account_id"]).stdout)
    assert done["account_id"] == other["account_id"]
    # The first account's CA is untouched; the second now has two.
    first = gw.cli_json("managed-ca", "list", "--account", gw.account_id)
    assert [ca["status"] for ca in first] == ["active"]
    second = gw.cli_json("managed-ca", "list", "--account", other["account_id"])
    assert [ca["status"] for ca in second] == ["active", "retiring"]
    # A CA of another account cannot be retired by naming the wrong account.
    wrong = gw.cli(
        "managed-ca", "retire", "--account", gw.account_id, "--ca", second[1]["id"], check=False
    )
    assert wrong.returncode == 1 and "no managed CA" in wrong.stderr


def test_a_store_from_before_rotation_upgrades_and_rotates(
    tmp_path: Path, database_url: str | None
) -> None:
    """A store made before migration 0007 (one CA per account, a managed association) keeps
    its CA active and trusted after the upgrade, and can be rotated."""
    from alembic import command
    from alembic.config import Config

    from mtlsgate.edge.runtime.config_sync import load_config
    from mtlsgate.store import db

    gw = init_gateway(tmp_path / "data", database_url, zones=("example.com",))
    gw.start()
    try:
        with gw.http() as c:
            r = c.post(
                f"/zones/{gw.zone_id}/dns_records",
                json={"type": "A", "name": HOST, "content": "127.0.0.1", "proxied": True},
            )
            assert r.status_code == 200, r.text
            r = c.put(
                f"/zones/{gw.zone_id}/certificate_authorities/hostname_associations",
                json={"hostnames": [HOST]},
            )
            assert r.status_code == 200, r.text
    finally:
        gw.stop()
    url = gw.database_url or f"sqlite:///{gw.data_dir / 'mtlsgate.db'}"
    store = Store(url)
    cfg = Config()
    cfg.set_main_option("script_location", str(db._MIGRATIONS))
    with store.engine.begin() as conn:
        cfg.attributes["connection"] = conn
        command.downgrade(cfg, "0006")
    with store.engine.connect() as conn:
        columns = set(conn.exec_driver_sql("SELECT * FROM managed_cas LIMIT 0").keys())
    assert "retired_on" not in columns
    store.dispose()

    # The CLI upgrades the store (as `serve` does) and sees one active CA.
    (ca,) = gw.cli_json("managed-ca", "list")
    assert ca["status"] == "active" and ca["retired_on"] is None
    keystore = KeyStore.for_data_dir(gw.data_dir)
    store = Store(url)
    try:
        with store.transaction() as session:
            host = next(h for h in load_config(session, keystore, default_hostname=None).hosts)
            assert [_cn_of(t) for t in host.trust] == [_cn(ca["certificate"])]
        rotated = gw.cli_json("managed-ca", "rotate")
        assert rotated["previous_ca"]["id"] == ca["id"]
        with store.transaction() as session:
            host = next(h for h in load_config(session, keystore, default_hostname=None).hosts)
            assert len(host.trust) == 2 and _cn_of(host.trust[1]) == _cn(ca["certificate"])
    finally:
        store.dispose()


def _cn_of(cert: x509.Certificate) -> str:
    return str(cert.subject.get_attributes_for_oid(NameOID.COMMON_NAME)[0].value)
