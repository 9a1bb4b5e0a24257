"""`mtlsgate explain`: the service of POST /zones/{zone_id}/mtls/explain from the command line
(its agreement with the edge is in tests/e2e/test_explain_agrees.py); exit 0 with the JSON result,
exit 1 with a one-line error for bad input."""

from __future__ import annotations

import json
from pathlib import Path

from tests.certs import openssl_leaf, openssl_root
from tests.harness import init_gateway


def test_explain_cli_result_and_errors(tmp_path: Path) -> None:
    gw = init_gateway(tmp_path / "data", None, zones=("example.com",))
    ca = openssl_root(tmp_path, kind="ec", cn="Devices CA")
    leaf = openssl_leaf(tmp_path, ca, kind="ec", cn="device-1")
    base = ("explain", "--zone", "example.com", "--hostname", "api.example.com")

    out = gw.cli(*base, "--cert", str(leaf.cert_path))
    result = json.loads(out.stdout)
    assert result["served"] is False
    assert result["decision"]["outcome"] == "handshake_failure"
    assert result["request"] == {"method": "GET", "path": "/"}
    # The zone may be given by id as well.
    by_id = gw.cli("explain", "--zone", gw.zone_id, "--hostname", "api.example.com",
                   "--cert", str(leaf.cert_path), "--path", "/a", "--method", "put")  # fmt: skip
    assert json.loads(by_id.stdout)["request"] == {"method": "PUT", "path": "/a"}

    bad = tmp_path / "bad.pem"
    bad.write_text("-----BEGIN CERTIFICATE-----\nnot base64\n-----END CERTIFICATE-----\n")
    key_only = tmp_path / "key.pem"
    key_only.write_text(leaf.key_pem)
    for args, message in (
        (("--cert", str(bad)), "not a valid PEM certificate chain"),
        (("--cert", str(key_only)), "PRIVATE KEY block"),
        (("--cert", str(tmp_path / "missing.pem")), "cannot read"),
        (("--cert", str(leaf.cert_path), "--method", "FETCH"), "method must be"),
        (("--cert", str(leaf.cert_path), "--path", "x"), "path must be"),
    ):
        proc = gw.cli(*base, *args, check=False)
        assert proc.returncode == 1, (args, proc.stderr)
        assert message in proc.stderr, (args, proc.stderr)
        assert "Traceback" not in proc.stderr and proc.stdout == ""
    proc = gw.cli("explain", "--zone", "nowhere.test", "--hostname", "a.nowhere.test",
                  "--cert", str(leaf.cert_path), check=False)  # fmt: skip
    assert proc.returncode == 1 and "no zone named" in proc.stderr
    proc = gw.cli(*base[:3], "--hostname", "api.other.org", "--cert", str(leaf.cert_path),
                  check=False)  # fmt: skip
    assert proc.returncode == 1 and "not in zone example.com" in proc.stderr
