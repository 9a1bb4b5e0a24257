"""mtlsgate's edge against nginx as the peer, per server CPU-second, in one run.

Both servers sit on core 0 (`taskset -c 0`); the load generators and the shared echo origin
(`mtlsgate echo-origin`) sit on core 1. Throughput figures are divided by the CPU time
(user + sys, from /proc/<pid>/stat) of the whole server process tree: for mtlsgate the
`serve` process and all its descendants (API, config watching, edge workers), for nginx the
master and its worker. A saturated client therefore does not bias the ratio.

Metrics (ratio = mtlsgate / nginx):

* full mTLS handshakes per CPU-s: `openssl s_time -new -tls1_3` with a client certificate,
  no SNI (mtlsgate serves it with `--default-hostname`); target 1.1, at least 1.0.
* keep-alive proxied requests per CPU-s: `ab -k` (HTTP/1.0 keep-alive, client certificate via
  `-E`), the seed's rule and the managed client-certificate headers on; target 0.8, at
  least 0.7.
* p99 latency at a fixed moderate request rate (open loop, from the intended send time).
* memory (PSS of the tree) per idle keep-alive mTLS connection, N connections held open
  (10,000 by default); mtlsgate target under 100 KiB.
* propagation (mtlsgate only): from the API call that removes the hostname association, or
  adds a blocking rule, until a new connection sees it; target 1 s.

Usage::

    .venv/bin/python bench/edge_vs_nginx.py            # 5 rounds, about 6 minutes
    .venv/bin/python bench/edge_vs_nginx.py --quick    # 1 round, short durations
    .venv/bin/python bench/edge_vs_nginx.py --json out.json

Needs root (nginx and apache2-utils are installed with apt-get if missing) and 2 cores.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import os
import platform
import re
import resource
import shutil
import signal
import socket
import ssl
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

HOST = "api.example.com"
SEED_RULE = f'(http.host in {{"{HOST}"}} and not cf.tls_client_auth.cert_verified)'
MTLSGATE = str(Path(sys.executable).parent / "mtlsgate")
CLK_TCK = os.sysconf("SC_CLK_TCK")
SERVER_CPU = "0"
LOAD_CPU = "1"

# --------------------------------------------------------------------------------------------
# Processes and /proc accounting


def _children_map() -> dict[int, list[int]]:
    kids: dict[int, list[int]] = {}
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            with open(f"/proc/{entry}/stat") as f:
                stat = f.read()
        except OSError:
            continue
        ppid = int(stat[stat.rindex(")") + 2 :].split()[1])
        kids.setdefault(ppid, []).append(int(entry))
    return kids


def tree(root: int) -> list[int]:
    """`root` and all its live descendants."""
    kids = _children_map()
    out, todo = [], [root]
    while todo:
        pid = todo.pop()
        out.append(pid)
        todo.extend(kids.get(pid, []))
    return out


def tree_cpu(root: int) -> float:
    """User + sys seconds of the live process tree under `root`."""
    total = 0
    for pid in tree(root):
        try:
            with open(f"/proc/{pid}/stat") as f:
                stat = f.read()
        except OSError:
            continue
        fields = stat[stat.rindex(")") + 2 :].split()
        total += int(fields[11]) + int(fields[12])  # utime, stime
    return total / CLK_TCK


def tree_pss_kib(root: int) -> int:
    total = 0
    for pid in tree(root):
        try:
            with open(f"/proc/{pid}/smaps_rollup") as f:
                for line in f:
                    if line.startswith("Pss:"):
                        total += int(line.split()[1])
        except OSError:
            continue
    return total


@dataclass
class Procs:
    """Everything the bench starts, so it can all be stopped, even on Ctrl-C."""

    procs: list[subprocess.Popen[Any]] = field(default_factory=list)

    def start(self, args: list[str], **kw: Any) -> subprocess.Popen[Any]:
        proc = subprocess.Popen(args, **kw)
        self.procs.append(proc)
        return proc

    def stop(self, proc: subprocess.Popen[Any], sig: int = signal.SIGTERM) -> None:
        if proc.poll() is not None:
            return
        family = tree(proc.pid)
        with contextlib.suppress(ProcessLookupError):
            proc.send_signal(sig)
        try:
            proc.wait(timeout=15)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
        for pid in family[1:]:  # anything the process left behind, by pid
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGKILL)

    def stop_all(self) -> None:
        for proc in reversed(self.procs):
            self.stop(proc)


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def wait_port(port: int, proc: subprocess.Popen[Any], timeout: float = 30) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise SystemExit(f"{proc.args} exited with {proc.returncode}")
        with contextlib.suppress(OSError), socket.create_connection(("127.0.0.1", port), 1):
            return
        time.sleep(0.05)
    raise SystemExit(f"nothing listens on {port} after {timeout}s")


def run(args: list[str], **kw: Any) -> subprocess.CompletedProcess[str]:
    return subprocess.run(args, capture_output=True, text=True, check=False, **kw)


def interpreter() -> str:
    """The CPython that runs mtlsgate (this script's: MTLSGATE is its venv's). Its build moves
    the keep-alive figure by ~10%: a libpython linked into the executable with PGO and LTO, as
    Debian's /usr/bin/python3 is, runs the request path faster than a default pyenv build
    (libpython3.x.so, no PGO)."""
    exe = os.path.realpath(sys.executable)
    shared = "libpython" in run(["ldd", exe]).stdout
    linked = "shared" if shared else "static"
    return f"CPython {platform.python_version()} ({exe}, libpython {linked})"


def ensure_tools() -> None:
    wanted = {"nginx": "nginx", "ab": "apache2-utils"}
    missing = sorted({pkg for tool, pkg in wanted.items() if shutil.which(tool) is None})
    if missing:
        if os.geteuid() != 0:
            raise SystemExit(f"missing {missing}; run as root so apt-get can install them")
        print(f"installing with apt-get: {' '.join(missing)}", flush=True)
        env = dict(os.environ, DEBIAN_FRONTEND="noninteractive")
        subprocess.run(["apt-get", "install", "-y", *missing], env=env, check=True)
    for tool in ("openssl", "taskset", "curl"):
        if shutil.which(tool) is None:
            raise SystemExit(f"{tool} is required")
    if (os.cpu_count() or 1) < 2:
        raise SystemExit("needs 2 cores (server on core 0, load and origin on core 1)")


# --------------------------------------------------------------------------------------------
# Certificates (openssl CLI, ECDSA P-256)


@dataclass
class Certs:
    ca: Path
    cert: Path
    key: Path
    combined: Path  # certificate then key, for ab -E
    server_cert: Path
    server_key: Path


def make_certs(d: Path) -> Certs:
    d.mkdir(parents=True, exist_ok=True)

    def ossl(*args: str) -> None:
        out = run(["openssl", *args])
        if out.returncode != 0:
            raise SystemExit(f"openssl {' '.join(args)}:\n{out.stderr}")

    ec = ["-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:P-256", "-nodes"]
    (d / "ca.ext").write_text(
        "basicConstraints=critical,CA:TRUE\nkeyUsage=critical,keyCertSign,cRLSign\n"
        "subjectKeyIdentifier=hash\n"
    )
    ossl("req", "-x509", *ec, "-keyout", str(d / "ca.key"), "-out", str(d / "ca.pem"),
         "-subj", "/CN=Bench Devices CA", "-days", "30", "-extensions", "v3_ca",
         "-addext", "basicConstraints=critical,CA:TRUE",
         "-addext", "keyUsage=critical,keyCertSign,cRLSign")  # fmt: skip
    (d / "leaf.ext").write_text(
        "basicConstraints=critical,CA:FALSE\nkeyUsage=critical,digitalSignature\n"
        "extendedKeyUsage=clientAuth\n"
    )
    ossl("req", "-new", *ec, "-keyout", str(d / "client.key"), "-out", str(d / "client.csr"),
         "-subj", "/CN=bench-device-1")  # fmt: skip
    ossl("x509", "-req", "-in", str(d / "client.csr"), "-CA", str(d / "ca.pem"),
         "-CAkey", str(d / "ca.key"), "-CAcreateserial", "-days", "30",
         "-extfile", str(d / "leaf.ext"), "-out", str(d / "client.pem"))  # fmt: skip
    combined = d / "client-combined.pem"
    combined.write_text((d / "client.pem").read_text() + (d / "client.key").read_text())
    # nginx's own server certificate: a self-signed P-256 one (the clients do not verify).
    ossl("req", "-x509", *ec, "-keyout", str(d / "server.key"), "-out", str(d / "server.pem"),
         "-subj", f"/CN={HOST}", "-days", "30",
         "-addext", f"subjectAltName=DNS:{HOST}")  # fmt: skip
    return Certs(d / "ca.pem", d / "client.pem", d / "client.key", combined,
                 d / "server.pem", d / "server.key")  # fmt: skip


# --------------------------------------------------------------------------------------------
# The two servers


@dataclass
class Server:
    name: str
    port: int
    proc: subprocess.Popen[Any]

    @property
    def root(self) -> int:
        return self.proc.pid


@dataclass
class Gateway:
    data_dir: Path
    account_id: str
    zone_id: str
    token: str
    api_port: int
    ca_id: str = ""

    def http(self) -> Any:
        import httpx

        return httpx.Client(
            base_url=f"http://127.0.0.1:{self.api_port}/client/v4",
            headers={"Authorization": f"Bearer {self.token}"},
            timeout=30,
        )

    def call(self, method: str, url: str, body: Any) -> None:
        with self.http() as c:
            r = c.request(method, url, json=body)
        if r.status_code != 200:
            raise SystemExit(f"{method} {url}: {r.status_code} {r.text}")

    def set_association(self, on: bool) -> None:
        self.call(
            "PUT",
            f"/zones/{self.zone_id}/certificate_authorities/hostname_associations",
            {"hostnames": [HOST] if on else [], "mtls_certificate_id": self.ca_id},
        )

    def set_rules(self, extra_block: bool) -> None:
        rules = [{"expression": SEED_RULE, "action": "block"}]
        if extra_block:
            rules.append({"expression": f'http.host eq "{HOST}"', "action": "block"})
        self.call(
            "PUT",
            f"/zones/{self.zone_id}/rulesets/phases/http_request_firewall_custom/entrypoint",
            {"rules": rules},
        )


def start_mtlsgate(
    procs: Procs, work: Path, certs: Certs, origin_port: int
) -> tuple[Server, Gateway]:
    data = work / "mtlsgate-data"
    out = run([MTLSGATE, "init", "--data-dir", str(data), "--zone", "example.com"])
    if out.returncode != 0:
        raise SystemExit(f"mtlsgate init failed:\n{out.stderr}")
    info = json.loads(out.stdout)
    api_port, edge_port = free_port(), free_port()
    log = open(work / "serve.log", "wb")  # noqa: SIM115
    proc = procs.start(
        ["taskset", "-c", SERVER_CPU, MTLSGATE, "serve", "--data-dir", str(data),
         "--api", f"127.0.0.1:{api_port}", "--edge", f"127.0.0.1:{edge_port}",
         "--workers", "1", "--default-hostname", HOST],
        stdout=log, stderr=subprocess.STDOUT,
    )  # fmt: skip
    wait_port(api_port, proc)
    gw = Gateway(data, info["account_id"], next(iter(info["zones"].values())),
                 info["api_token"], api_port)  # fmt: skip
    z = gw.zone_id
    gw.call("POST", f"/zones/{z}/dns_records",
            {"type": "A", "name": HOST, "content": "127.0.0.1", "proxied": True})  # fmt: skip
    gw.call(
        "PUT",
        f"/zones/{z}/rulesets/phases/http_request_origin/entrypoint",
        {"rules": [{"expression": "true", "action": "route",
                    "action_parameters": {"origin": {"port": origin_port}}}]},
    )  # fmt: skip
    with gw.http() as c:
        r = c.post(
            f"/accounts/{gw.account_id}/mtls_certificates",
            json={"ca": True, "name": "bench devices", "certificates": certs.ca.read_text()},
        )
        if r.status_code != 200:
            raise SystemExit(f"CA upload: {r.status_code} {r.text}")
        gw.ca_id = r.json()["result"]["id"]
    gw.set_association(True)
    gw.set_rules(extra_block=False)
    gw.call(
        "PATCH",
        f"/zones/{z}/managed_headers",
        {"managed_request_headers": [{"id": "add_client_certificate_headers", "enabled": True}],
         "managed_response_headers": []},
    )  # fmt: skip
    server = Server("mtlsgate", edge_port, proc)
    wait_port(edge_port, proc)
    deadline = time.monotonic() + 30
    while curl_status(edge_port, certs, data / "edge-ca.pem") != 200:
        if time.monotonic() > deadline:
            raise SystemExit("mtlsgate's edge did not apply the configuration within 30 s")
        time.sleep(0.1)
    if (got := curl_status(edge_port, None, data / "edge-ca.pem")) != 403:
        raise SystemExit(f"mtlsgate answered {got} without a client certificate, not 403")
    return server, gw


NGINX_CONF = """\
worker_processes 1;
worker_rlimit_nofile 30000;
pid {d}/nginx.pid;
error_log {d}/error.log warn;
events {{ worker_connections 16384; }}
http {{
    access_log off;
    client_body_temp_path {d}/tmp;
    proxy_temp_path {d}/tmp;
    fastcgi_temp_path {d}/tmp;
    uwsgi_temp_path {d}/tmp;
    scgi_temp_path {d}/tmp;
    keepalive_requests 1000000;
    keepalive_timeout 300s;
    upstream origin {{
        server 127.0.0.1:{origin};
        keepalive 32;
    }}
    server {{
        listen 127.0.0.1:{port} ssl;
        server_name {host} _;
        ssl_certificate {cert};
        ssl_certificate_key {key};
        ssl_protocols TLSv1.3;
        ssl_ecdh_curve X25519:prime256v1;
        ssl_session_tickets off;
        ssl_session_cache off;
        ssl_client_certificate {ca};
        ssl_verify_client optional_no_ca;
        location / {{
            if ($ssl_client_verify != SUCCESS) {{ return 403; }}
            proxy_http_version 1.1;
            proxy_set_header Connection "";
            proxy_set_header Host $host;
            proxy_pass http://origin;
        }}
    }}
}}
"""


def start_nginx(procs: Procs, work: Path, certs: Certs, origin_port: int) -> Server:
    d = work / "nginx"
    (d / "tmp").mkdir(parents=True, exist_ok=True)
    (d / "logs").mkdir(exist_ok=True)
    port = free_port()
    conf = d / "nginx.conf"
    conf.write_text(NGINX_CONF.format(
        d=d, origin=origin_port, port=port, host=HOST, cert=certs.server_cert,
        key=certs.server_key, ca=certs.ca))  # fmt: skip
    test = run(["nginx", "-t", "-p", str(d), "-c", str(conf)])
    if test.returncode != 0:
        raise SystemExit(f"nginx -t:\n{test.stderr}")
    proc = procs.start(
        ["taskset", "-c", SERVER_CPU, "nginx", "-p", str(d), "-c", str(conf), "-g", "daemon off;"],
        stdout=subprocess.DEVNULL, stderr=open(d / "stderr.log", "wb"),  # noqa: SIM115
    )  # fmt: skip
    wait_port(port, proc)
    server = Server("nginx", port, proc)
    if (got := curl_status(port, certs, None)) != 200:
        raise SystemExit(f"nginx answered {got} with a valid client certificate")
    if (got := curl_status(port, None, None)) != 403:
        raise SystemExit(f"nginx answered {got} without a client certificate, not 403")
    return server


def curl_status(port: int, certs: Certs | None, cacert: Path | None) -> int:
    args = ["curl", "-s", "-o", "/dev/null", "-w", "%{http_code}", "--max-time", "5",
            "--resolve", f"{HOST}:{port}:127.0.0.1"]  # fmt: skip
    args += ["--cacert", str(cacert)] if cacert else ["-k"]
    if certs is not None:
        args += ["--cert", str(certs.cert), "--key", str(certs.key)]
    out = run([*args, f"https://{HOST}:{port}/"])
    return int(out.stdout or 0)


# --------------------------------------------------------------------------------------------
# Load


PY_SPY: dict[str, Any] = {"dir": None, "n": 0}
PY_SPY_BIN = shutil.which("py-spy") or str(Path(sys.executable).parent / "py-spy")


def measured(server: Server, fn: Callable[[], dict[str, Any]]) -> dict[str, Any]:
    spy = None
    if PY_SPY["dir"] is not None and server.name == "mtlsgate":
        PY_SPY["n"] += 1
        label = fn.__qualname__.split(".")[0]
        out = PY_SPY["dir"] / f"{label}-{PY_SPY['n']}.txt"
        spy = subprocess.Popen(
            [PY_SPY_BIN, "record", "--subprocesses", "--nonblocking", "--format", "raw",
             "--rate", "250", "-p", str(server.root), "-o", str(out)],
            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
        )  # fmt: skip
        time.sleep(0.5)
    before = tree_cpu(server.root)
    result = fn()
    result["cpu_s"] = tree_cpu(server.root) - before
    if spy is not None:
        spy.send_signal(signal.SIGINT)
        spy.wait(30)
    if server.proc.poll() is not None:
        raise SystemExit(f"{server.name} exited with {server.proc.returncode} during the load")
    return result


def handshakes(server: Server, certs: Certs, seconds: float, clients: int) -> dict[str, Any]:
    def go() -> dict[str, Any]:
        cmd = ["taskset", "-c", LOAD_CPU, "openssl", "s_time", "-connect",
               f"127.0.0.1:{server.port}", "-new", "-tls1_3", "-cert", str(certs.cert),
               "-key", str(certs.key), "-time", str(int(seconds))]  # fmt: skip
        ps = [subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
              for _ in range(clients)]  # fmt: skip
        outs = [p.communicate()[0] for p in ps]
        n, errors = 0, []
        for out in outs:
            m = re.search(r"(\d+) connections in ([\d.]+) real seconds", out)
            if m is None:
                errors.append(out[-300:])
            else:
                n += int(m.group(1))
        return {"handshakes": n, "errors": errors}

    r = measured(server, go)
    r["per_cpu_s"] = r["handshakes"] / r["cpu_s"] if r["cpu_s"] else 0.0
    return r


def keepalive(server: Server, certs: Certs, seconds: float, concurrency: int) -> dict[str, Any]:
    def go() -> dict[str, Any]:
        cmd = ["taskset", "-c", LOAD_CPU, "ab", "-k", "-q", "-f", "TLS1.3", "-E",
               str(certs.combined), "-H", f"Host: {HOST}", "-c", str(concurrency),
               "-t", str(int(seconds)), "-n", "5000000", "-s", "10",
               f"https://127.0.0.1:{server.port}/"]  # fmt: skip
        out = run(cmd).stdout

        def num(label: str) -> int:
            m = re.search(rf"^{label}:\s+(\d+)", out, re.M)
            return int(m.group(1)) if m else 0

        res = {
            "complete": num("Complete requests"),
            "failed": num("Failed requests"),
            "non2xx": num("Non-2xx responses"),
            "keepalive": num("Keep-Alive requests"),
        }
        if res["complete"] == 0:
            res["output"] = out[-800:]
        m = re.search(r"^Failed requests:.*\n((?:\s+\(.*\n)+)", out, re.M)
        if m:
            res["failed_detail"] = " ".join(m.group(1).split())
        return res

    r = measured(server, go)
    ok = r["complete"] - r["failed"] - r["non2xx"]
    r["per_cpu_s"] = ok / r["cpu_s"] if r["cpu_s"] else 0.0
    return r


def ab_works(server: Server, certs: Certs) -> tuple[bool, str]:
    """A short `ab -k` probe: HTTP/1.0 keep-alive needs `Connection: keep-alive` in each
    response, or ab waits for the server to close the connection."""
    cmd = ["taskset", "-c", LOAD_CPU, "ab", "-k", "-f", "TLS1.3", "-E", str(certs.combined),
           "-H", f"Host: {HOST}", "-c", "1", "-n", "20", "-s", "3",
           f"https://127.0.0.1:{server.port}/"]  # fmt: skip
    out = run(cmd, timeout=30)
    m = re.search(r"^Keep-Alive requests:\s+(\d+)", out.stdout, re.M)
    ok = out.returncode == 0 and m is not None and int(m.group(1)) == 20
    return ok, (out.stdout + out.stderr)[-300:]


def keepalive_http11(
    server: Server, certs: Certs, seconds: float, concurrency: int
) -> dict[str, Any]:
    """The equivalent of `ab -k` with HTTP/1.1 persistent connections (Python, core 1)."""

    def go() -> dict[str, Any]:
        out = run(client_subprocess("keepalive", server.port, certs, seconds=seconds,
                                    conns=concurrency))  # fmt: skip
        try:
            r = dict(json.loads(out.stdout))
        except json.JSONDecodeError:
            raise SystemExit(f"keep-alive client failed:\n{out.stdout}\n{out.stderr}") from None
        ok = r["statuses"].get("200", 0)
        return {"complete": r["complete"], "failed": r["errors"],
                "non2xx": r["complete"] - ok, "keepalive": r["complete"],
                "statuses": r["statuses"]}  # fmt: skip

    r = measured(server, go)
    ok = r["complete"] - r["non2xx"]
    r["per_cpu_s"] = ok / r["cpu_s"] if r["cpu_s"] else 0.0
    return r


def client_subprocess(mode: str, port: int, certs: Certs, **opts: Any) -> list[str]:
    args = ["taskset", "-c", LOAD_CPU, sys.executable, __file__, "--_client", mode,
            "--_port", str(port), "--_cert", str(certs.cert), "--_key", str(certs.key)]  # fmt: skip
    for k, v in opts.items():
        args += [f"--_{k}", str(v)]
    return args


def latency(server: Server, certs: Certs, seconds: float, rate: int) -> dict[str, Any]:
    out = run(client_subprocess("latency", server.port, certs, seconds=seconds, rate=rate,
                                conns=16))  # fmt: skip
    try:
        return dict(json.loads(out.stdout))
    except json.JSONDecodeError:
        raise SystemExit(f"latency client failed:\n{out.stdout}\n{out.stderr}") from None


def idle_memory(procs: Procs, server: Server, certs: Certs, n: int) -> dict[str, Any]:
    # Warm up (allocator arenas, first-use costs) before the baseline.
    warm = run(client_subprocess("hold", server.port, certs, conns=200, hold=0))
    if warm.returncode != 0:
        raise SystemExit(f"warm-up client failed:\n{warm.stderr}")
    time.sleep(1)
    before = tree_pss_kib(server.root)
    p = procs.start(client_subprocess("hold", server.port, certs, conns=n, hold=1),
                    stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)  # fmt: skip
    assert p.stdout is not None and p.stdin is not None
    line = p.stdout.readline()
    try:
        info = json.loads(line)
    except json.JSONDecodeError:
        procs.stop(p)
        raise SystemExit(f"hold client failed: {line!r}") from None
    time.sleep(2)
    held = tree_pss_kib(server.root)
    p.stdin.close()
    p.wait(60)
    opened = info["open"]
    return {
        "open": opened,
        "failed": info["failed"],
        "statuses": info["statuses"],
        "open_seconds": info["seconds"],
        "pss_before_kib": before,
        "pss_held_kib": held,
        "kib_per_conn": (held - before) / opened if opened else float("nan"),
    }


# --------------------------------------------------------------------------------------------
# Propagation (mtlsgate only)


def _new_connection_status(port: int, ctx: ssl.SSLContext) -> int:
    try:
        with (
            socket.create_connection(("127.0.0.1", port), 2) as raw,
            ctx.wrap_socket(raw, server_hostname=HOST) as s,
        ):
            s.sendall(f"GET / HTTP/1.1\r\nHost: {HOST}\r\nConnection: close\r\n\r\n".encode())
            head = s.recv(64)
        return int(head.split(b" ", 2)[1])
    except (OSError, ValueError, IndexError):
        return 0


def propagation(server: Server, gw: Gateway, certs: Certs, tries: int) -> dict[str, Any]:
    ctx = client_context(certs)

    def wait_for(expected: int, t0: float, timeout: float = 15) -> float:
        while time.monotonic() - t0 < timeout:
            if _new_connection_status(server.port, ctx) == expected:
                return time.monotonic() - t0
            time.sleep(0.01)
        return float("inf")

    out: dict[str, list[float]] = {"remove_association": [], "restore_association": [],
                                   "add_block_rule": [], "remove_block_rule": []}  # fmt: skip
    for _ in range(tries):
        if _new_connection_status(server.port, ctx) != 200:
            raise SystemExit("propagation: the valid certificate does not get 200 to start with")
        t0 = time.monotonic()
        gw.set_association(False)  # nothing verifies any more: the seed rule blocks
        out["remove_association"].append(wait_for(403, t0))
        t0 = time.monotonic()
        gw.set_association(True)
        out["restore_association"].append(wait_for(200, t0))
        time.sleep(0.3)
        t0 = time.monotonic()
        gw.set_rules(extra_block=True)
        out["add_block_rule"].append(wait_for(403, t0))
        t0 = time.monotonic()
        gw.set_rules(extra_block=False)
        out["remove_block_rule"].append(wait_for(200, t0))
        time.sleep(0.3)
    return out


# --------------------------------------------------------------------------------------------
# Clients run as subprocesses on the load core


def client_context(certs: Certs | None = None, cert: str = "", key: str = "") -> ssl.SSLContext:
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    ctx.check_hostname = False
    ctx.verify_mode = ssl.CERT_NONE
    ctx.minimum_version = ssl.TLSVersion.TLSv1_3
    if certs is not None:
        ctx.load_cert_chain(certs.cert, certs.key)
    else:
        ctx.load_cert_chain(cert, key)
    return ctx


REQUEST = f"GET / HTTP/1.1\r\nHost: {HOST}\r\n\r\n".encode()


async def _read_response(reader: asyncio.StreamReader) -> int:
    head = await reader.readuntil(b"\r\n\r\n")
    lines = head.split(b"\r\n")
    status = int(lines[0].split(b" ", 2)[1])
    length, chunked = 0, False
    for line in lines[1:]:
        k, _, v = line.partition(b":")
        k = k.strip().lower()
        if k == b"content-length":
            length = int(v)
        elif k == b"transfer-encoding" and b"chunked" in v.lower():
            chunked = True
    if chunked:
        while True:
            size = int((await reader.readuntil(b"\r\n")).split(b";")[0], 16)
            await reader.readexactly(size + 2)
            if size == 0:
                break
    elif length:
        await reader.readexactly(length)
    return status


async def _latency_client(a: argparse.Namespace) -> dict[str, Any]:
    ctx = client_context(cert=a._cert, key=a._key)
    pool: asyncio.Queue[tuple[asyncio.StreamReader, asyncio.StreamWriter]] = asyncio.Queue()
    for _ in range(a._conns):
        r, w = await asyncio.open_connection("127.0.0.1", a._port, ssl=ctx, server_hostname=HOST)
        pool.put_nowait((r, w))
    lat: list[float] = []
    statuses: dict[int, int] = {}
    errors = 0

    async def one(intended: float) -> None:
        nonlocal errors
        r, w = await pool.get()
        try:
            w.write(REQUEST)
            status = await _read_response(r)
            lat.append(time.monotonic() - intended)
            statuses[status] = statuses.get(status, 0) + 1
            pool.put_nowait((r, w))
        except (OSError, asyncio.IncompleteReadError, ValueError):
            errors += 1
            w.close()
            r, w = await asyncio.open_connection("127.0.0.1", a._port, ssl=ctx,
                                                 server_hostname=HOST)  # fmt: skip
            pool.put_nowait((r, w))

    # Warm-up, not recorded.
    for _ in range(a._conns):
        await one(time.monotonic())
    lat.clear()
    statuses.clear()
    total = int(a._seconds * a._rate)
    start = time.monotonic() + 0.05
    tasks = []
    for i in range(total):
        intended = start + i / a._rate
        delay = intended - time.monotonic()
        if delay > 0:
            await asyncio.sleep(delay)
        tasks.append(asyncio.create_task(one(intended)))
    await asyncio.gather(*tasks)
    lat.sort()

    def pct(p: float) -> float:
        return lat[min(len(lat) - 1, int(p * len(lat)))] * 1000 if lat else float("nan")

    return {"requests": len(lat), "errors": errors, "statuses": statuses,
            "p50_ms": pct(0.50), "p99_ms": pct(0.99), "max_ms": pct(1.0)}  # fmt: skip


async def _keepalive_client(a: argparse.Namespace) -> dict[str, Any]:
    ctx = client_context(cert=a._cert, key=a._key)
    statuses: dict[int, int] = {}
    complete = errors = 0
    stop = time.monotonic() + a._seconds

    async def conn() -> None:
        nonlocal complete, errors
        r, w = await asyncio.open_connection("127.0.0.1", a._port, ssl=ctx, server_hostname=HOST)
        while time.monotonic() < stop:
            try:
                w.write(REQUEST)
                status = await _read_response(r)
            except (OSError, asyncio.IncompleteReadError, ValueError):
                errors += 1
                w.close()
                r, w = await asyncio.open_connection("127.0.0.1", a._port, ssl=ctx,
                                                     server_hostname=HOST)  # fmt: skip
                continue
            complete += 1
            statuses[status] = statuses.get(status, 0) + 1
        w.close()

    await asyncio.gather(*(conn() for _ in range(a._conns)))
    return {"complete": complete, "errors": errors, "statuses": statuses}


async def _hold_client(a: argparse.Namespace) -> None:
    ctx = client_context(cert=a._cert, key=a._key)
    conns: list[tuple[asyncio.StreamReader, asyncio.StreamWriter]] = []
    statuses: dict[int, int] = {}
    failed = 0
    sem = asyncio.Semaphore(64)

    async def open_one() -> None:
        nonlocal failed
        async with sem:
            try:
                r, w = await asyncio.open_connection("127.0.0.1", a._port, ssl=ctx,
                                                     server_hostname=HOST)  # fmt: skip
                w.write(REQUEST)
                status = await _read_response(r)
                statuses[status] = statuses.get(status, 0) + 1
                conns.append((r, w))
            except (OSError, asyncio.IncompleteReadError, ValueError):
                failed += 1

    t0 = time.monotonic()
    await asyncio.gather(*(open_one() for _ in range(a._conns)))
    info = {"open": len(conns), "failed": failed, "statuses": statuses,
            "seconds": round(time.monotonic() - t0, 2)}  # fmt: skip
    if a._hold:
        print(json.dumps(info), flush=True)
        await asyncio.get_running_loop().run_in_executor(None, sys.stdin.read)
    for _, w in conns:
        w.close()


def client_main(a: argparse.Namespace) -> None:
    resource.setrlimit(resource.RLIMIT_NOFILE, resource.getrlimit(resource.RLIMIT_NOFILE)[1:] * 2)
    if a._client == "latency":
        print(json.dumps(asyncio.run(_latency_client(a))))
    elif a._client == "keepalive":
        print(json.dumps(asyncio.run(_keepalive_client(a))))
    else:
        asyncio.run(_hold_client(a))


# --------------------------------------------------------------------------------------------
# Report


def summary(values: list[float]) -> dict[str, float]:
    return {"median": statistics.median(values), "min": min(values), "max": max(values)}


def fmt(v: float, unit: str) -> str:
    if v != v or v == float("inf"):
        return str(v)
    return f"{v:,.0f} {unit}" if abs(v) >= 100 else f"{v:,.2f} {unit}"


def table(title: str, unit: str, mt: list[float], ng: list[float], note: str) -> dict[str, Any]:
    if not mt:
        return {}  # a part left out with --only
    ratios = [a / b if b else float("nan") for a, b in zip(mt, ng, strict=True)]
    s_mt, s_ng, s_r = summary(mt), summary(ng), summary(ratios)
    print(f"\n{title}  ({note})")
    print(f"  {'':10} {'median':>16} {'min':>16} {'max':>16}")
    for name, s in (("mtlsgate", s_mt), ("nginx", s_ng)):
        print(f"  {name:10} " + " ".join(f"{fmt(s[k], unit):>16}" for k in s))
    print(f"  {'ratio':10} " + " ".join(f"{s_r[k]:>15.2f}x" for k in s_r))
    return {"mtlsgate": mt, "nginx": ng, "ratios": ratios, "ratio": s_r,
            "mtlsgate_summary": s_mt, "nginx_summary": s_ng}  # fmt: skip


PARTS = ("memory", "handshakes", "keepalive", "latency", "propagation")


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--rounds", type=int, default=5)
    p.add_argument("--quick", action="store_true", help="1 round, short durations")
    p.add_argument("--json", type=Path, help="write every figure to this file")
    p.add_argument("--seconds", type=float, help="length of each load run (default 8, quick 3)")
    p.add_argument("--idle-conns", type=int, help="held connections (default 10000, quick 2000)")
    p.add_argument("--rate", type=int, default=300, help="fixed request rate for p99 (req/s)")
    p.add_argument("--keep-work-dir", action="store_true")
    p.add_argument(
        "--concurrency",
        type=int,
        default=32,
        help="keep-alive connections of the request load (default 32; the reference "
        "prototypes were measured with 8)",
    )
    p.add_argument(
        "--only",
        default=",".join(PARTS),
        help=f"comma-separated parts to run (default all: {','.join(PARTS)})",
    )
    p.add_argument(
        "--py-spy",
        type=Path,
        metavar="DIR",
        help="profile mtlsgate's tree with py-spy during its load runs (collapsed "
        "stacks into DIR; distorts the figures, for finding costs only)",
    )
    for hidden in ("client", "port", "cert", "key", "seconds", "rate", "conns", "hold"):
        p.add_argument(f"--_{hidden}", help=argparse.SUPPRESS)
    a = p.parse_args()
    if a._client:
        for k in ("_port", "_rate", "_conns", "_hold"):
            setattr(a, k, int(getattr(a, k) or 0))
        a._seconds = float(a._seconds or 0)
        client_main(a)
        return

    rounds = 1 if a.quick else a.rounds
    only = set(a.only.split(","))
    if only - set(PARTS):
        raise SystemExit(f"--only: unknown parts {sorted(only - set(PARTS))}")
    if a.py_spy is not None:
        a.py_spy.mkdir(parents=True, exist_ok=True)
        PY_SPY["dir"] = a.py_spy
    seconds = a.seconds or (3.0 if a.quick else 8.0)
    idle_n = a.idle_conns or (2000 if a.quick else 10000)
    prop_tries = 3 if a.quick else 7
    ensure_tools()
    hard = resource.getrlimit(resource.RLIMIT_NOFILE)[1]
    with contextlib.suppress(ValueError, OSError):
        resource.setrlimit(resource.RLIMIT_NOFILE, (max(hard, 65536), max(hard, 65536)))

    procs = Procs()
    work = Path(tempfile.mkdtemp(prefix="edge-vs-nginx-"))
    signal.signal(signal.SIGTERM, lambda *_: (_ for _ in ()).throw(KeyboardInterrupt()))
    results: dict[str, Any] = {
        "date": datetime.now(UTC).isoformat(timespec="seconds"),
        "machine": f"{platform.node()} {platform.machine()} {os.cpu_count()} cores, "
        f"kernel {platform.release()}",
        "config": {"rounds": rounds, "seconds": seconds, "idle_conns": idle_n, "rate": a.rate},
        "python": interpreter(),
    }
    print(f"mtlsgate runs on {results['python']}", flush=True)
    try:
        certs = make_certs(work / "certs")
        origin_port = free_port()
        origin = procs.start(
            ["taskset", "-c", LOAD_CPU, MTLSGATE, "echo-origin", "--listen",
             f"127.0.0.1:{origin_port}"],
            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
        )  # fmt: skip
        wait_port(origin_port, origin)
        mt, gw = start_mtlsgate(procs, work, certs, origin_port)
        ng = start_nginx(procs, work, certs, origin_port)
        servers = (mt, ng)
        print(f"work dir {work}; mtlsgate edge :{mt.port} (pid {mt.root}), "
              f"nginx :{ng.port} (pid {ng.root}), origin :{origin_port}", flush=True)  # fmt: skip

        ab_ok = {}
        for s in servers:
            ok, tail = ab_works(s, certs)
            ab_ok[s.name] = ok
            if not ok:
                print(f"ab -k fails against {s.name} (HTTP/1.0 keep-alive): {tail!r}")
        ka_client = "ab -k" if all(ab_ok.values()) else "HTTP/1.1 keep-alive (Python)"
        print(f"keep-alive load: {ka_client}, for both servers", flush=True)
        results["keepalive_client"] = ka_client
        results["ab_k_works"] = ab_ok

        hs: dict[str, list[dict[str, Any]]] = {s.name: [] for s in servers}
        ka: dict[str, list[dict[str, Any]]] = {s.name: [] for s in servers}
        lat: dict[str, list[dict[str, Any]]] = {s.name: [] for s in servers}
        for i in range(rounds):
            order = servers if i % 2 == 0 else servers[::-1]
            for s in order if "handshakes" in only else ():
                r = handshakes(s, certs, seconds, clients=2)
                hs[s.name].append(r)
                print(f"round {i + 1} handshakes {s.name}: {r['handshakes']} in "
                      f"{r['cpu_s']:.2f} CPU-s = {r['per_cpu_s']:.0f}/CPU-s"
                      + (f" ERRORS {r['errors']}" if r["errors"] else ""), flush=True)  # fmt: skip
            for s in order if "keepalive" in only else ():
                if ka_client == "ab -k":
                    r = keepalive(s, certs, seconds, concurrency=a.concurrency)
                else:
                    r = keepalive_http11(s, certs, seconds, concurrency=a.concurrency)
                ka[s.name].append(r)
                extra = {
                    k: r[k] for k in ("failed", "non2xx", "failed_detail", "output") if r.get(k)
                }
                print(f"round {i + 1} keep-alive {s.name}: {r['complete']} requests "
                      f"({r['keepalive']} keep-alive) in {r['cpu_s']:.2f} CPU-s = "
                      f"{r['per_cpu_s']:.0f}/CPU-s {extra or ''}", flush=True)  # fmt: skip
            for s in order if "latency" in only else ():
                r = latency(s, certs, seconds, a.rate)
                lat[s.name].append(r)
                print(f"round {i + 1} latency @{a.rate}/s {s.name}: {r}", flush=True)

        if "propagation" in only:
            print("propagation (mtlsgate) ...", flush=True)
        # After the load rounds: 10,000 connections opened and closed leave both servers (and
        # the kernel) slower for a while, which skewed the rounds when this ran first (the
        # keep-alive ratio of a full run was ~0.1 lower than the same rounds without it).
        mem: dict[str, Any] = {}
        for s in servers if "memory" in only else ():
            print(f"memory: {s.name}, {idle_n} idle keep-alive mTLS connections ...", flush=True)
            mem[s.name] = idle_memory(procs, s, certs, idle_n)
            print(f"  {mem[s.name]}", flush=True)

        prop = propagation(mt, gw, certs, prop_tries) if "propagation" in only else {}

        print(f"\n=== mtlsgate / nginx, {rounds} round(s) of {seconds:g} s, "
              f"server on core {SERVER_CPU}, load and origin on core {LOAD_CPU} ===")  # fmt: skip
        results["handshakes_per_cpu_s"] = table(
            "Full mTLS handshakes per server CPU-second (TLS 1.3, P-256, no resumption)",
            "/s", [r["per_cpu_s"] for r in hs["mtlsgate"]], [r["per_cpu_s"] for r in hs["nginx"]],
            "higher is better; target 1.1x, at least 1.0x")  # fmt: skip
        results["keepalive_requests_per_cpu_s"] = table(
            "Keep-alive proxied requests per server CPU-second (verified cert, seed rule, "
            "client-cert headers)", "/s",
            [r["per_cpu_s"] for r in ka["mtlsgate"]], [r["per_cpu_s"] for r in ka["nginx"]],
            "higher is better; target 0.8x, at least 0.7x")  # fmt: skip
        results["p99_latency_ms"] = table(
            f"p99 latency at {a.rate} req/s over 16 keep-alive connections", "ms",
            [r["p99_ms"] for r in lat["mtlsgate"]], [r["p99_ms"] for r in lat["nginx"]],
            "lower is better")  # fmt: skip
        results["memory_kib_per_idle_conn"] = table(
            f"Memory (PSS of the tree) per idle keep-alive mTLS connection, {idle_n} held",
            "KiB", [m["kib_per_conn"] for m in mem.values()][:1],
            [m["kib_per_conn"] for m in mem.values()][1:],
            "lower is better; mtlsgate under 100 KiB")  # fmt: skip
        for name in ("mtlsgate", "nginx"):
            fails = [(r["failed"], r["non2xx"]) for r in ka[name]]
            hs_err = sum(len(r["errors"]) for r in hs[name])
            print(f"  {name}: keep-alive (failed, non-2xx) per round {fails}; "
                  f"s_time clients with errors: {hs_err}; latency statuses "
                  f"{[r['statuses'] for r in lat[name]]}, errors "
                  f"{[r['errors'] for r in lat[name]]}")  # fmt: skip
        print("\nPropagation (mtlsgate): API call -> a new connection sees it (target 1 s)")
        for k, v in prop.items():
            s = summary(v)
            print(f"  {k:22} median {s['median']:.3f} s  (min {s['min']:.3f}, max {s['max']:.3f}"
                  f", {len(v)} tries)")  # fmt: skip
        alive = mt.proc.poll() is None
        print(f"\nmtlsgate serve still running: {alive}; log: {work / 'serve.log'}")
        results.update(handshake_runs=hs, keepalive_runs=ka, latency_runs=lat, memory=mem,
                       propagation_s=prop)  # fmt: skip
        if a.json:
            a.json.write_text(json.dumps(results, indent=2, default=str))
            print(f"wrote {a.json}")
    except KeyboardInterrupt:
        print("\ninterrupted; stopping everything", file=sys.stderr)
    finally:
        signal.signal(signal.SIGINT, signal.SIG_IGN)
        procs.stop_all()
        if not a.keep_work_dir:
            _copy_log(work)
            shutil.rmtree(work, ignore_errors=True)


def _copy_log(work: Path) -> None:
    """Keep mtlsgate's log of the last run next to the temp dir's removal."""
    log = work / "serve.log"
    if log.exists():
        shutil.copy(log, Path(tempfile.gettempdir()) / "edge_vs_nginx-serve.log")


if __name__ == "__main__":
    main()
