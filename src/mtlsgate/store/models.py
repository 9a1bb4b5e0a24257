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
