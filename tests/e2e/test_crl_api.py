"""The CRL, crl_settings and deny-list API through a real `mtlsgate serve` (SQLite and
PostgreSQL), with CRLs made by the `openssl ca` CLI: formats, the replacement rule, refusals,
permissions, account isolation, config-version bumps and no orphans after a CA is deleted."""

from __future__ import annotations

import base64
from pathlib import Path
from typing import Any

import httpx
import sqlalchemy

from tests.certs import openssl_leaf, openssl_root
from tests.crl_tools import OpensslCA, fingerprint_of, pem_to_der, serial_of
from tests.e2e.test_auth import assert_error, assert_ok
from tests.harness import Gateway


def _version(gw: Gateway) -> int:
    return int(httpx.get(f"http://127.0.0.1:{gw.port}/healthz").json()["config_version"])


def _upload_ca(c: httpx.Client, gw: Gateway, pem: str) -> str:
    r = c.post(
        f"/accounts/{gw.account_id}/mtls_certificates", json={"ca": True, "certificates": pem}
    )
    return str(assert_ok(r)["result"]["id"])


def test_crl_upload_replace_and_refuse(gateway: Gateway, tmp_path: Path) -> None:
    gw = gateway
    ca = OpensslCA.create(tmp_path / "ca")
    revoked = ca.issue("revoked")
    ca.revoke(revoked)
    crl1 = ca.gencrl()
    crl2 = ca.gencrl()
    impostor = OpensslCA.create(tmp_path / "impostor", cn="Devices CA")
    with gw.http() as c:
        ca_id = _upload_ca(c, gw, ca.cert.cert_pem)
        path = f"/accounts/{gw.account_id}/mtls_certificates/{ca_id}/crl"

        # Nothing stored yet: reported as missing, fail_open by default.
        got = assert_ok(c.get(path))["result"]
        assert got["status"] == "missing" and got["stale_policy"] == "fail_open"
        assert got["crl_number"] is None and got["enforced"] == "none"
        assert_error(c.delete(path), 404, 1533, contains="No CRL is stored")

        before = _version(gw)
        res = assert_ok(c.put(path, json={"crl": crl1}))["result"]
        assert _version(gw) == before + 1
        assert res["issuer"] == "CN=Devices CA" and res["crl_number"] == "1"
        assert res["revoked_count"] == 1 and res["status"] == "current" and res["stale"] is False
        assert res["source"] == "uploaded" and res["enforced"] == "crl"
        assert res["this_update"].endswith("Z") and res["next_update"] > res["this_update"]

        # The same CRL again: idempotent, no change, no bump.
        before = _version(gw)
        assert assert_ok(c.put(path, json={"crl": crl1}))["result"]["crl_number"] == "1"
        assert _version(gw) == before

        # A higher number replaces it, given as base64 DER.
        der2 = base64.b64encode(pem_to_der(crl2, tmp_path)).decode()
        assert assert_ok(c.put(path, json={"crl": der2}))["result"]["crl_number"] == "2"
        # A lower number is refused and the stored CRL is kept.
        assert_error(
            c.put(path, json={"crl": crl1}), 400, 1531, contains="lower than the stored CRL's (2)"
        )
        # A different CRL with the same number (the crlnumber file rewound) is refused too.
        (ca.dir / "crlnumber").write_text("02\n")
        same_number = ca.gencrl(days=2)
        assert_error(c.put(path, json={"crl": same_number}), 400, 1531, contains="same CRL number")
        # Signed by another key (same CA name): refused.
        assert_error(
            c.put(path, json={"crl": impostor.gencrl()}),
            400,
            1530,
            contains="signature does not verify with this CA's public key",
        )
        assert_error(c.put(path, json={"crl": "garbage!"}), 400, 1530, contains="neither PEM")
        assert_error(c.put(path, json={}), 400, 1001)
        assert assert_ok(c.get(path))["result"]["crl_number"] == "2"

        # A certificate uploaded with "ca": false has no CRL.
        root = openssl_root(tmp_path / "r", kind="ec")
        leaf = openssl_leaf(tmp_path / "l", root, kind="ec")
        r = c.post(
            f"/accounts/{gw.account_id}/mtls_certificates",
            json={"ca": False, "certificates": leaf.cert_pem, "private_key": leaf.key_pem},
        )
        leaf_id = assert_ok(r)["result"]["id"]
        assert_error(
            c.put(f"/accounts/{gw.account_id}/mtls_certificates/{leaf_id}/crl", json={"crl": crl1}),
            400,
            1532,
        )

        # DELETE removes it: reported missing again.
        res = assert_ok(c.delete(path))["result"]
        assert res["status"] == "missing" and res["crl_number"] is None


def test_crl_settings(gateway: Gateway, tmp_path: Path) -> None:
    gw = gateway
    plain = OpensslCA.create(tmp_path / "plain")
    with_cdp = OpensslCA.create(tmp_path / "cdp", cn="CDP CA", cdp="http://127.0.0.1:9/x.crl")
    with gw.http() as c:
        plain_id = _upload_ca(c, gw, plain.cert.cert_pem)
        cdp_id = _upload_ca(c, gw, with_cdp.cert.cert_pem)
        base = f"/accounts/{gw.account_id}/mtls_certificates"
        before = _version(gw)
        res = assert_ok(
            c.patch(f"{base}/{plain_id}/crl_settings", json={"stale_policy": "fail_closed"})
        )["result"]
        assert _version(gw) == before + 1
        assert res["stale_policy"] == "fail_closed" and res["enforced"] == "all_revoked"
        assert res["status"] == "missing" and res["fetch"]["enabled"] is False
        assert_error(
            c.patch(f"{base}/{plain_id}/crl_settings", json={"stale_policy": "maybe"}),
            400,
            1001,
            contains="stale_policy must be one of fail_open, fail_closed",
        )
        assert_error(
            c.patch(f"{base}/{plain_id}/crl_settings", json={"fetch": True}),
            400,
            1534,
            contains="no http:// CRL distribution point",
        )
        assert_error(
            c.patch(
                f"{base}/{plain_id}/crl_settings",
                json={"fetch": True, "fetch_url": "https://127.0.0.1/x.crl"},
            ),
            400,
            1534,
            contains="must be an http:// URL",
        )
        assert_error(c.patch(f"{base}/{plain_id}/crl_settings", json={"fetch": "yes"}), 400, 1001)
        # The CA's distribution point is used when no URL is given.
        res = assert_ok(c.patch(f"{base}/{cdp_id}/crl_settings", json={"fetch": True}))["result"]
        assert res["fetch"]["enabled"] is True
        assert res["fetch"]["urls"] == ["http://127.0.0.1:9/x.crl"]
        res = assert_ok(
            c.patch(
                f"{base}/{cdp_id}/crl_settings",
                json={"fetch_url": "http://127.0.0.1:10/y.crl"},
            )
        )["result"]
        assert res["fetch"]["urls"] == ["http://127.0.0.1:10/y.crl"]
        res = assert_ok(
            c.patch(f"{base}/{cdp_id}/crl_settings", json={"fetch": False, "fetch_url": None})
        )["result"]
        assert res["fetch"] == {
            "enabled": False,
            "url": None,
            "urls": ["http://127.0.0.1:9/x.crl"],
            "last_fetch_at": res["fetch"]["last_fetch_at"],
            "last_fetch_status": res["fetch"]["last_fetch_status"],
            "next_fetch_at": None,
        }


def test_deny_list(gateway: Gateway, tmp_path: Path) -> None:
    gw = gateway
    ca = OpensslCA.create(tmp_path / "ca")
    leaf = ca.issue("device")
    serial, fingerprint = serial_of(leaf), fingerprint_of(leaf)
    path = f"/accounts/{gw.account_id}/mtls_deny_list"
    with gw.http() as c:
        assert assert_ok(c.get(path))["result"] == []
        before = _version(gw)
        by_serial = assert_ok(
            c.post(path, json={"serial_number": serial.upper(), "reason": "lost laptop"})
        )["result"]
        assert _version(gw) == before + 1
        assert by_serial["serial_number"] == serial and by_serial["reason"] == "lost laptop"
        assert len(by_serial["id"]) == 32 and by_serial["fingerprint_sha256"] is None
        colons = ":".join(fingerprint[i : i + 2] for i in range(0, 64, 2)).upper()
        by_fp = assert_ok(c.post(path, json={"fingerprint_sha256": colons}))["result"]
        assert by_fp["fingerprint_sha256"] == fingerprint and by_fp["serial_number"] is None
        # "00:10:00" is the same serial as "1000".
        assert_error(
            c.post(path, json={"serial_number": "00:10:00"}), 409, 1541, contains=by_serial["id"]
        )
        assert_error(c.post(path, json={"serial_number": "xyz"}), 400, 1540, contains="in hex")
        assert_error(
            c.post(path, json={"fingerprint_sha256": "ab" * 31}), 400, 1540, contains="64 hex"
        )
        assert_error(c.post(path, json={}), 400, 1540, contains="exactly one of")
        assert_error(
            c.post(path, json={"serial_number": serial, "fingerprint_sha256": fingerprint}),
            400,
            1540,
        )
        listed = assert_ok(c.get(path))["result"]
        assert [e["id"] for e in listed] == [by_serial["id"], by_fp["id"]]
        assert assert_ok(c.delete(f"{path}/{by_serial['id']}"))["result"]["id"] == by_serial["id"]
        assert_error(c.delete(f"{path}/{by_serial['id']}"), 404, 1404)
        assert [e["id"] for e in assert_ok(c.get(path))["result"]] == [by_fp["id"]]


def test_permissions_isolation_and_no_orphans(gateway: Gateway, tmp_path: Path) -> None:
    gw = gateway
    ca = OpensslCA.create(tmp_path / "ca")
    crl = ca.gencrl()
    read = gw.cli_json("token", "create", "--permission", "Account: SSL and Certificates Read")
    other = gw.cli_json("account", "create", "--name", "other", "--zone", "other.net")
    with gw.http() as c:
        ca_id = _upload_ca(c, gw, ca.cert.cert_pem)
        crl_path = f"/accounts/{gw.account_id}/mtls_certificates/{ca_id}/crl"
        deny = f"/accounts/{gw.account_id}/mtls_deny_list"
        assert_ok(c.put(crl_path, json={"crl": crl}))
        assert_ok(
            c.patch(
                f"/accounts/{gw.account_id}/mtls_certificates/{ca_id}/crl_settings",
                json={"stale_policy": "fail_closed"},
            )
        )
        entry = assert_ok(c.post(deny, json={"serial_number": "01"}))["result"]
    with gw.http(read["api_token"]) as c:
        assert assert_ok(c.get(crl_path))["result"]["crl_number"] == "1"
        assert len(assert_ok(c.get(deny))["result"]) == 1
        assert_error(c.put(crl_path, json={"crl": crl}), 403, 10000)
        assert_error(c.delete(crl_path), 403, 10000)
        assert_error(c.post(deny, json={"serial_number": "02"}), 403, 10000)
        assert_error(c.delete(f"{deny}/{entry['id']}"), 403, 10000)
    with gw.http(other["api_token"]) as c:
        # Another account's token sees nothing of this account, not even that it exists.
        for r in (c.get(crl_path), c.get(deny), c.put(crl_path, json={"crl": crl})):
            assert r.status_code in (403, 404), r.text
            assert r.json()["success"] is False
        # Its own paths with this account's CA id: not found.
        own = f"/accounts/{other['account_id']}/mtls_certificates/{ca_id}/crl"
        assert c.get(own).status_code == 404
        assert assert_ok(c.get(f"/accounts/{other['account_id']}/mtls_deny_list"))["result"] == []

    # Deleting the CA deletes its CRL and settings: no orphan rows.
    with gw.http() as c:
        assert_ok(c.delete(f"/accounts/{gw.account_id}/mtls_certificates/{ca_id}"))
        assert_error(c.get(crl_path), 404, 1404)
    engine = sqlalchemy.create_engine(gw.database_url or f"sqlite:///{gw.data_dir / 'mtlsgate.db'}")
    try:
        with engine.connect() as conn:
            for table in ("mtls_certificate_crls", "mtls_certificate_revocation_settings"):
                count: Any = conn.execute(sqlalchemy.text(f"SELECT count(*) FROM {table}"))
                assert count.scalar() == 0, table
    finally:
        engine.dispose()
