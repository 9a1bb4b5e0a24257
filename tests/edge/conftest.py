"""A real edge worker process (tests/edge/edge_proc.py) plus certificates made by the openssl CLI.

Hostnames served: api.example.com (mTLS against `client_ca`, the seed's block rule, managed
cert headers, also the default for clients without SNI), open.example.com (no mTLS, no rules),
down.example.com (origin port with nobody listening: 502), slow.example.com (an origin that
accepts and never answers: 504 after the 1 s response timeout set for the test process) and
xform.example.com (mTLS against `client_ca` without a block rule, late-transform header rules
and Access certificate forwarding: edge_proc.TRANSFORM_RULES), and *.wild.example.com (mTLS
against `client_ca` with the same block rule as api.example.com, a wildcard profile).
"""

from __future__ import annotations

import itertools
import json
import os
import socket
import ssl
import subprocess
import sys
import threading
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path

import httpx
import pytest

from tests.certs import CertFiles, openssl, openssl_key, openssl_leaf, openssl_root

REPO = Path(__file__).resolve().parents[2]
HOSTS = (
    "api.example.com",
    "open.example.com",
    "down.example.com",
    "slow.example.com",
    "xform.example.com",
    "big.example.com",
    "sink.example.com",
)
_n = itertools.count(1)

_SERVER_EXT = """\
basicConstraints = critical,CA:FALSE
keyUsage = critical,digitalSignature,keyEncipherment
extendedKeyUsage = serverAuth
subjectAltName = {sans}
subjectKeyIdentifier = hash
authorityKeyIdentifier = keyid,issuer
"""
_CLIENT_EXT = """\
basicConstraints = critical,CA:FALSE
keyUsage = critical,digitalSignature,keyEncipherment
extendedKeyUsage = {eku}
subjectKeyIdentifier = hash
authorityKeyIdentifier = keyid,issuer
"""


def issue(
    tmp: Path,
    issuer: CertFiles,
    *,
    cn: str,
    extensions: str,
    digest: str = "sha256",
    bits: int = 2048,
    not_before: datetime | None = None,
    not_after: datetime | None = None,
) -> CertFiles:
    """A certificate signed by ``issuer`` with ``openssl ca`` (exact dates, any extensions)."""
    work = tmp / f"issued-{next(_n):03d}-{''.join(c if c.isalnum() else '_' for c in cn)}"
    work.mkdir(parents=True)
    (work / "index.txt").touch()
    (work / "serial").write_text(f"{0x5000 + next(_n):X}\n")
    config = work / "openssl.cnf"
    config.write_text(
        f"""[req]
distinguished_name = dn
prompt = no
[dn]
CN = placeholder
[ca]
default_ca = ca_dir
[ca_dir]
dir = {work}
database = {work}/index.txt
new_certs_dir = {work}
serial = {work}/serial
default_md = {digest}
default_days = 365
policy = policy_any
unique_subject = no
email_in_dn = no
copy_extensions = none
[policy_any]
commonName = supplied
organizationName = optional
[ext]
{extensions}"""
    )
    key = openssl_key(work, "rsa", bits=bits)
    csr = work / "req.csr"
    openssl(
        "req", "-new", "-key", key, "-subj", f"/O=Edge Tests/CN={cn}", "-out", csr, config=config
    )
    now = datetime.now(UTC)
    start = (not_before or now - timedelta(hours=1)).strftime("%Y%m%d%H%M%SZ")
    end = (not_after or now + timedelta(days=30)).strftime("%Y%m%d%H%M%SZ")
    cert = work / "cert.pem"
    openssl(
        "ca", "-batch", "-config", config, "-cert", issuer.cert_path, "-keyfile",
        issuer.key_path, "-in", csr, "-startdate", start, "-enddate", end, "-md", digest,
        "-extensions", "ext", "-notext", "-out", cert, config=config,
    )  # fmt: skip
    return CertFiles(cert.read_text(), key.read_text(), cert, key)


@dataclass(frozen=True)
class Pki:
    edge_ca: CertFiles
    edge: CertFiles
    client_ca: CertFiles
    good: CertFiles
    other_ca_leaf: CertFiles
    expired: CertFiles
    sha1: CertFiles
    rsa1024: CertFiles
    no_client_eku: CertFiles


@pytest.fixture(scope="session")
def pki(tmp_path_factory: pytest.TempPathFactory) -> Pki:
    tmp = tmp_path_factory.mktemp("edge-pki")
    edge_ca = openssl_root(tmp, cn="Edge Test CA")
    sans = ",".join(f"DNS:{h}" for h in (*HOSTS, "*.wild.example.com"))
    edge = issue(tmp, edge_ca, cn="api.example.com", extensions=_SERVER_EXT.format(sans=sans))
    client_ca = openssl_root(tmp, cn="Client CA")
    other_ca = openssl_root(tmp, cn="Other CA")
    client = _CLIENT_EXT.format(eku="clientAuth")
    now = datetime.now(UTC)
    return Pki(
        edge_ca=edge_ca,
        edge=edge,
        client_ca=client_ca,
        good=issue(tmp, client_ca, cn="good client", extensions=client),
        other_ca_leaf=openssl_leaf(tmp, other_ca, cn="stranger"),
        expired=issue(
            tmp,
            client_ca,
            cn="expired client",
            extensions=client,
            not_before=now - timedelta(days=60),
            not_after=now - timedelta(days=1),
        ),
        sha1=issue(tmp, client_ca, cn="sha1 client", extensions=client, digest="sha1"),
        rsa1024=issue(tmp, client_ca, cn="rsa1024 client", extensions=client, bits=1024),
        no_client_eku=issue(
            tmp, client_ca, cn="server-only client", extensions=_CLIENT_EXT.format(eku="serverAuth")
        ),
    )


class _ThreadedOrigin:
    """A test origin on 127.0.0.1: accepts connections and gives each to `_serve` in a thread."""

    def __init__(self) -> None:
        self.sock = socket.socket()
        self.sock.bind(("127.0.0.1", 0))
        self.sock.listen(64)
        self.port = self.sock.getsockname()[1]
        threading.Thread(target=self._run, daemon=True).start()

    def _run(self) -> None:
        while True:
            try:
                conn, _ = self.sock.accept()
            except OSError:
                return
            threading.Thread(target=self._serve, args=(conn,), daemon=True).start()

    def _serve(self, conn: socket.socket) -> None:
        raise NotImplementedError

    def close(self) -> None:
        self.sock.close()


class Blackhole(_ThreadedOrigin):
    """An origin that accepts connections and never answers."""

    def __init__(self) -> None:
        self.held: list[socket.socket] = []
        super().__init__()

    def _serve(self, conn: socket.socket) -> None:
        self.held.append(conn)

    def close(self) -> None:
        super().close()
        for conn in self.held:
            conn.close()


BIG_BODY = 32 * 1024 * 1024


class BigOrigin(_ThreadedOrigin):
    """An origin whose every answer is a BIG_BODY-byte body (with Content-Length)."""

    def _serve(self, conn: socket.socket) -> None:
        chunk = b"x" * 65536
        with conn:
            try:
                while True:
                    head = b""
                    while b"\r\n\r\n" not in head:
                        data = conn.recv(65536)
                        if not data:
                            return
                        head += data
                    conn.sendall(b"HTTP/1.1 200 OK\r\nContent-Length: %d\r\n\r\n" % BIG_BODY)
                    for _ in range(BIG_BODY // len(chunk)):
                        conn.sendall(chunk)
            except OSError:
                return


class SlowSink(_ThreadedOrigin):
    """An origin that reads request bodies slowly (64 KiB per 50 ms) until `fast` is set, then
    at full speed, and answers with the number of body bytes it read."""

    def __init__(self) -> None:
        self.fast = threading.Event()
        super().__init__()

    def _serve(self, conn: socket.socket) -> None:
        import time

        with conn:
            try:
                head = b""
                while b"\r\n\r\n" not in head:
                    data = conn.recv(4096)
                    if not data:
                        return
                    head += data
                head, _, body = head.partition(b"\r\n\r\n")
                length = int(re_content_length(head))
                got = len(body)
                while got < length:
                    if not self.fast.is_set():
                        time.sleep(0.05)
                    data = conn.recv(65536 if not self.fast.is_set() else 1 << 20)
                    if not data:
                        return
                    got += len(data)
                answer = str(got).encode()
                conn.sendall(b"HTTP/1.1 200 OK\r\nContent-Length: %d\r\n\r\n%s"
                             % (len(answer), answer))  # fmt: skip
            except OSError:
                return


SINKS: list[SlowSink] = []  # the running edge's slow-reading origin (the latest one)


def re_content_length(head: bytes) -> bytes:
    for line in head.split(b"\r\n"):
        name, _, value = line.partition(b":")
        if name.strip().lower() == b"content-length":
            return value.strip()
    return b"0"


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@dataclass
class Edge:
    port: int
    origin_port: int
    pki: Pki
    proc: subprocess.Popen[str]

    def alive(self) -> bool:
        return self.proc.poll() is None


@pytest.fixture(scope="session", params=["fast", "public"])
def edge(
    request: pytest.FixtureRequest, pki: Pki, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[Edge]:
    """The edge process, once on each TLS path (tls_engine.py): `fast` is required to be the
    direct-OpenSSL path (the process fails to start otherwise), `public` is the fallback."""
    tmp = tmp_path_factory.mktemp("edge-proc")
    hole = Blackhole()
    big = BigOrigin()
    sink = SlowSink()
    SINKS.append(sink)
    chain = tmp / "edge-chain.pem"
    chain.write_text(pki.edge.cert_pem + pki.edge_ca.cert_pem)
    config = tmp / "config.json"
    config.write_text(
        json.dumps(
            {
                "edge_chain": str(chain),
                "edge_key": str(pki.edge.key_path),
                "client_ca": str(pki.client_ca.cert_path),
                "extra_hosts": {
                    "down.example.com": _free_port(),
                    "slow.example.com": hole.port,
                    "big.example.com": big.port,
                    "sink.example.com": sink.port,
                },
            }
        )
    )
    env = dict(
        os.environ,
        MTLSGATE_EDGE_RESPONSE_TIMEOUT="1.0",
        MTLSGATE_EDGE_TLS=request.param,
        PYTHONPATH=str(REPO),
    )
    log = (tmp / "edge.log").open("w")
    proc = subprocess.Popen(
        [sys.executable, "-m", "tests.edge.edge_proc", str(config)],
        cwd=REPO,
        env=env,
        stdout=subprocess.PIPE,
        stderr=log,
        text=True,
    )
    try:
        assert proc.stdout is not None
        line = proc.stdout.readline().split()
        if not line or line[0] != "ready":
            proc.kill()
            raise RuntimeError("edge process did not start: " + (tmp / "edge.log").read_text())
        yield Edge(int(line[1]), int(line[2]), pki, proc)
    finally:
        proc.terminate()
        try:
            proc.wait(5)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
        log.close()
        hole.close()
        big.close()
        sink.close()
        stderr = (tmp / "edge.log").read_text()
        if "Traceback" in stderr:
            print("edge process stderr:\n" + stderr)


# --- client helpers -----------------------------------------------------------------------------


@dataclass(frozen=True)
class CurlResult:
    status: int
    body: str


def curl(
    edge: Edge,
    host: str = "api.example.com",
    path: str = "/",
    *,
    cert: CertFiles | None = None,
    headers: tuple[str, ...] = (),
    extra: tuple[str, ...] = (),
) -> CurlResult:
    """One request with the curl CLI; `--resolve` sends SNI `host` to the edge's port."""
    args = [
        "curl", "-sS", "--max-time", "10", "--cacert", str(edge.pki.edge_ca.cert_path),
        "--resolve", f"{host}:{edge.port}:127.0.0.1", "-o", "-", "-w", "\n%{http_code}",
    ]  # fmt: skip
    if cert is not None:
        args += ["--cert", str(cert.cert_path), "--key", str(cert.key_path)]
    for h in headers:
        args += ["-H", h]
    args += [*extra, f"https://{host}:{edge.port}{path}"]
    out = subprocess.run(args, capture_output=True, text=True, timeout=20, check=False)
    body, _, code = out.stdout.rpartition("\n")
    return CurlResult(int(code or 0), body)


def client_context(edge: Edge, cert: CertFiles | None = None) -> ssl.SSLContext:
    ctx = ssl.create_default_context(cafile=str(edge.pki.edge_ca.cert_path))
    # Weak test certificates (RSA-1024, SHA-1) must be sendable by the client's own OpenSSL.
    ctx.set_ciphers("DEFAULT@SECLEVEL=0")
    if cert is not None:
        ctx.load_cert_chain(str(cert.cert_path), str(cert.key_path))
    return ctx


def tls_socket(
    edge: Edge, host: str | None = "open.example.com", cert: CertFiles | None = None
) -> ssl.SSLSocket:
    ctx = client_context(edge, cert)
    if host is None:
        ctx.check_hostname = False
    raw = socket.create_connection(("127.0.0.1", edge.port), timeout=10)
    return ctx.wrap_socket(raw, server_hostname=host)


def read_until_close(sock: ssl.SSLSocket, timeout: float = 5.0) -> bytes:
    sock.settimeout(timeout)
    out = b""
    while True:
        try:
            data = sock.recv(65536)
        except OSError:  # ssl.SSLError, reset, timeout
            break
        if not data:
            break
        out += data
    return out


def raw_exchange(edge: Edge, payload: bytes, host: str = "open.example.com") -> bytes:
    """Send `payload` over TLS and return everything the edge writes until it closes."""
    with tls_socket(edge, host) as sock:
        sock.sendall(payload)
        return read_until_close(sock)


def read_response(sock: ssl.SSLSocket) -> tuple[int, dict[str, str], bytes]:
    """One Content-Length-framed response from a keep-alive connection."""
    buf = b""
    while b"\r\n\r\n" not in buf:
        data = sock.recv(65536)
        if not data:
            raise EOFError(buf)
        buf += data
    head, _, rest = buf.partition(b"\r\n\r\n")
    lines = head.decode("latin-1").split("\r\n")
    status = int(lines[0].split()[1])
    headers = {k.strip().lower(): v.strip() for k, _, v in (ln.partition(":") for ln in lines[1:])}
    length = int(headers.get("content-length", "0"))
    while len(rest) < length:
        data = sock.recv(65536)
        if not data:
            raise EOFError(rest)
        rest += data
    assert len(rest) == length, "extra bytes after a response"
    return status, headers, rest


def httpx_get(
    edge: Edge, host: str = "api.example.com", path: str = "/", *, cert: CertFiles | None = None
) -> httpx.Response:
    """One request with httpx (its TLS context accepts weak test certificates on the client)."""
    with httpx.Client(verify=client_context(edge, cert), timeout=10) as client:
        return client.get(
            f"https://127.0.0.1:{edge.port}{path}",
            headers={"Host": host},
            extensions={"sni_hostname": host},
        )
