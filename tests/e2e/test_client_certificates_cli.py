"""`mtlsgate client-cert issue`: a key and CSR made locally, signed by the managed CA, written as
client.key (0600), client.pem and chain.pem that `openssl verify` accepts; the API lists it."""

from __future__ import annotations

import json
import os
import resource
import stat
import subprocess
from pathlib import Path

import sqlalchemy

from tests.certs import openssl
from tests.harness import MTLSGATE, Gateway, init_gateway
from tests.pgserver import PostgresServer


def test_client_cert_issue_writes_usable_files(tmp_path: Path, database_url: str | None) -> None:
    gw = init_gateway(tmp_path / "data", database_url, zones=("example.com",))
    out = tmp_path / "device-7"
    record = gw.cli_json(
        "client-cert", "issue", "--zone", "example.com", "--cn", "device-7", "--out", str(out)
    )
    key, pem, chain = out / "client.key", out / "client.pem", out / "chain.pem"
    assert stat.S_IMODE(key.stat().st_mode) == 0o600
    assert record["files"] == {"client.key": str(key), "client.pem": str(pem),
                               "chain.pem": str(chain)}  # fmt: skip
    # The chain verifies the certificate for client authentication, and the key matches it.
    assert openssl("verify", "-CAfile", str(chain), "-purpose", "sslclient", str(pem)).strip() == (
        f"{pem}: OK"
    )
    cert_pub = openssl("x509", "-in", str(pem), "-noout", "-pubkey")
    key_pub = openssl("pkey", "-in", str(key), "-pubout")
    assert cert_pub == key_pub
    assert "CN=device-7" in openssl("x509", "-in", str(pem), "-noout", "-subject").replace(" ", "")
    serial = openssl("x509", "-in", str(pem), "-noout", "-serial").strip().split("=", 1)[1]
    assert record["serial_number"] == serial.lower()

    # Existing files are never overwritten; a bad zone or bad validity is a clear error.
    again = gw.cli("client-cert", "issue", "--zone", "example.com", "--cn", "x", "--out",
                   str(out), check=False)  # fmt: skip
    assert again.returncode != 0 and "already holds client.key" in again.stderr
    nozone = gw.cli("client-cert", "issue", "--zone", "nope.test", "--cn", "x", "--out",
                    str(tmp_path / "o2"), check=False)  # fmt: skip
    assert nozone.returncode != 0 and "nope.test" in nozone.stderr
    baddays = gw.cli("client-cert", "issue", "--zone", "example.com", "--cn", "x", "--out",
                     str(tmp_path / "o3"), "--validity-days", "0", check=False)  # fmt: skip
    assert baddays.returncode != 0 and "between 1 and 3650" in baddays.stderr
    assert not (tmp_path / "o3").exists()  # nothing written when signing failed

    # The API sees the certificate the CLI issued.
    gw.start()
    try:
        with gw.http() as c:
            listed = c.get(f"/zones/{gw.zone_id}/client_certificates").json()["result"]
        assert [(x["id"], x["status"], x["common_name"]) for x in listed] == [
            (record["id"], "active", "device-7")
        ]
        assert json.loads(json.dumps(listed[0]))["certificate"].strip() == pem.read_text().strip()
    finally:
        gw.stop()


def _certificates(gw: Gateway) -> list[tuple[str, str]]:
    """(id, status) of every client certificate in the gateway's store, read directly."""
    url = gw.database_url or f"sqlite:///{gw.data_dir / 'mtlsgate.db'}"
    engine = sqlalchemy.create_engine(url)
    try:
        with engine.connect() as conn:
            rows = conn.execute(sqlalchemy.text("SELECT id, status FROM client_certificates"))
            return [(str(r[0]), str(r[1])) for r in rows]
    finally:
        engine.dispose()


def test_client_cert_issue_checks_the_output_before_signing(
    tmp_path: Path, database_url: str | None
) -> None:
    """An --out that cannot be written, or a --cn the CA would refuse, is a clean error (exit 1,
    no traceback) before anything is signed: no certificate without its key on disk."""
    gw = init_gateway(tmp_path / "data", database_url, zones=("example.com",))
    base = ("client-cert", "issue", "--zone", "example.com")
    for out, cn, message in (
        ("/proc/x", "dev", "cannot write the output files in /proc/x"),
        (str(tmp_path / "tab"), "a\tb", "common name (CN) contains the control character U+0009"),
    ):
        r = gw.cli(*base, "--cn", cn, "--out", out, check=False)
        assert r.returncode == 1, r.stderr
        assert message in r.stderr and "Traceback" not in r.stderr, r.stderr
    assert not (tmp_path / "tab").exists()
    # A directory that exists but cannot be written (read-only): the same, nothing left over.
    locked = tmp_path / "locked"
    locked.mkdir(mode=0o500)
    if os.access(locked, os.W_OK):  # root ignores the mode: make the name a dangling path
        locked.rmdir()
        locked.write_text("a file, not a directory")
        target = locked / "sub"
    else:
        target = locked
    r = gw.cli(*base, "--cn", "dev", "--out", str(target), check=False)
    assert r.returncode == 1 and "cannot write the output files" in r.stderr, r.stderr
    assert "Traceback" not in r.stderr
    assert _certificates(gw) == []


def test_client_cert_issue_names_the_certificate_when_a_write_fails(
    tmp_path: Path, pg: PostgresServer
) -> None:
    """The files are created before signing, but a write can still fail after (a full disk):
    the error names the issued certificate so it can be revoked. PostgreSQL, so that the
    process's only file writes are the output files: RLIMIT_FSIZE then fails the key's write."""
    gw = init_gateway(tmp_path / "data", pg.create_database("cliwrite"), zones=("example.com",))
    out = tmp_path / "full"
    args = ["client-cert", "issue", "--zone", "example.com", "--cn", "dev", "--out", str(out)]

    def small_files() -> None:
        resource.setrlimit(resource.RLIMIT_FSIZE, (64, 64))

    r = subprocess.run(
        [MTLSGATE, *args, *gw.store_args], capture_output=True, text=True, timeout=120,
        preexec_fn=small_files,
    )  # fmt: skip
    ((cert_id, status),) = _certificates(gw)
    assert status == "active"
    assert r.returncode == 1 and "Traceback" not in r.stderr, r.stderr
    assert f"certificate {cert_id} was issued but writing {out} failed" in r.stderr, r.stderr
    assert f"DELETE /zones/{gw.zone_id}/client_certificates/{cert_id}" in r.stderr
    assert stat.S_IMODE((out / "client.key").stat().st_mode) == 0o600
