"""An immutable picture of what the edge serves: hostname → HostProfile.

A configuration change builds a new Snapshot and swaps one reference; nothing mutates a live one,
so a request sees one consistent configuration from its first byte to its last.
"""

from __future__ import annotations

import base64
import hashlib
import weakref
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from cryptography.hazmat.primitives.serialization import Encoding
from OpenSSL import SSL

if TYPE_CHECKING:
    from mtlsgate.pki.client_auth import ClientCertFacts
    from mtlsgate.pki.revocation import RevocationIndex

# The net effect of a request's matching late-transform rules: lowercase header name →
# (the name as the rule wrote it, the raw value) to set, or None to remove. Values are not yet
# escaped: the server escapes control characters as it does for the cf-cert-* headers.
HeaderOps = dict[bytes, tuple[bytes, bytes] | None]


@dataclass(frozen=True)
class Origin:
    host: str
    port: int
    tls: bool = False
    verify: bool = False  # "strict": verify the origin's certificate
    host_header: str | None = None
    sni: str | None = None
    # The origin pool's key (computed once: the request path looks it up per request).
    pool_key: tuple[Any, ...] = field(init=False, compare=False, repr=False, default=())

    def __post_init__(self) -> None:
        key = (self.host, self.port, self.tls, self.verify, self.sni)
        object.__setattr__(self, "pool_key", key)


@dataclass(frozen=True)
class BlockResponse:
    status: int = 403
    content: bytes = b""
    content_type: str = "text/plain"


@dataclass(frozen=True)
class FirewallRule:
    rule_id: str
    action: str  # "block" | "log" | "skip"
    response: BlockResponse | None = None
    skip_ruleset: bool = False


class ConnectionMarks:
    """Connections that have had something done once (weakly held: a closed connection leaves).

    Kept outside the snapshot's lifetime: a configuration change must not make the edge forward
    a certificate again on a connection that already had it forwarded."""

    __slots__ = ("_seen",)

    def __init__(self) -> None:
        self._seen: weakref.WeakSet[Any] = weakref.WeakSet()

    def first(self, conn: Any) -> bool:
        """True the first time `conn` is named, False afterwards."""
        if conn in self._seen:
            return False
        self._seen.add(conn)
        return True


# One per worker process, shared by every snapshot it builds.
CERT_FORWARDED = ConnectionMarks()


@dataclass(frozen=True)
class HostProfile:
    hostname: str
    zone_id: str
    context: SSL.Context
    mtls: bool
    origin: Origin
    # Index of the first matching firewall rule, or -1 (a compile_first_match function).
    firewall: Callable[[Mapping[str, Any]], int] | None = None
    firewall_rules: tuple[FirewallRule, ...] = ()
    managed_cert_headers: bool = False
    # SHA-256 fingerprints of the trust anchors: an open connection whose verifying anchor is
    # not among them any more is no longer verified.
    trust_fingerprints: frozenset[bytes] = frozenset()
    # `log` rules: the first that matches is named in the request's log line.
    log_rules: Callable[[Mapping[str, Any]], int] | None = None
    log_rule_ids: tuple[str, ...] = ()
    # The firewall and log rules read only facts.CONNECTION_FIELDS, and nothing else needs the
    # request's facts (no origin or late-transform rules): decided once per connection.
    connection_rules: bool = False
    # Origin rules: index of the first matching route rule, and the origin each one selects.
    origin_rules: Callable[[Mapping[str, Any]], int] | None = None
    origin_routes: tuple[Origin, ...] = ()
    # Late-transform header rules (http_request_late_transform), compiled into one function
    # that returns what every matching rule does to the headers; None: the zone has none.
    late_transform: Callable[[Mapping[str, Any]], HeaderOps] | None = None
    # Access mTLS hostname setting: forward the client certificate on the first request of
    # each connection (Cf-Client-Cert-Der-Base64, Cf-Client-Cert-Sha256).
    client_cert_forwarding: bool = False
    # The account's revocations (pki/revocation.py); None when it has none, so a handshake
    # pays nothing for the check.
    revocation: RevocationIndex | None = None
    forwarded: ConnectionMarks = field(default=CERT_FORWARDED, compare=False, repr=False)
    # The hostname as a Host header usually carries it: a request whose Host is exactly this
    # skips normalising (the request path compares per request).
    name_bytes: bytes = field(init=False, compare=False, repr=False, default=b"")

    def __post_init__(self) -> None:
        object.__setattr__(self, "name_bytes", self.hostname.encode("ascii", "replace"))

    def forwarding_headers(self, conn: Any, cert: ClientCertFacts) -> bytes:
        """The Access forwarding headers for a request of `conn` that reaches the origin: the
        client's certificate on the connection's first such request, nothing afterwards (as at
        Cloudflare) nor when no certificate was presented."""
        leaf = cert.leaf
        if leaf is None or not self.forwarded.first(conn):
            return b""
        der = leaf.public_bytes(Encoding.DER)
        return b"".join(
            (
                b"Cf-Client-Cert-Der-Base64: ",
                base64.b64encode(der),
                b"\r\nCf-Client-Cert-Sha256: ",
                hashlib.sha256(der).hexdigest().encode("ascii"),
                b"\r\n",
            )
        )


@dataclass(frozen=True)
class Snapshot:
    version: int
    exact: Mapping[str, HostProfile]
    wildcard: Mapping[str, HostProfile] = field(
        default_factory=dict
    )  # "example.com" for *.example.com
    default: HostProfile | None = None

    def lookup(self, hostname: str | None) -> HostProfile | None:
        """Exact name first, then a one-label wildcard; no SNI gets the default host."""
        if not hostname:
            return self.default
        name = hostname.lower().rstrip(".")
        profile = self.exact.get(name)
        if profile is None:
            _, _, parent = name.partition(".")
            profile = self.wildcard.get(parent)
        return profile
