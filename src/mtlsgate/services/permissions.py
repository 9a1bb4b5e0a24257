"""Permission groups with Cloudflare's names, and the Principal that checks them.

A token belongs to one account. Each of its policies grants one permission group on that account
(and so on every zone of it) or on one zone. "... Write" implies "... Read" of the same group.
Permission groups named "Account: ..." only make sense at account scope.
"""

from __future__ import annotations

from dataclasses import dataclass

from mtlsgate.errors import Forbidden

ACCOUNT_SSL_READ = "Account: SSL and Certificates Read"
ACCOUNT_SSL_WRITE = "Account: SSL and Certificates Write"
ZONE_SSL_READ = "SSL and Certificates Read"
ZONE_SSL_WRITE = "SSL and Certificates Write"
ZONE_WAF_READ = "Zone WAF Read"
ZONE_WAF_WRITE = "Zone WAF Write"
DNS_READ = "DNS Read"
DNS_WRITE = "DNS Write"
ZONE_SETTINGS_READ = "Zone Settings Read"
ZONE_SETTINGS_WRITE = "Zone Settings Write"
MANAGED_HEADERS_READ = "Managed headers Read"
MANAGED_HEADERS_WRITE = "Managed headers Write"
ACCESS_MTLS_READ = "Access: Mutual TLS Certificates Read"
ACCESS_MTLS_WRITE = "Access: Mutual TLS Certificates Write"

# Every permission group mtlsgate knows, including those later parts of the API check
# (rules, DNS records, zone settings, managed headers): the admin token holds all of them.
ALL_PERMISSIONS: tuple[str, ...] = (
    ACCOUNT_SSL_READ,
    ACCOUNT_SSL_WRITE,
    ZONE_SSL_READ,
    ZONE_SSL_WRITE,
    ZONE_WAF_READ,
    ZONE_WAF_WRITE,
    DNS_READ,
    DNS_WRITE,
    ZONE_SETTINGS_READ,
    ZONE_SETTINGS_WRITE,
    MANAGED_HEADERS_READ,
    MANAGED_HEADERS_WRITE,
    ACCESS_MTLS_READ,
    ACCESS_MTLS_WRITE,
)


def is_account_permission(permission: str) -> bool:
    return permission.startswith("Account: ")


def _satisfies(granted: str, wanted: str) -> bool:
    if granted == wanted:
        return True
    return wanted.endswith(" Read") and granted == wanted[: -len("Read")] + "Write"


@dataclass(frozen=True)
class Policy:
    permission: str
    scope_kind: str  # "account" | "zone"
    scope_id: str


@dataclass(frozen=True)
class Principal:
    token_id: str
    account_id: str
    policies: tuple[Policy, ...]

    def can(self, permission: str, *, account_id: str, zone_id: str | None = None) -> bool:
        for p in self.policies:
            if not _satisfies(p.permission, permission):
                continue
            if p.scope_kind == "account" and p.scope_id == account_id:
                return True
            if p.scope_kind == "zone" and zone_id is not None and p.scope_id == zone_id:
                return True
        return False

    def require(self, permission: str, *, account_id: str, zone_id: str | None = None) -> None:
        if not self.can(permission, account_id=account_id, zone_id=zone_id):
            raise Forbidden("Authentication error")

    def sees_account(self, account_id: str) -> bool:
        return account_id == self.account_id and bool(self.policies)

    def sees_zone(self, account_id: str, zone_id: str) -> bool:
        return any(
            (p.scope_kind == "account" and p.scope_id == account_id)
            or (p.scope_kind == "zone" and p.scope_id == zone_id)
            for p in self.policies
        )
