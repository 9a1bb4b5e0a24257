"""SQLAlchemy 2 models: the one schema, shared by SQLite and PostgreSQL.

Schema changes go through Alembic (store/migrations); tests check the two agree.
"""

from __future__ import annotations

import json
from datetime import UTC, datetime

from sqlalchemy import (
    BigInteger,
    Boolean,
    DateTime,
    Float,
    ForeignKey,
    Index,
    Integer,
    LargeBinary,
    String,
    Text,
    UniqueConstraint,
)
from sqlalchemy.engine import Dialect
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column
from sqlalchemy.types import TypeDecorator


class Base(DeclarativeBase):
    pass


class UTCDateTime(TypeDecorator[datetime]):
    """Timestamps are stored and returned as UTC; SQLite would otherwise drop the zone."""

    impl = DateTime(timezone=True)
    cache_ok = True

    def process_bind_param(self, value: datetime | None, dialect: Dialect) -> datetime | None:
        if value is None:
            return None
        if value.tzinfo is None:
            raise ValueError("naive datetime given to the store")
        return value.astimezone(UTC)

    def process_result_value(self, value: datetime | None, dialect: Dialect) -> datetime | None:
        if value is None:
            return None
        return value.replace(tzinfo=UTC) if value.tzinfo is None else value.astimezone(UTC)


class ConfigState(Base):
    """A single row whose `version` grows with every change the edge cares about."""

    __tablename__ = "config_state"
    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    version: Mapped[int] = mapped_column(BigInteger, nullable=False)


class Account(Base):
    __tablename__ = "accounts"
    id: Mapped[str] = mapped_column(String(32), primary_key=True)
    name: Mapped[str] = mapped_column(String(255), nullable=False)
    plan: Mapped[str] = mapped_column(String(32), nullable=False)
    ca_quota: Mapped[int] = mapped_column(Integer, nullable=False)
    created_on: Mapped[datetime] = mapped_column(UTCDateTime(), nullable=False)


class Zone(Base):
    __tablename__ = "zones"
    id: Mapped[str] = mapped_column(String(32), primary_key=True)
    account_id: Mapped[str] = mapped_column(ForeignKey("accounts.id"), nullable=False, index=True)
    name: Mapped[str] = mapped_column(String(253), nullable=False, unique=True)
    created_on: Mapped[datetime] = mapped_column(UTCDateTime(), nullable=False)


class ApiToken(Base):
    __tablename__ = "api_tokens"
    id: Mapped[str] = mapped_column(String(32), primary_key=True)
    account_id: Mapped[str] = mapped_column(ForeignKey("accounts.id"), nullable=False, index=True)
    name: Mapped[str] = mapped_column(String(255), nullable=False)
    # SHA-256 of the secret: tokens are 40 random characters, so a fast hash is enough.
    token_hash: Mapped[str] = mapped_column(String(64), nullable=False, unique=True)
    status: Mapped[str] = mapped_column(String(16), nullable=False)
    created_on: Mapped[datetime] = mapped_column(UTCDateTime(), nullable=False)


class TokenPolicy(Base):
    """One permission group granted to a token on one account (all its zones) or one zone."""

    __tablename__ = "token_policies"
    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    token_id: Mapped[str] = mapped_column(
        ForeignKey("api_tokens.id", ondelete="CASCADE"), nullable=False, index=True
    )
    permission: Mapped[str] = mapped_column(String(128), nullable=False)
    scope_kind: Mapped[str] = mapped_column(String(16), nullable=False)  # "account" | "zone"
    scope_id: Mapped[str] = mapped_column(String(32), nullable=False)


class ManagedCA(Base):
    """The account's own client-certificate CA (the "Cloudflare-managed CA" of the anchor)."""

    __tablename__ = "managed_cas"
    id: Mapped[str] = mapped_column(String(36), primary_key=True)
    account_id: Mapped[str] = mapped_column(ForeignKey("accounts.id"), nullable=False, index=True)
    name: Mapped[str] = mapped_column(String(255), nullable=False)
    certificate_pem: Mapped[str] = mapped_column(Text, nullable=False)
    private_key_sealed: Mapped[str] = mapped_column(Text, nullable=False)
    active: Mapped[bool] = mapped_column(Boolean, nullable=False)
    created_on: Mapped[datetime] = mapped_column(UTCDateTime(), nullable=False)
    # Rotation (services/managed_cas.py): one row is `active` (it signs); the others are
    # *retiring* (still trusted, so what they signed keeps working) until `retired_on` is set.
    retired_on: Mapped[datetime | None] = mapped_column(UTCDateTime(), nullable=True)


class ClientCertificate(Base):
    """A client certificate the account's managed CA signed for a zone (never deleted).

    `status` is one of active, pending_revocation, revoked, pending_reactivation. The edge treats
    pending_revocation and revoked as revoked. `status_version` is the config version that
    carried the latest status change: a pending status settles once every running edge node has
    applied it (services/client_certificates.py). `serial_number` is lowercase hex, two digits
    per byte; the subject fields are "" when the CSR has none.
    """

    __tablename__ = "client_certificates"
    __table_args__ = (
        Index("ix_client_certificates_zone_created", "zone_id", "created_on"),
        Index("ix_client_certificates_ca_status", "managed_ca_id", "status"),
    )
    id: Mapped[str] = mapped_column(String(32), primary_key=True)
    zone_id: Mapped[str] = mapped_column(ForeignKey("zones.id"), nullable=False)
    managed_ca_id: Mapped[str] = mapped_column(ForeignKey("managed_cas.id"), nullable=False)
    certificate_pem: Mapped[str] = mapped_column(Text, nullable=False)
    csr: Mapped[str] = mapped_column(Text, nullable=False)
    common_name: Mapped[str] = mapped_column(String(255), nullable=False)
    country: Mapped[str] = mapped_column(String(255), nullable=False)
    state: Mapped[str] = mapped_column(String(255), nullable=False)
    location: Mapped[str] = mapped_column(String(255), nullable=False)
    organization: Mapped[str] = mapped_column(String(255), nullable=False)
    organizational_unit: Mapped[str] = mapped_column(String(255), nullable=False)
    serial_number: Mapped[str] = mapped_column(String(64), nullable=False)
    signature: Mapped[str] = mapped_column(String(64), nullable=False)
    ski: Mapped[str] = mapped_column(String(64), nullable=False)
    fingerprint_sha256: Mapped[str] = mapped_column(String(64), nullable=False)
    validity_days: Mapped[int] = mapped_column(Integer, nullable=False)
    status: Mapped[str] = mapped_column(String(32), nullable=False)
    status_version: Mapped[int] = mapped_column(BigInteger, nullable=False)
    issued_on: Mapped[datetime] = mapped_column(UTCDateTime(), nullable=False)
    expires_on: Mapped[datetime] = mapped_column(UTCDateTime(), nullable=False)
    # Full precision (issued_on is to the minute): the list's order.
    created_on: Mapped[datetime] = mapped_column(UTCDateTime(), nullable=False)
    updated_at: Mapped[datetime] = mapped_column(UTCDateTime(), nullable=False)


class MtlsCertificate(Base):
    """An uploaded certificate (BYOCA when `ca` is true)."""

    __tablename__ = "mtls_certificates"
    id: Mapped[str] = mapped_column(String(36), primary_key=True)
    account_id: Mapped[str] = mapped_column(ForeignKey("accounts.id"), nullable=False, index=True)
    name: Mapped[str | None] = mapped_column(String(255), nullable=True)
    ca: Mapped[bool] = mapped_column(Boolean, nullable=False)
    type: Mapped[str] = mapped_column(String(32), nullable=False)
    certificates: Mapped[str] = mapped_column(Text, nullable=False)
    private_key_sealed: Mapped[str | None] = mapped_column(Text, nullable=True)
    issuer: Mapped[str] = mapped_column(Text, nullable=False)
    serial_number: Mapped[str] = mapped_column(String(64), nullable=False)
    signature: Mapped[str] = mapped_column(String(64), nullable=False)
    fingerprint_sha256: Mapped[str] = mapped_column(String(64), nullable=False)
    expires_on: Mapped[datetime] = mapped_column(UTCDateTime(), nullable=False)
    uploaded_on: Mapped[datetime] = mapped_column(UTCDateTime(), nullable=False)
    updated_at: Mapped[datetime] = mapped_column(UTCDateTime(), nullable=False)


class HostnameAssociation(Base):
    """A hostname of a zone whose clients are checked against one CA.

    `ca_id` is a ManagedCA id when `ca_kind` is "managed", an MtlsCertificate id when "uploaded".
    The service layer checks the reference under the same lock that guards deletion.
    """

    __tablename__ = "hostname_associations"
    __table_args__ = (
        UniqueConstraint("zone_id", "hostname", "ca_id", name="uq_association"),
        Index("ix_association_ca", "ca_id"),
    )
    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    zone_id: Mapped[str] = mapped_column(ForeignKey("zones.id"), nullable=False, index=True)
    hostname: Mapped[str] = mapped_column(String(253), nullable=False)
    ca_kind: Mapped[str] = mapped_column(String(16), nullable=False)
    ca_id: Mapped[str] = mapped_column(String(36), nullable=False)
    # When this hostname started using this CA: the edge prefers the most recent uploaded CA.
    deployed_on: Mapped[datetime] = mapped_column(UTCDateTime(), nullable=False)


class Ruleset(Base):
    """A zone's ruleset (Rulesets API): the entry point of a phase (kind "zone") or a custom one.

    At most one entry point per (zone, phase): the service checks it under the account lock.
    """

    __tablename__ = "rulesets"
    __table_args__ = (Index("ix_rulesets_zone_phase", "zone_id", "phase"),)
    id: Mapped[str] = mapped_column(String(32), primary_key=True)
    zone_id: Mapped[str] = mapped_column(ForeignKey("zones.id"), nullable=False)
    name: Mapped[str] = mapped_column(String(255), nullable=False)
    description: Mapped[str] = mapped_column(Text, nullable=False)
    kind: Mapped[str] = mapped_column(String(16), nullable=False)
    phase: Mapped[str] = mapped_column(String(64), nullable=False)
    version: Mapped[int] = mapped_column(Integer, nullable=False)
    last_updated: Mapped[datetime] = mapped_column(UTCDateTime(), nullable=False)


class RulesetRule(Base):
    """One rule of the current version of a ruleset, at `position` (0-based) in its list.

    Every expression stored here compiled when it was written; `action_parameters` and `logging`
    are JSON text (NULL when the rule has none). Positions and refs are unique within a ruleset;
    the service keeps them so (no constraint: a reorder would trip it mid-flush).
    """

    __tablename__ = "ruleset_rules"
    id: Mapped[str] = mapped_column(String(32), primary_key=True)
    ruleset_id: Mapped[str] = mapped_column(
        ForeignKey("rulesets.id", ondelete="CASCADE"), nullable=False, index=True
    )
    position: Mapped[int] = mapped_column(Integer, nullable=False)
    version: Mapped[int] = mapped_column(Integer, nullable=False)
    action: Mapped[str] = mapped_column(String(32), nullable=False)
    action_parameters: Mapped[str | None] = mapped_column(Text, nullable=True)
    expression: Mapped[str] = mapped_column(Text, nullable=False)
    description: Mapped[str] = mapped_column(Text, nullable=False)
    enabled: Mapped[bool] = mapped_column(Boolean, nullable=False)
    ref: Mapped[str] = mapped_column(String(255), nullable=False)
    logging: Mapped[str | None] = mapped_column(Text, nullable=True)
    last_updated: Mapped[datetime] = mapped_column(UTCDateTime(), nullable=False)


class RulesetVersion(Base):
    """The full JSON (as the API returns it, rules included) of each version of a ruleset."""

    __tablename__ = "ruleset_versions"
    ruleset_id: Mapped[str] = mapped_column(
        ForeignKey("rulesets.id", ondelete="CASCADE"), primary_key=True
    )
    version: Mapped[int] = mapped_column(Integer, primary_key=True)
    snapshot: Mapped[str] = mapped_column(Text, nullable=False)
    last_updated: Mapped[datetime] = mapped_column(UTCDateTime(), nullable=False)


class DnsRecord(Base):
    """A DNS record of a zone (A, AAAA or CNAME). Proxied records are the hostnames the edge
    serves; `content` is their origin. `tags` is a JSON array of strings."""

    __tablename__ = "dns_records"
    __table_args__ = (Index("ix_dns_records_zone_name", "zone_id", "name"),)
    id: Mapped[str] = mapped_column(String(32), primary_key=True)
    zone_id: Mapped[str] = mapped_column(ForeignKey("zones.id"), nullable=False)
    name: Mapped[str] = mapped_column(String(253), nullable=False)
    type: Mapped[str] = mapped_column(String(8), nullable=False)
    content: Mapped[str] = mapped_column(String(253), nullable=False)
    proxied: Mapped[bool] = mapped_column(Boolean, nullable=False)
    ttl: Mapped[int] = mapped_column(Integer, nullable=False)
    comment: Mapped[str | None] = mapped_column(Text, nullable=True)
    tags: Mapped[str] = mapped_column(Text, nullable=False)
    created_on: Mapped[datetime] = mapped_column(UTCDateTime(), nullable=False)
    modified_on: Mapped[datetime] = mapped_column(UTCDateTime(), nullable=False)


class ZoneSetting(Base):
    """A zone setting that differs from its default (only "ssl" today; no row = the default)."""

    __tablename__ = "zone_settings"
    zone_id: Mapped[str] = mapped_column(ForeignKey("zones.id"), primary_key=True)
    setting_id: Mapped[str] = mapped_column(String(64), primary_key=True)
    value: Mapped[str] = mapped_column(String(64), nullable=False)
    modified_on: Mapped[datetime] = mapped_column(UTCDateTime(), nullable=False)


class CustomCertificate(Base):
    """An edge (server) certificate uploaded for a zone: the chain as PEM (leaf first) and its
    private key sealed with the keystore (context: the record id). `hosts` is a JSON array."""

    __tablename__ = "custom_certificates"
    id: Mapped[str] = mapped_column(String(32), primary_key=True)
    zone_id: Mapped[str] = mapped_column(ForeignKey("zones.id"), nullable=False, index=True)
    certificate: Mapped[str] = mapped_column(Text, nullable=False)
    private_key_sealed: Mapped[str] = mapped_column(Text, nullable=False)
    hosts: Mapped[str] = mapped_column(Text, nullable=False)
    issuer: Mapped[str] = mapped_column(Text, nullable=False)
    signature: Mapped[str] = mapped_column(String(64), nullable=False)
    fingerprint_sha256: Mapped[str] = mapped_column(String(64), nullable=False)
    bundle_method: Mapped[str] = mapped_column(String(16), nullable=False)
    type: Mapped[str] = mapped_column(String(16), nullable=False)
    geo_restrictions: Mapped[str | None] = mapped_column(String(32), nullable=True)
    policy: Mapped[str | None] = mapped_column(Text, nullable=True)
    expires_on: Mapped[datetime] = mapped_column(UTCDateTime(), nullable=False)
    uploaded_on: Mapped[datetime] = mapped_column(UTCDateTime(), nullable=False)
    modified_on: Mapped[datetime] = mapped_column(UTCDateTime(), nullable=False)

    @property
    def host_list(self) -> list[str]:
        hosts: list[str] = json.loads(self.hosts)
        return hosts


class ManagedHeader(Base):
    """A Managed Transform switched on or off for a zone (no row = off)."""

    __tablename__ = "managed_headers"
    zone_id: Mapped[str] = mapped_column(ForeignKey("zones.id"), primary_key=True)
    header_id: Mapped[str] = mapped_column(String(64), primary_key=True)
    enabled: Mapped[bool] = mapped_column(Boolean, nullable=False)
    modified_on: Mapped[datetime] = mapped_column(UTCDateTime(), nullable=False)


class AccessCertificateSetting(Base):
    """Access mTLS hostname settings: whether the origin gets the client certificate forwarded."""

    __tablename__ = "access_certificate_settings"
    zone_id: Mapped[str] = mapped_column(ForeignKey("zones.id"), primary_key=True)
    hostname: Mapped[str] = mapped_column(String(253), primary_key=True)
    china_network: Mapped[bool] = mapped_column(Boolean, nullable=False)
    client_certificate_forwarding: Mapped[bool] = mapped_column(Boolean, nullable=False)
    modified_on: Mapped[datetime] = mapped_column(UTCDateTime(), nullable=False)


class EdgeNode(Base):
    """An edge process's heartbeat: which config version it has applied, and when."""

    __tablename__ = "edge_nodes"
    id: Mapped[str] = mapped_column(String(64), primary_key=True)  # "host:pid"
    hostname: Mapped[str] = mapped_column(String(255), nullable=False)
    pid: Mapped[int] = mapped_column(Integer, nullable=False)
    config_version: Mapped[int] = mapped_column(BigInteger, nullable=False)
    started_at: Mapped[datetime] = mapped_column(UTCDateTime(), nullable=False)
    heartbeat_at: Mapped[datetime] = mapped_column(UTCDateTime(), nullable=False)


# SQLite only auto-numbers an INTEGER PRIMARY KEY (its rowid); PostgreSQL gets a BIGINT identity.
_EVENT_ID = BigInteger().with_variant(Integer(), "sqlite")


class RequestEvent(Base):
    """A sampled request the edge served: what the dashboard's "recent requests" list shows.

    Written in batches by services/request_events.py, which keeps at most a fixed number per
    zone (the newest by id). `zone_id` is resolved from the hostname when the batch is written
    and is what readers are scoped by; no foreign key, so telemetry never blocks a zone change.
    """

    __tablename__ = "request_events"
    __table_args__ = (Index("ix_request_events_zone_id", "zone_id", "id"),)
    id: Mapped[int] = mapped_column(_EVENT_ID, primary_key=True, autoincrement=True)
    zone_id: Mapped[str] = mapped_column(String(32), nullable=False)
    node_id: Mapped[str] = mapped_column(String(64), nullable=False)
    ts_ms: Mapped[int] = mapped_column(BigInteger, nullable=False)  # Unix time, milliseconds
    hostname: Mapped[str] = mapped_column(String(253), nullable=False)
    client: Mapped[str] = mapped_column(String(64), nullable=False)
    method: Mapped[str] = mapped_column(String(32), nullable=False)
    uri: Mapped[str] = mapped_column(Text, nullable=False)
    status: Mapped[int] = mapped_column(Integer, nullable=False)
    mtls: Mapped[str] = mapped_column(String(32), nullable=False)
    fingerprint: Mapped[str] = mapped_column(String(64), nullable=False)
    rule: Mapped[str] = mapped_column(String(64), nullable=False)
    action: Mapped[str] = mapped_column(String(32), nullable=False)
    ms: Mapped[float] = mapped_column(Float, nullable=False)
    origin_ms: Mapped[float | None] = mapped_column(Float, nullable=True)


class RequestEventCount(Base):
    """Exact per-minute request counts (every request, not a sample): the dashboard's chart.

    `minute` is the Unix time in seconds of the minute's start; rows older than the retention
    are pruned by services/request_events.py.
    """

    __tablename__ = "request_event_counts"
    __table_args__ = (Index("ix_request_event_counts_zone_minute", "zone_id", "minute"),)
    minute: Mapped[int] = mapped_column(BigInteger, primary_key=True)
    hostname: Mapped[str] = mapped_column(String(253), primary_key=True)
    mtls: Mapped[str] = mapped_column(String(32), primary_key=True)
    status: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=False)
    action: Mapped[str] = mapped_column(String(32), primary_key=True)
    zone_id: Mapped[str] = mapped_column(String(32), nullable=False)
    count: Mapped[int] = mapped_column(BigInteger, nullable=False)


class UploadedCaCrl(Base):
    """The current CRL of an uploaded CA (docs/revocation.md): at most one per CA, replaced only
    by a CRL with a higher number. Deleted with its CA (ON DELETE CASCADE)."""

    __tablename__ = "mtls_certificate_crls"
    mtls_certificate_id: Mapped[str] = mapped_column(
        ForeignKey("mtls_certificates.id", ondelete="CASCADE"), primary_key=True
    )
    account_id: Mapped[str] = mapped_column(ForeignKey("accounts.id"), nullable=False, index=True)
    der: Mapped[bytes] = mapped_column(LargeBinary, nullable=False)
    issuer: Mapped[str] = mapped_column(Text, nullable=False)
    # Decimal text: a CRL number may be up to 20 octets, more than a BIGINT holds.
    crl_number: Mapped[str] = mapped_column(String(64), nullable=False)
    this_update: Mapped[datetime] = mapped_column(UTCDateTime(), nullable=False)
    next_update: Mapped[datetime | None] = mapped_column(UTCDateTime(), nullable=True)
    revoked_count: Mapped[int] = mapped_column(Integer, nullable=False)
    source: Mapped[str] = mapped_column(String(16), nullable=False)  # "uploaded" | "fetched"
    source_url: Mapped[str | None] = mapped_column(Text, nullable=True)
    updated_on: Mapped[datetime] = mapped_column(UTCDateTime(), nullable=False)


class UploadedCaRevocationSetting(Base):
    """Per uploaded CA: the stale/missing-CRL policy, CRL fetching and the last fetch's outcome.

    No row means the defaults (fail_open, no fetching). `stale_noticed` is the nextUpdate the
    scheduler last announced to the edge by bumping the config version (services/crl_fetcher.py).
    """

    __tablename__ = "mtls_certificate_revocation_settings"
    mtls_certificate_id: Mapped[str] = mapped_column(
        ForeignKey("mtls_certificates.id", ondelete="CASCADE"), primary_key=True
    )
    account_id: Mapped[str] = mapped_column(ForeignKey("accounts.id"), nullable=False, index=True)
    stale_policy: Mapped[str] = mapped_column(String(16), nullable=False)  # fail_open|fail_closed
    fetch: Mapped[bool] = mapped_column(Boolean, nullable=False)
    fetch_url: Mapped[str | None] = mapped_column(Text, nullable=True)  # None: the CA's CDP
    fetch_etag: Mapped[str | None] = mapped_column(String(255), nullable=True)
    fetch_last_modified: Mapped[str | None] = mapped_column(String(64), nullable=True)
    last_fetch_at: Mapped[datetime | None] = mapped_column(UTCDateTime(), nullable=True)
    last_fetch_status: Mapped[str | None] = mapped_column(Text, nullable=True)
    next_fetch_at: Mapped[datetime | None] = mapped_column(UTCDateTime(), nullable=True)
    stale_noticed: Mapped[datetime | None] = mapped_column(UTCDateTime(), nullable=True)
    modified_on: Mapped[datetime] = mapped_column(UTCDateTime(), nullable=False)


class DenyListEntry(Base):
    """An account's emergency deny-list entry: a leaf serial (any issuer) or a leaf SHA-256."""

    __tablename__ = "mtls_deny_list"
    __table_args__ = (Index("ix_mtls_deny_list_account", "account_id", "created_on"),)
    id: Mapped[str] = mapped_column(String(32), primary_key=True)
    account_id: Mapped[str] = mapped_column(ForeignKey("accounts.id"), nullable=False)
    serial_number: Mapped[str | None] = mapped_column(String(64), nullable=True)
    fingerprint_sha256: Mapped[str | None] = mapped_column(String(64), nullable=True)
    reason: Mapped[str | None] = mapped_column(Text, nullable=True)
    created_on: Mapped[datetime] = mapped_column(UTCDateTime(), nullable=False)
