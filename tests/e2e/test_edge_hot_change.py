"""Configuration changes through the API while a real `mtlsgate serve --edge --workers 2` is
serving: they reach new handshakes and the next request of open keep-alive connections within
3 s (the requirement is 1 s; 3 s keeps the tests from flaking), a removed association or CA
stops authorising an open connection, changes that do not concern a client never fail one of
its requests in flight, and SIGTERM drains requests in flight and leaves no worker behind."""

from __future__ import annotations

import contextlib
import os
import signal
import socket
import ssl
import subprocess
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path

import httpx
import pytest

from tests.certs import CertFiles, openssl_leaf, openssl_root
from tests.harness import MTLSGATE, Gateway, free_port, init_gateway

HOST = "api.example.com"
SEED_RULE = f'(http.host in {{"{HOST}"}} and not cf.tls_client_auth.cert_verified)'
# The same meaning, written differently: swapping one for the other changes nothing for anyone.
EQUIVALENT_RULE = f'(not cf.tls_client_auth.cert_verified and http.host eq "{HOST}")'
BLOCK_VERIFIED = f'(http.host eq "{HOST}" and cf.tls_client_auth.cert_verified)'
FIREWALL = "rulesets/phases/http_request_firewall_custom/entrypoint"
ASSOCIATIONS = "certificate_authorities/hostname_associations"
PROPAGATION = 3.0  # seconds; the requirement is 1 s


@dataclass
class Edge:
    gw: Gateway
    port: int
    ca: CertFiles
    good: CertFiles
    ca_id: str
    tmp: Path
    origin: subprocess.Popen[bytes]
    measured: dict[str, float] = field(default_factory=dict)

    @property
    def edge_ca(self) -> Path:
        return self.gw.data_dir / "edge-ca.pem"

    def api(self) -> httpx.Client:
        return self.gw.http()

    def zone(self, path: str) -> str:
        return f"/zones/{self.gw.zone_id}/{path}"

    def account(self, path: str) -> str:
        return f"/accounts/{self.gw.account_id}/{path}"

    def config_version(self) -> int:
        r = httpx.get(f"http://127.0.0.1:{self.gw.port}/healthz", timeout=5)
        return int(r.json()["config_version"])

    def set_rule(self, c: httpx.Client, expression: str) -> None:
        r = c.put(
            self.zone(FIREWALL), json={"rules": [{"expression": expression, "action": "block"}]}
        )
        assert r.status_code == 200, r.text

    def associate(self, c: httpx.Client, ca_id: str, hostnames: list[str]) -> None:
        r = c.put(
            self.zone(ASSOCIATIONS), json={"hostnames": hostnames, "mtls_certificate_id": ca_id}
        )
        assert r.status_code == 200, r.text

    def upload_ca(self, c: httpx.Client, ca: CertFiles, name: str) -> str:
        r = c.post(
            self.account("mtls_certificates"),
            json={"ca": True, "name": name, "certificates": ca.cert_pem},
        )
        assert r.status_code == 200, r.text
        return str(r.json()["result"]["id"])

    def client_context(self, cert: CertFiles | None = None) -> ssl.SSLContext:
        ctx = ssl.create_default_context(cafile=str(self.edge_ca))
        if cert is not None:
            ctx.load_cert_chain(str(cert.cert_path), str(cert.key_path))
        return ctx


@contextlib.contextmanager
def running_edge(tmp: Path) -> Iterator[Edge]:
    """SQLite, two edge workers and the echo origin; a proxied record routed to the origin."""
    gw = init_gateway(tmp / "data", None, zones=("example.com",))
    origin_port, edge_port = free_port(), free_port()
    origin = subprocess.Popen(
        [MTLSGATE, "echo-origin", "--listen", f"127.0.0.1:{origin_port}"],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    ca = openssl_root(tmp / "ca", kind="ec", cn="Devices CA")
    good = openssl_leaf(tmp / "good", ca, kind="ec", cn="device-1")
    try:
        gw.start(edge=["--edge", f"127.0.0.1:{edge_port}", "--workers", "2"])
        with gw.http() as c:
            r = c.post(
                f"/zones/{gw.zone_id}/dns_records",
                json={"type": "A", "name": HOST, "content": "127.0.0.1", "proxied": True},
            )
            assert r.status_code == 200, r.text
            r = c.put(
                f"/zones/{gw.zone_id}/rulesets/phases/http_request_origin/entrypoint",
                json={
                    "rules": [
                        {
                            "expression": "true",
                            "action": "route",
                            "action_parameters": {"origin": {"port": origin_port}},
                        }
                    ]
                },
            )
            assert r.status_code == 200, r.text
        yield Edge(gw, edge_port, ca, good, "", tmp, origin)
    finally:
        gw.stop()
        origin.terminate()
        origin.wait(10)


def seed(e: Edge, tmp: Path) -> Edge:
    """The seed's setup, from whatever an earlier test left: a new CA (and a client certificate
    from it) associated with the hostname, no other CA, the seed's block rule, no managed
    headers, no other DNS record."""
    with e.api() as c:
        certs = c.get(e.account("mtls_certificates")).json()["result"]
        for cert in certs:
            e.associate(c, cert["id"], [])
            r = c.delete(e.account(f"mtls_certificates/{cert['id']}"))
            assert r.status_code == 200, r.text
        for record in c.get(e.zone("dns_records")).json()["result"]:
            if record["name"] != HOST:
                assert c.delete(e.zone(f"dns_records/{record['id']}")).status_code == 200
        r = c.patch(
            e.zone("managed_headers"),
            json={
                "managed_request_headers": [
                    {"id": "add_client_certificate_headers", "enabled": False}
                ],
                "managed_response_headers": [],
            },
        )
        assert r.status_code == 200, r.text
        e.ca = openssl_root(tmp / "ca", kind="ec", cn="Devices CA")
        e.good = openssl_leaf(tmp / "good", e.ca, kind="ec", cn="device-1")
        e.ca_id = e.upload_ca(c, e.ca, "devices")
        e.associate(c, e.ca_id, [HOST])
        e.set_rule(c, SEED_RULE)
    # Both workers have it: several fresh handshakes in a row say so.
    steady(lambda: (curl(e), curl(e, e.good)), (403, 200), timeout=20)
    return e


@pytest.fixture(scope="module")
def shared_edge(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Edge]:
    """One serve for the tests that leave it running (starting one takes seconds)."""
    with running_edge(tmp_path_factory.mktemp("edge")) as e:
        yield e


@pytest.fixture
def edge(shared_edge: Edge, tmp_path: Path) -> Edge:
    return seed(shared_edge, tmp_path)


@pytest.fixture
def own_edge(tmp_path: Path) -> Iterator[Edge]:
    """A serve of the test's own, for a test that stops it."""
    with running_edge(tmp_path) as e:
        yield seed(e, tmp_path)


# --- helpers ---------------------------------------------------------------------------------


def curl(e: Edge, cert: CertFiles | None = None) -> int:
    """The status a fresh connection (a new handshake) gets; 0 when there is no answer."""
    args = [
        "curl", "-s", "-o", "/dev/null", "-w", "%{http_code}", "--max-time", "5",
        "--resolve", f"{HOST}:{e.port}:127.0.0.1", "--cacert", str(e.edge_ca),
    ]  # fmt: skip
    if cert is not None:
        args += ["--cert", str(cert.cert_path), "--key", str(cert.key_path)]
    out = subprocess.run([*args, f"https://{HOST}:{e.port}/"], capture_output=True, text=True)
    return int(out.stdout or 0)


def eventually(
    check: Callable[[], object], expected: object, timeout: float = PROPAGATION
) -> float:
    """Poll until `check()` returns `expected`; return the seconds it took."""
    start = time.monotonic()
    got: object = None
    while time.monotonic() - start < timeout:
        got = check()
        if got == expected:
            return time.monotonic() - start
        time.sleep(0.02)
    raise AssertionError(f"expected {expected!r} within {timeout}s, last saw {got!r}")


def steady(
    check: Callable[[], object], expected: object, times: int = 6, timeout: float = PROPAGATION
) -> float:
    """Poll until `times` consecutive fresh checks (each lands on either worker) return
    `expected`; return the seconds until the first of them."""
    start = time.monotonic()
    streak, first, got = 0, 0.0, None
    while streak < times:
        assert time.monotonic() - start < timeout, (
            f"expected {times} x {expected!r} in a row within {timeout}s, last saw {got!r}"
        )
        got = check()
        if got == expected:
            if streak == 0:
                first = time.monotonic() - start
            streak += 1
        else:
            streak = 0
            time.sleep(0.02)
    return first


def asks_for_certificate(port: int) -> bool:
    out = subprocess.run(
        ["openssl", "s_client", "-connect", f"127.0.0.1:{port}", "-servername", HOST],
        input="",
        capture_output=True,
        text=True,
        timeout=10,
    ).stdout
    return "Acceptable client certificate CA names" in out


class RawConnection:
    """One TLS connection, HTTP/1.1 requests written by hand: every request provably goes over
    the same connection (and so the same handshake and the same worker)."""

    def __init__(self, e: Edge, cert: CertFiles | None) -> None:
        raw = socket.create_connection(("127.0.0.1", e.port), timeout=5)
        self.sock = e.client_context(cert).wrap_socket(raw, server_hostname=HOST)
        self.buf = b""
        self.local = self.sock.getsockname()

    def request(self, path: str = "/") -> int:
        self.sock.sendall(f"GET {path} HTTP/1.1\r\nHost: {HOST}\r\n\r\n".encode())
        return self.read_response()[0]

    def read_response(self) -> tuple[int, bytes]:
        while b"\r\n\r\n" not in self.buf:
            self._more()
        head, _, rest = self.buf.partition(b"\r\n\r\n")
        lines = head.decode("latin-1").split("\r\n")
        status = int(lines[0].split()[1])
        length = 0
        for line in lines[1:]:
            name, _, value = line.partition(":")
            if name.strip().lower() == "content-length":
                length = int(value.strip())
        while len(rest) < length:
            self.buf = rest
            self._more()
            rest = self.buf
        self.buf = rest[length:]
        return status, rest[:length]

    def _more(self) -> None:
        data = self.sock.recv(65536)
        if not data:
            raise ConnectionError("the edge closed the connection")
        self.buf += data

    def close(self) -> None:
        self.sock.close()


# --- tests -----------------------------------------------------------------------------------


def test_unrelated_changes_under_load_fail_no_request(edge: Edge, tmp_path: Path) -> None:
    """Four keep-alive clients and one opening a new connection per request hammer the mTLS
    hostname for ~5 s while the API changes things that must not change their outcome."""
    e = edge
    other_ca = openssl_root(tmp_path / "ca2", kind="ec", cn="Second CA")
    stop = threading.Event()
    lock = threading.Lock()
    counts = {"ok": 0}
    failures: list[str] = []
    url = f"https://127.0.0.1:{e.port}/load"
    ext = {"sni_hostname": HOST}
    headers = {"Host": HOST}

    def hammer(fresh: bool) -> None:
        ctx = e.client_context(e.good)
        client = httpx.Client(verify=ctx, timeout=10, limits=httpx.Limits(max_connections=1))
        try:
            while not stop.is_set():
                try:
                    if fresh:
                        with httpx.Client(verify=ctx, timeout=10) as one:
                            r = one.get(url, headers=headers, extensions=ext)
                    else:
                        r = client.get(url, headers=headers, extensions=ext)
                    outcome = "ok" if r.status_code == 200 else f"status {r.status_code}"
                except httpx.HTTPError as exc:
                    outcome = f"{type(exc).__name__}: {exc}"
                with lock:
                    if outcome == "ok":
                        counts["ok"] += 1
                    else:
                        failures.append(outcome)
        finally:
            client.close()

    threads = [threading.Thread(target=hammer, args=(i == 4,), daemon=True) for i in range(5)]
    before = e.config_version()
    for t in threads:
        t.start()
    changes = 0
    try:
        with e.api() as c:
            end = time.monotonic() + 5
            second_ca_id: str | None = None
            while time.monotonic() < end:
                # An unrelated proxied hostname comes and goes.
                r = c.post(
                    e.zone("dns_records"),
                    json={
                        "type": "A",
                        "name": f"other{changes}.example.com",
                        "content": "127.0.0.1",
                        "proxied": True,
                    },
                )
                assert r.status_code == 200, r.text
                record_id = r.json()["result"]["id"]
                assert c.delete(e.zone(f"dns_records/{record_id}")).status_code == 200
                # A second CA is trusted too, then no more (the first one stays).
                if second_ca_id is None:
                    second_ca_id = e.upload_ca(c, other_ca, "second")
                    e.associate(c, second_ca_id, [HOST])
                else:
                    e.associate(c, second_ca_id, [])
                    r = c.delete(e.account(f"mtls_certificates/{second_ca_id}"))
                    assert r.status_code == 200, r.text
                    second_ca_id = None
                # The rule, rewritten to an equivalent one.
                e.set_rule(c, EQUIVALENT_RULE if changes % 2 == 0 else SEED_RULE)
                # The managed client-certificate headers, on and off.
                r = c.patch(
                    e.zone("managed_headers"),
                    json={
                        "managed_request_headers": [
                            {"id": "add_client_certificate_headers", "enabled": changes % 2 == 0}
                        ],
                        "managed_response_headers": [],
                    },
                )
                assert r.status_code == 200, r.text
                changes += 1
                time.sleep(0.15)  # let the workers (polling every 0.2 s) apply some of them
    finally:
        time.sleep(0.5)  # requests that began under the last change
        stop.set()
        for t in threads:
            t.join(15)
    after = e.config_version()
    print(f"\n{counts['ok']} requests over {changes} change rounds, config {before} → {after}")
    assert not any(t.is_alive() for t in threads)
    assert failures == [], f"{len(failures)} failed requests, e.g. {failures[:5]}"
    assert counts["ok"] >= 200, counts
    assert changes >= 5
    assert after - before >= 4 * changes  # each round is at least four versions


def test_rule_change_applies_to_the_next_request_on_an_open_connection(edge: Edge) -> None:
    e = edge
    conn = RawConnection(e, e.good)
    try:
        assert conn.request() == 200
        with e.api() as c:
            e.set_rule(c, BLOCK_VERIFIED)
        took = eventually(conn.request, 403)
        e.measured["block rule, open connection"] = took
        with e.api() as c:
            e.set_rule(c, SEED_RULE)
        eventually(conn.request, 200)
        assert conn.sock.getsockname() == conn.local  # still the one connection
    finally:
        conn.close()
    print(f"\nblock rule reached the open connection in {took:.3f}s")


def test_removed_association_stops_authorising_an_open_connection(edge: Edge) -> None:
    """Without an association the hostname checks no certificate: nothing on it is verified,
    not even on a connection whose handshake was verified before the change."""
    e = edge
    conn = RawConnection(e, e.good)
    try:
        assert conn.request() == 200
        with e.api() as c:
            e.associate(c, e.ca_id, [])
        # New handshakes: no CertificateRequest any more, so the seed rule blocks.
        eventually(lambda: asks_for_certificate(e.port), False)
        steady(lambda: curl(e, e.good), 403)
        # The open connection: its next request is not verified either.
        statuses = []
        deadline = time.monotonic() + PROPAGATION
        while time.monotonic() < deadline:
            statuses.append(conn.request())
            if statuses[-1] == 403:
                break
            time.sleep(0.05)
        assert statuses[-1] == 403, (
            f"the open connection is still authorised {PROPAGATION}s after its hostname's "
            f"association was removed (statuses {statuses[:3]}...{statuses[-3:]}, "
            f"{len(statuses)} requests)"
        )
    finally:
        conn.close()


def test_replaced_ca_stops_authorising_an_open_connection(edge: Edge, tmp_path: Path) -> None:
    """The hostname moves to another CA: a connection verified against the old one is no
    longer verified on its next request."""
    e = edge
    other_ca = openssl_root(tmp_path / "ca2", kind="ec", cn="Replacement CA")
    conn = RawConnection(e, e.good)
    try:
        assert conn.request() == 200
        with e.api() as c:
            new_id = e.upload_ca(c, other_ca, "replacement")
            e.associate(c, new_id, [HOST])
            e.associate(c, e.ca_id, [])
            r = c.delete(e.account(f"mtls_certificates/{e.ca_id}"))
            assert r.status_code == 200, r.text
        steady(lambda: curl(e, e.good), 403)  # new handshakes: untrusted
        assert asks_for_certificate(e.port)
        statuses = []
        deadline = time.monotonic() + PROPAGATION
        while time.monotonic() < deadline:
            statuses.append(conn.request())
            if statuses[-1] == 403:
                break
            time.sleep(0.05)
        assert statuses[-1] == 403, (
            f"the open connection is still authorised {PROPAGATION}s after its CA was "
            f"removed (statuses {statuses[:3]}...{statuses[-3:]}, {len(statuses)} requests)"
        )
    finally:
        conn.close()


def test_propagation_time_to_new_handshakes(edge: Edge) -> None:
    """From the API's answer to the first fresh handshake that sees the change, and to six
    consecutive ones that all do (so both workers have it)."""
    e = edge
    results: dict[str, tuple[float, float]] = {}

    def measure(name: str, change: Callable[[httpx.Client], None], check: Callable[[], object],
                expected: object) -> None:  # fmt: skip
        with e.api() as c:
            change(c)
        start = time.monotonic()
        first = eventually(check, expected)
        streak = 0
        while streak < 6:
            streak = streak + 1 if check() == expected else 0
            assert time.monotonic() - start < PROPAGATION, f"{name}: not steady in time"
        results[name] = (first, time.monotonic() - start)

    measure(
        "association removed", lambda c: e.associate(c, e.ca_id, []), lambda: curl(e, e.good), 403
    )
    measure(
        "association added", lambda c: e.associate(c, e.ca_id, [HOST]), lambda: curl(e, e.good), 200
    )
    measure(
        "rule blocks verified",
        lambda c: e.set_rule(c, BLOCK_VERIFIED),
        lambda: curl(e, e.good),
        403,
    )
    measure("rule restored", lambda c: e.set_rule(c, SEED_RULE), lambda: curl(e, e.good), 200)
    print()
    for name, (first, all_) in results.items():
        print(f"propagation {name}: first fresh handshake {first:.3f}s, steady {all_:.3f}s")
        assert first <= PROPAGATION


def _children(pid: int) -> set[int]:
    out = set()
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            stat = Path(f"/proc/{entry}/stat").read_text()
        except OSError:
            continue
        # pid (comm) state ppid ...: comm may hold spaces, so split after the last ')'.
        fields = stat.rsplit(")", 1)[1].split()
        if int(fields[1]) == pid and fields[0] != "Z":
            out.add(int(entry))
    return out


def _alive(pid: int) -> bool:
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return False
    return stat.rsplit(")", 1)[1].split()[0] != "Z"


def test_sigterm_drains_the_request_in_flight_and_leaves_no_worker(own_edge: Edge) -> None:
    """A request whose body is still arriving when `serve` gets SIGTERM completes with 200;
    meanwhile the edge takes no new connections; `serve` and its workers are gone in 15 s."""
    e = own_edge
    proc = e.gw.proc
    assert proc is not None
    workers = _children(proc.pid)
    assert len(workers) >= 2, workers
    conn = RawConnection(e, e.good)
    body = b"x" * 1000
    try:
        assert conn.request() == 200  # handshake done, verified
        conn.sock.sendall(
            f"POST /upload HTTP/1.1\r\nHost: {HOST}\r\nContent-Length: {len(body)}\r\n"
            "Content-Type: application/octet-stream\r\n\r\n".encode()
            + body[:100]
        )
        time.sleep(0.3)  # the edge has the head and is streaming the body to the origin
        proc.send_signal(signal.SIGTERM)
        # Draining: the listening sockets close, no new connection is taken.
        deadline = time.monotonic() + 5
        refused = False
        while time.monotonic() < deadline and not refused:
            try:
                socket.create_connection(("127.0.0.1", e.port), timeout=1).close()
                time.sleep(0.05)
            except OSError:
                refused = True
        assert refused, "the edge still accepts new connections 5 s after SIGTERM"
        for i in range(1, 10):  # the rest of the body, slowly
            conn.sock.sendall(body[i * 100 : (i + 1) * 100])
            time.sleep(0.05)
        status, payload = conn.read_response()
        assert status == 200, payload
        assert b'"body_length": 1000' in payload, payload
    finally:
        conn.close()
    proc.wait(15)
    deadline = time.monotonic() + 5
    while time.monotonic() < deadline and any(_alive(p) for p in workers):
        time.sleep(0.1)
    assert not [p for p in workers if _alive(p)], "edge workers outlived serve"
    assert _children(proc.pid) == set()
