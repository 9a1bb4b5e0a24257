"""How fast a managed client certificate's revocation reaches the edge: from sending
`DELETE /zones/{zone_id}/client_certificates/{id}` until the edge answers 403 through a
`cf.tls_client_auth.cert_revoked` rule, on a new connection and on an already open keep-alive
connection; and, the other way, from `PATCH` (reactivate) until 200 again. Target: 1 s.

A real `mtlsgate serve` (API + one edge worker) on 127.0.0.1, the echo origin, a CSR from
`openssl req`, and Python's ssl module as the client (polled back to back, so the figure is the
propagation, not a polling interval). Each try starts from a settled `active` certificate; the
figure is the median (and worst) of the tries.

Usage::

    .venv/bin/python bench/revocation_propagation.py               # 7 tries each way, SQLite
    .venv/bin/python bench/revocation_propagation.py --tries 15
    .venv/bin/python bench/revocation_propagation.py --database-url postgresql+psycopg://...
"""

from __future__ import annotations

import argparse
import http.client
import json
import socket
import ssl
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

import httpx

HOST = "api.example.com"
RULE = (
    f'(http.host in {{"{HOST}"}} and '
    "(not cf.tls_client_auth.cert_verified or cf.tls_client_auth.cert_revoked))"
)
MTLSGATE = str(Path(sys.executable).parent / "mtlsgate")


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


class Client:
    """TLS connections to the edge with the client certificate; `get` on a kept connection."""

    def __init__(self, port: int, cafile: Path, cert: Path, key: Path) -> None:
        self.port = port
        self.ctx = ssl.create_default_context(cafile=str(cafile))
        self.ctx.load_cert_chain(str(cert), str(key))
        self.sock: ssl.SSLSocket | None = None

    def connect(self) -> None:
        raw = socket.create_connection(("127.0.0.1", self.port), timeout=5)
        self.sock = self.ctx.wrap_socket(raw, server_hostname=HOST)

    def get(self) -> int:
        assert self.sock is not None
        self.sock.sendall(f"GET / HTTP/1.1\r\nHost: {HOST}\r\n\r\n".encode())
        resp = http.client.HTTPResponse(self.sock)  # type: ignore[arg-type]
        resp.begin()
        resp.read()
        if resp.will_close:
            raise RuntimeError("the edge closed the keep-alive connection")
        return resp.status

    def get_new(self) -> int:
        self.connect()
        try:
            return self.get()
        finally:
            self.close()

    def close(self) -> None:
        if self.sock is not None:
            self.sock.close()
            self.sock = None


def wait_for(check: Callable[[], object], expected: object, timeout: float = 10.0) -> float:
    start = time.perf_counter()
    while time.perf_counter() - start < timeout:
        try:
            if check() == expected:
                return time.perf_counter() - start
        except (OSError, http.client.HTTPException):
            time.sleep(0.01)  # the edge is still starting
    raise RuntimeError(f"no {expected!r} within {timeout}s")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--tries", type=int, default=7)
    parser.add_argument("--database-url", default=None)
    parser.add_argument("--json", type=Path, default=None, help="also write the figures here")
    args = parser.parse_args()

    work = Path(tempfile.mkdtemp(prefix="mtlsgate-revocation-bench-"))
    data = work / "data"
    store = ["--data-dir", str(data)] + (
        ["--database-url", args.database_url] if args.database_url else []
    )
    boot = json.loads(
        subprocess.run(
            [MTLSGATE, "init", *store, "--zone", "example.com"],
            check=True, capture_output=True, text=True,
        ).stdout
    )  # fmt: skip
    api_port, edge_port, origin_port = free_port(), free_port(), free_port()
    procs = [
        subprocess.Popen(
            [MTLSGATE, "echo-origin", "--listen", f"127.0.0.1:{origin_port}"],
            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
        ),
        subprocess.Popen(
            [MTLSGATE, "serve", *store, "--api", f"127.0.0.1:{api_port}",
             "--edge", f"127.0.0.1:{edge_port}", "--workers", "1"],
            stdout=subprocess.DEVNULL, stderr=(work / "serve.log").open("wb"),
        ),
    ]  # fmt: skip
    try:
        api = httpx.Client(
            base_url=f"http://127.0.0.1:{api_port}/client/v4",
            headers={"Authorization": f"Bearer {boot['api_token']}"},
            timeout=30,
        )
        zone = boot["zones"]["example.com"]
        wait_for(lambda: _healthy(api_port), True, 30)
        for method, path, body in (
            ("POST", f"/zones/{zone}/dns_records",
             {"type": "A", "name": HOST, "content": "127.0.0.1", "proxied": True}),
            ("PUT", f"/zones/{zone}/rulesets/phases/http_request_origin/entrypoint",
             {"rules": [{"expression": "true", "action": "route",
                         "action_parameters": {"origin": {"port": origin_port}}}]}),
            ("PUT", f"/zones/{zone}/certificate_authorities/hostname_associations",
             {"hostnames": [HOST]}),
            ("PUT", f"/zones/{zone}/rulesets/phases/http_request_firewall_custom/entrypoint",
             {"rules": [{"expression": RULE, "action": "block"}]}),
        ):  # fmt: skip
            api.request(method, path, json=body).raise_for_status()
        key, csr = work / "client.key", work / "client.csr"
        subprocess.run(
            ["openssl", "req", "-new", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:P-256",
             "-nodes", "-keyout", str(key), "-out", str(csr), "-subj", "/CN=bench-device"],
            check=True, capture_output=True,
        )  # fmt: skip
        r = api.post(
            f"/zones/{zone}/client_certificates",
            json={"csr": csr.read_text(), "validity_days": 30},
        )
        r.raise_for_status()
        cert_id = r.json()["result"]["id"]
        pem = work / "client.pem"
        pem.write_text(r.json()["result"]["certificate"])
        url = f"/zones/{zone}/client_certificates/{cert_id}"
        client = Client(edge_port, data / "edge-ca.pem", pem, key)
        wait_for(client.get_new, 200, 10)

        def status() -> str:
            return str(api.get(url).json()["result"]["status"])

        figures: dict[str, list[float]] = {
            "revoke_new": [], "revoke_open": [], "revoke_settled": [],
            "reactivate_new": [], "reactivate_open": [],
        }  # fmt: skip
        for _ in range(args.tries):
            for kind in ("new", "open"):
                if kind == "open":
                    client.connect()
                    assert client.get() == 200
                probe = client.get if kind == "open" else client.get_new
                start = time.perf_counter()
                api.delete(url).raise_for_status()
                wait_for(probe, 403)
                figures[f"revoke_{kind}"].append(time.perf_counter() - start)
                if kind == "new":
                    wait_for(status, "revoked")
                    figures["revoke_settled"].append(time.perf_counter() - start)
                start = time.perf_counter()
                api.patch(url, json={"reactivate": True}).raise_for_status()
                wait_for(probe, 200)
                figures[f"reactivate_{kind}"].append(time.perf_counter() - start)
                client.close()
                wait_for(status, "active")
        print(f"revocation propagation, {args.tries} tries each "
              f"({'PostgreSQL' if args.database_url else 'SQLite'}, 1 edge worker):")  # fmt: skip
        labels = {
            "revoke_new": "DELETE -> 403, new connection",
            "revoke_open": "DELETE -> 403, open keep-alive connection",
            "revoke_settled": "DELETE -> status revoked (edge heartbeat)",
            "reactivate_new": "PATCH -> 200, new connection",
            "reactivate_open": "PATCH -> 200, open keep-alive connection",
        }
        for name, values in figures.items():
            ms = sorted(v * 1000 for v in values)
            verdict = "" if name == "revoke_settled" else "PASS" if ms[-1] < 1000 else "FAIL"
            print(f"  {labels[name]:<44} median {statistics.median(ms):7.1f} ms  "
                  f"worst {ms[-1]:7.1f} ms  {verdict}")  # fmt: skip
        if args.json is not None:
            args.json.write_text(json.dumps(figures, indent=2))
    finally:
        for proc in procs:
            proc.terminate()
        for proc in procs:
            proc.wait(15)


def _healthy(port: int) -> bool:
    try:
        return httpx.get(f"http://127.0.0.1:{port}/healthz", timeout=1).status_code == 200
    except httpx.HTTPError:
        time.sleep(0.05)
        return False


if __name__ == "__main__":
    main()
