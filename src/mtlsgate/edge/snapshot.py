"""An immutable picture of what the edge serves: hostname → HostProfile.

A configuration change builds a new Snapshot and swaps one reference; nothing mutates a live one,
so a request sees one consistent configuration from its first byte to its last.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

from OpenSSL import SSL


@dataclass(frozen=True)
class Origin:
    host: str
    port: int
    tls: bool = False
    verify: bool = False  # "strict": verify the origin's certificate
    host_header: str | None = None
    sni: str | None = None


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
    # `log` rules: the first that matches is named in the request's log line.
    log_rules: Callable[[Mapping[str, Any]], int] | None = None
    log_rule_ids: tuple[str, ...] = ()
    # Origin rules: index of the first matching route rule, and the origin each one selects.
    origin_rules: Callable[[Mapping[str, Any]], int] | None = None
    origin_routes: tuple[Origin, ...] = ()


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
