"""The rule fields of one request, computed on first use and cached.

RequestFacts is the mapping compiled rules read (`f["http.host"]`): a dict whose missing keys are
filled by the providers below, so a rule pays only for the fields it uses, and each field is
computed at most once per request (the `cf.tls_client_auth.*` ones at most once per connection).
"""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import TYPE_CHECKING, Any
from urllib.parse import parse_qsl, unquote

from mtlsgate.pki.client_auth import FIELD_NAMES, PREFIX
from mtlsgate.rules.fields_cloudflare import FIELDS
from mtlsgate.rules.scheme import default_value

if TYPE_CHECKING:
    from mtlsgate.edge.runtime.server import ClientConnection, Request
    from mtlsgate.edge.snapshot import HostProfile


class RequestFacts(dict[str, Any]):
    __slots__ = ("conn", "profile", "req")

    def __init__(self, conn: ClientConnection, req: Request, profile: HostProfile) -> None:
        # (dict's own __init__ is not called: with no arguments it has nothing to do.)
        self.conn = conn
        self.req = req
        self.profile = profile

    def __missing__(self, key: str) -> Any:
        provider = PROVIDERS.get(key)
        value: Any
        value = provider(self) if provider is not None else default_value(FIELDS[key])
        self[key] = value
        return value

    # Shared pieces several fields derive from.
    def header(self, name: bytes) -> str:
        for n, v in self.req.headers:
            if n == name:
                return v.decode("latin-1")
        return ""


def _path_query(f: RequestFacts) -> tuple[str, str]:
    url = f.req.url.decode("latin-1")
    path, _, query = url.partition("?")
    return path, query


def _uri(f: RequestFacts) -> str:
    return f.req.url.decode("latin-1")


def _path(f: RequestFacts) -> str:
    return _path_query(f)[0]


def _extension(f: RequestFacts) -> str:
    last = f["http.request.uri.path"].rsplit("/", 1)[-1]
    return last.rsplit(".", 1)[1].lower() if "." in last else ""


def _query(f: RequestFacts) -> str:
    return _path_query(f)[1]


def _args(f: RequestFacts) -> dict[str, list[str]]:
    out: dict[str, list[str]] = {}
    for k, v in parse_qsl(f["http.request.uri.query"], keep_blank_values=True):
        out.setdefault(k, []).append(v)
    return out


def _arg_names(f: RequestFacts) -> list[str]:
    return [k for k, _ in parse_qsl(f["http.request.uri.query"], keep_blank_values=True)]


def _arg_values(f: RequestFacts) -> list[str]:
    return [v for _, v in parse_qsl(f["http.request.uri.query"], keep_blank_values=True)]


def _headers(f: RequestFacts) -> dict[str, list[str]]:
    out: dict[str, list[str]] = {}
    for n, v in f.req.headers:
        out.setdefault(n.decode("latin-1"), []).append(v.decode("latin-1"))
    return out


def _cookies(f: RequestFacts) -> dict[str, list[str]]:
    out: dict[str, list[str]] = {}
    for part in f["http.cookie"].split(";"):
        name, sep, value = part.strip().partition("=")
        if sep and name:
            out.setdefault(name, []).append(unquote(value))
    return out


def _host(f: RequestFacts) -> str:
    # The hostname of the Host header, without a port (rules name hosts, not ports).
    host: str = f.req.host.decode("latin-1").lower()
    host = host[: host.find("]") + 1] if host.startswith("[") else host.split(":", 1)[0]
    return host.rstrip(".") or f.profile.hostname


def _full_uri(f: RequestFacts) -> str:
    return "https://" + str(f["http.host"]) + str(f["http.request.uri"])


def _client_auth(name: str) -> Callable[[RequestFacts], Any]:
    def provide(f: RequestFacts) -> Any:
        cert = f.conn.client_facts()
        return cert.get(name) if cert is not None else default_value(FIELDS[name])

    return provide


def _verdict_flag(attribute: str) -> Callable[[RequestFacts], Any]:
    # Read from the verdict alone: the seed's rule never makes the edge parse a certificate.
    def provide(f: RequestFacts) -> Any:
        verdict = f.conn.verdict
        return bool(verdict is not None and verdict.presented and getattr(verdict, attribute))

    return provide


PROVIDERS: dict[str, Callable[[RequestFacts], Any]] = {
    "http.host": _host,
    "http.request.method": lambda f: f.req.method.decode("latin-1"),
    "http.request.uri": _uri,
    "http.request.uri.path": _path,
    "http.request.uri.path.extension": _extension,
    "http.request.uri.query": _query,
    "http.request.uri.args": _args,
    "http.request.uri.args.names": _arg_names,
    "http.request.uri.args.values": _arg_values,
    "http.request.full_uri": _full_uri,
    "http.request.headers": _headers,
    "http.request.headers.names": lambda f: [n.decode("latin-1") for n, _ in f.req.headers],
    "http.request.headers.values": lambda f: [v.decode("latin-1") for _, v in f.req.headers],
    "http.request.headers.truncated": lambda f: False,
    "http.request.cookies": _cookies,
    "http.cookie": lambda f: f.header(b"cookie"),
    "http.referer": lambda f: f.header(b"referer"),
    "http.user_agent": lambda f: f.header(b"user-agent"),
    "http.x_forwarded_for": lambda f: f.header(b"x-forwarded-for"),
    "http.request.version": lambda f: "HTTP/" + f.req.version,
    "http.request.timestamp.sec": lambda f: int(time.time()),
    "http.request.timestamp.msec": lambda f: int(time.time() * 1000) % 1000,
    "ip.src": lambda f: f.conn.peer_ip(),
    "ssl": lambda f: True,
    "cf.tls_version": lambda f: f.conn.tls_info()[0],
    "cf.tls_cipher": lambda f: f.conn.tls_info()[1],
    "cf.edge.server_port": lambda f: f.conn.local_address()[1],
    "cf.edge.server_ip": lambda f: f.conn.local_address()[0],
    "cf.ray_id": lambda f: "",
    **{name: _client_auth(name) for name in FIELD_NAMES},
    PREFIX + "cert_presented": _verdict_flag("presented"),
    PREFIX + "cert_verified": _verdict_flag("verified"),
    PREFIX + "cert_revoked": _verdict_flag("revoked"),
}

# Fields with one value for every request of a connection under one configuration and one
# client-certificate verdict; http.host too when the Host header names the connection's own
# hostname. Rules that read only these decide the same for each such request, so the edge
# evaluates them once per connection (runtime/server.py `_start`).
CONNECTION_FIELDS = frozenset(
    {
        "http.host",
        "ip.src",
        "ssl",
        "cf.tls_version",
        "cf.tls_cipher",
        "cf.edge.server_port",
        "cf.edge.server_ip",
        *FIELD_NAMES,
        PREFIX + "cert_presented",
        PREFIX + "cert_verified",
        PREFIX + "cert_revoked",
    }
)
