"""A frozen edge worker cannot let a revoked certificate through (edge/liveness.py).

The API settles a revocation once every *running* edge has the change; a worker that stopped
heartbeating (here: frozen with SIGSTOP) stops counting after the running window, so the status
reaches `revoked` without it. When that worker wakes up it still holds the old configuration:
it must refuse every request (503) until its configuration is confirmed current, and so
never serve the revoked certificate. Heartbeats are scaled down so the test takes seconds.
"""

from __future__ import annotations

import os
import re
import signal
import sqlite3
import subprocess
import time
from pathlib import Path

import pytest

from tests.e2e.test_client_certificates_edge import (
    HOST,
    curl,
    managed_mtls,
    openssl_req,
    until,
)
from tests.harness import Gateway, edge_gateway


def _serving_workers(gw: Gateway, port: int) -> list[int]:
    """The pids of the edge workers that have built their configuration and listen on `port`
    (a worker still starting has no heartbeat yet: freezing it would prove nothing)."""
    log = (gw.data_dir.parent / f"serve-{gw.port}.log").read_text(errors="replace")
    pattern = rf"edge worker \S+:(\d+) listening on 127\.0\.0\.1:{port} "
    return [int(pid) for pid in re.findall(pattern, log)]


def _applied_everywhere(gw: Gateway) -> bool:
    """Both edge workers have reported (heartbeat) the store's current config version."""
    db = sqlite3.connect(gw.data_dir / "mtlsgate.db")
    try:
        (version,) = db.execute("SELECT version FROM config_state WHERE id = 1").fetchone()
        rows = db.execute("SELECT config_version FROM edge_nodes").fetchall()
    finally:
        db.close()
    return len(rows) >= 2 and all(v >= version for (v,) in rows)


# with_mtls: frozen once both workers hold the hostname's association and rule.
# before_mtls: frozen before the association was made, so its configuration serves the hostname
# without asking for a certificate (the fence must cover every hostname, not only the ones its
# stale configuration knows as mTLS: CI once saw this worker let the revoked certificate through).
@pytest.mark.parametrize("freeze", ["with_mtls", "before_mtls"])
def test_a_frozen_worker_refuses_after_the_api_stopped_waiting_for_it(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, freeze: str
) -> None:
    # Heartbeat 0.5 s: a worker fences itself after 2 s, the API stops waiting after 3.75 s.
    monkeypatch.setenv("MTLSGATE_EDGE_HEARTBEAT_INTERVAL", "0.5")
    with edge_gateway(tmp_path / "data", None, (HOST,), workers=2) as (gw, port):
        until(lambda: len(_serving_workers(gw, port)), 2, 20)
        time.sleep(1.0)  # two heartbeats of each
        workers = _serving_workers(gw, port)
        try:
            _frozen_worker_scenario(gw, port, tmp_path, workers[0], freeze == "before_mtls")
        finally:
            os.kill(workers[0], signal.SIGCONT)  # (never leave a stopped process behind)


def _frozen_worker_scenario(
    gw: Gateway, port: int, tmp_path: Path, frozen: int, freeze_first: bool
) -> None:
    zone = gw.zone_id
    frozen_at = time.monotonic()
    if freeze_first:
        os.kill(frozen, signal.SIGSTOP)
    managed_mtls(gw)
    with gw.http() as c:
        key, csr = openssl_req(tmp_path / "client")
        r = c.post(f"/zones/{zone}/client_certificates", json={"csr": csr, "validity_days": 30})
        assert r.status_code == 200, r.text
        cert_id = r.json()["result"]["id"]
        pem = tmp_path / "client.pem"
        pem.write_text(r.json()["result"]["certificate"])
        if not freeze_first:
            until(lambda: curl(gw, port, pem, key), 200, 10)
            # (A 200 may come from a worker that does not ask for certificates yet.)
            until(lambda: _applied_everywhere(gw), True, 10)
            frozen_at = time.monotonic()
            os.kill(frozen, signal.SIGSTOP)
        url = f"/zones/{zone}/client_certificates/{cert_id}"
        assert c.delete(url).json()["result"]["status"] == "pending_revocation"
        # The other worker applies it; the frozen one drops out of "running": revoked.
        until(lambda: c.get(url).json()["result"]["status"], "revoked", 15)
        settled = time.monotonic() - frozen_at
        assert settled >= 2.0, "settled before the frozen worker could have fenced itself"

        # Connections made while it is frozen wait in its accept queue (SO_REUSEPORT
        # spreads them over both workers); it answers them first thing when it wakes.
        args = ["curl", "-s", "-o", "/dev/null", "-w", "%{http_code}", "--max-time", "15",
                "--resolve", f"{HOST}:{port}:127.0.0.1",
                "--cacert", str(gw.data_dir / "edge-ca.pem"),
                "--cert", str(pem), "--key", str(key), f"https://{HOST}:{port}/"]  # fmt: skip
        pending = [subprocess.Popen(args, stdout=subprocess.PIPE, text=True) for _ in range(12)]
        time.sleep(1.0)
        os.kill(frozen, signal.SIGCONT)
        codes = [int(p.communicate(timeout=30)[0] or 0) for p in pending]
    # Never the revoked certificate through: 403 from the up-to-date worker (the rule),
    # 503 from the one that woke up with an unconfirmed configuration.
    assert 200 not in codes, codes
    assert set(codes) <= {403, 503}, codes
    assert 503 in codes, f"no request reached the frozen worker: {codes}"
    # Once it has caught up, it answers like the other one.
    until(lambda: {curl(gw, port, pem, key) for _ in range(6)}, {403}, 10)
