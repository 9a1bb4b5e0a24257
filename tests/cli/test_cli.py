"""The command line forms later issues and outside checks rely on."""

from __future__ import annotations

import json
import stat
from pathlib import Path

import httpx

from tests.harness import Gateway, init_gateway, run_cli


def test_init_prints_one_json_object_and_writes_bootstrap(tmp_path: Path) -> None:
    data = tmp_path / "d"
    proc = run_cli("init", "--data-dir", str(data), "--zone", "example.com", "--zone", "Other.ORG.")
    out = json.loads(proc.stdout)  # stdout is exactly one JSON object
    assert set(out) == {"account_id", "zones", "api_token"}
    assert len(out["account_id"]) == 32
    assert set(out["zones"]) == {"example.com", "other.org"}
    assert all(len(z) == 32 for z in out["zones"].values())
    assert len(out["api_token"]) == 40
    bootstrap = data / "bootstrap.json"
    assert json.loads(bootstrap.read_text()) == out
    assert stat.S_IMODE(bootstrap.stat().st_mode) == 0o600
    assert stat.S_IMODE((data / "master.key").stat().st_mode) == 0o600
    assert proc.stderr  # logs go to stderr

    # Re-running only adds new zones; bootstrap.json and the token stay as they were.
    before = bootstrap.read_bytes()
    again = json.loads(
        run_cli(
            "init", "--data-dir", str(data), "--zone", "example.com", "--zone", "new.net"
        ).stdout
    )
    assert again["account_id"] == out["account_id"]
    assert again["zones"]["example.com"] == out["zones"]["example.com"]
    assert "new.net" in again["zones"]
    assert bootstrap.read_bytes() == before


def test_init_refuses_bad_zone(tmp_path: Path) -> None:
    proc = run_cli("init", "--data-dir", str(tmp_path / "d"), "--zone", "not a zone", check=False)
    assert proc.returncode != 0
    assert "not a valid hostname" in proc.stderr
    assert "Traceback" not in proc.stderr


def test_token_create_and_account_commands(gateway: Gateway) -> None:
    zone_id = gateway.zones["example.com"]
    by_name = gateway.cli_json(
        "token", "create", "--permission", "SSL and Certificates Read", "--zone", "example.com"
    )
    by_id = gateway.cli_json(
        "token", "create", "--permission", "SSL and Certificates Read", "--zone", zone_id
    )
    for tok in (by_name, by_id):
        assert set(tok) == {"id", "api_token"}
        with gateway.http(tok["api_token"]) as c:
            assert c.get(f"/zones/{zone_id}/certificate_authorities/hostname_associations").json()[
                "success"
            ]
            # Exactly the permission asked for: no write, no other zone.
            r = c.put(
                f"/zones/{zone_id}/certificate_authorities/hostname_associations",
                json={"hostnames": []},
            )
            assert r.status_code == 403
            assert c.get(f"/zones/{gateway.zones['other.org']}").status_code == 403

    bad = gateway.cli("token", "create", "--permission", "Make Coffee", check=False)
    assert bad.returncode == 1
    assert "unknown permission" in bad.stderr

    plan = gateway.cli_json("account", "set-plan", "--account", gateway.account_id, "--plan", "pro")
    assert plan == {"id": gateway.account_id, "plan": "pro"}
    with gateway.http() as c:
        assert c.get(f"/accounts/{gateway.account_id}").json()["result"]["plan"] == "pro"
    quota = gateway.cli_json(
        "account", "set-ca-quota", "--account", gateway.account_id, "--quota", "7"
    )
    assert quota == {"id": gateway.account_id, "ca_quota": 7}


def test_serve_refuses_uninitialised_dir_and_bad_listen(tmp_path: Path) -> None:
    proc = run_cli("serve", "--data-dir", str(tmp_path / "empty"), check=False)
    assert proc.returncode != 0
    assert "mtlsgate init" in proc.stderr
    gw = init_gateway(tmp_path / "d", None)
    proc = run_cli("serve", "--data-dir", str(gw.data_dir), "--api", "nonsense", check=False)
    assert proc.returncode != 0
    assert "HOST:PORT" in proc.stderr


def test_healthz_reports_json(gateway: Gateway) -> None:
    r = httpx.get(f"http://127.0.0.1:{gateway.port}/healthz")
    assert r.status_code == 200
    assert r.json()["status"] == "ok"
