"""Read the edge's configuration from the store (ConfigData) and report what a node applied.

Which hostnames are served: the zone's proxied A/AAAA/CNAME records; their origin: the record's
content, with the zone's `ssl` setting choosing plain HTTP to port 80 (off, flexible), TLS to 443
without verification (full) or verified TLS (strict). Client certificates are requested on a
hostname exactly when it has hostname associations; the trust set is exactly those CAs.

When to read it: a `VersionSource` tells the edge's watcher the store's config version, cheaply
(docs/edge.md, "Configuration watching"): `SqlitePollSource` reads it every POLL_INTERVAL on the
event loop itself through a raw connection; `PostgresNotifySource` LISTENs for the NOTIFY that
`bump_config_version` sends on commit and reads it when woken, or every FALLBACK_POLL anyway.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import socket
import sqlite3
from collections import defaultdict
from datetime import UTC, datetime
from typing import Any, Protocol

import psycopg
from cryptography import x509
from cryptography.hazmat.primitives import hashes
from sqlalchemy import select
from sqlalchemy.orm import Session

from mtlsgate.edge.builder import ConfigData, HostData, RuleData
from mtlsgate.edge.snapshot import Origin
from mtlsgate.edge.tls import ServerIdentity
from mtlsgate.edge.uploaded_revocation import with_uploaded_revocations
from mtlsgate.pki.revocation import IssuerRevocations, RevocationIndex
from mtlsgate.services import managed_cas
from mtlsgate.services.client_certificates import revoked_serials
from mtlsgate.store import models as m
from mtlsgate.store.db import (
    CONFIG_CHANNEL,
    CONFIG_VERSION_SQL,
    SqliteVersionReader,
    Store,
    store_now,
)
from mtlsgate.store.keystore import KeyStore

FIREWALL_PHASE = "http_request_firewall_custom"
ORIGIN_PHASE = "http_request_origin"
LATE_TRANSFORM_PHASE = "http_request_late_transform"

log = logging.getLogger("mtlsgate.edge")

POLL_INTERVAL = 0.2  # seconds between polls on SQLite (and any other store without NOTIFY)
FALLBACK_POLL = 2.0  # PostgreSQL: seconds between safety-net reads when no NOTIFY arrived
FALLBACK_POLL_ENV = "MTLSGATE_EDGE_CONFIG_FALLBACK_POLL"  # overrides FALLBACK_POLL (tests)
RECONNECT_MIN = 0.1  # PostgreSQL: first delay before reconnecting the LISTEN connection
RECONNECT_MAX = 2.0  # ... doubling up to this
LISTEN_APPLICATION_NAME = "mtlsgate-edge-listen"


def _zone_rules(session: Session, phase: str) -> dict[str, tuple[RuleData, ...]]:
    """Enabled rules of each zone's entry point for `phase`, in order."""
    rows = session.execute(
        select(m.Ruleset.zone_id, m.RulesetRule)
        .join(m.RulesetRule, m.RulesetRule.ruleset_id == m.Ruleset.id)
        .where(m.Ruleset.phase == phase, m.Ruleset.kind == "zone", m.RulesetRule.enabled.is_(True))
        .order_by(m.Ruleset.zone_id, m.RulesetRule.position)
    ).all()
    out: dict[str, list[RuleData]] = defaultdict(list)
    for zone_id, rule in rows:
        out[zone_id].append(RuleData(rule.id, rule.expression, rule.action, rule.action_parameters))
    return {k: tuple(v) for k, v in out.items()}


def _trust(session: Session) -> dict[tuple[str, str], tuple[x509.Certificate, ...]]:
    """(zone id, hostname) → trust anchors in advertising order: the most recently deployed
    uploaded CA first, then older ones, then the managed CAs: the account's active one, then
    its retiring ones (rotation, services/managed_cas.py; retired ones are not trusted)."""
    rows = session.execute(select(m.HostnameAssociation)).scalars().all()
    uploaded = {c.id: c for c in session.execute(select(m.MtlsCertificate)).scalars() if c.ca}
    managed = managed_cas.trust_chains(session)
    zone_accounts = {z: a for z, a in session.execute(select(m.Zone.id, m.Zone.account_id))}
    grouped: dict[tuple[str, str], list[m.HostnameAssociation]] = defaultdict(list)
    for assoc in rows:
        grouped[(assoc.zone_id, assoc.hostname)].append(assoc)
    out: dict[tuple[str, str], tuple[x509.Certificate, ...]] = {}
    for key, assocs in grouped.items():
        ordered = sorted(assocs, key=lambda a: (a.ca_kind == "managed", -a.deployed_on.timestamp()))
        certs: list[x509.Certificate] = []
        managed_added = False
        for assoc in ordered:
            if assoc.ca_kind == "managed":
                # "The account's managed CA", whichever rows that is now (not only `ca_id`),
                # added once even if an old store holds two managed rows for the hostname.
                if not managed_added:
                    for ca in managed.get(zone_accounts.get(assoc.zone_id, ""), ()):
                        certs.append(x509.load_pem_x509_certificate(ca.certificate_pem.encode()))
                    managed_added = True
                continue
            if assoc.ca_id in uploaded:
                # The first certificate of an upload is its trust anchor (docs/api.md).
                pem = uploaded[assoc.ca_id].certificates
            else:
                continue
            certs.append(x509.load_pem_x509_certificates(pem.encode())[0])
        out[key] = tuple(certs)
    return out


def _revocations(
    session: Session, zones: dict[str, m.Zone], now: datetime
) -> dict[str, RevocationIndex]:
    """Zone id → its account's RevocationIndex, for accounts that have something to check.

    Managed CAs: the serials of their pending_revocation and revoked certificates that have not
    expired at `now` (an expired one fails verification before revocation matters), keyed by the
    SHA-256 of the CA certificate (the issuer of the client's verified chain)."""
    managed = revoked_serials(session, now=now)
    issuers: dict[str, dict[bytes, IssuerRevocations]] = defaultdict(dict)
    if managed:
        for ca in session.execute(select(m.ManagedCA)).scalars():
            serials = managed.get(ca.id)
            if serials:
                cert = x509.load_pem_x509_certificate(ca.certificate_pem.encode())
                key = cert.fingerprint(hashes.SHA256())
                issuers[ca.account_id][key] = IssuerRevocations(serials, "managed")
    # Uploaded CAs' CRLs and the deny-lists join here (edge/uploaded_revocation.py).
    by_account = with_uploaded_revocations(session, issuers, now=now)
    by_account = {a: index for a, index in by_account.items() if not index.empty()}
    return {z.id: by_account[z.account_id] for z in zones.values() if z.account_id in by_account}


def load_config(
    session: Session,
    keystore: KeyStore,
    *,
    default_hostname: str | None,
    server_identities: bool = True,
) -> ConfigData:
    """The edge's configuration as the store holds it. `server_identities=False` (explain, which
    brings its own) leaves every host without its custom certificate and unseals no key."""
    version = int(session.scalar(select(m.ConfigState.version).where(m.ConfigState.id == 1)) or 0)
    zones = {z.id: z for z in session.execute(select(m.Zone)).scalars()}
    ssl_modes = {z: "flexible" for z in zones}
    for setting in session.execute(select(m.ZoneSetting)).scalars():
        if setting.setting_id == "ssl":
            ssl_modes[setting.zone_id] = setting.value
    cert_headers = {
        row.zone_id
        for row in session.execute(select(m.ManagedHeader)).scalars()
        if row.header_id == "add_client_certificate_headers" and row.enabled
    }
    identities = _custom_identities(session, keystore) if server_identities else {}
    trust = _trust(session)
    revocations = _revocations(session, zones, datetime.now(UTC))
    firewall = _zone_rules(session, FIREWALL_PHASE)
    origin_rules = _zone_rules(session, ORIGIN_PHASE)
    late_transform = _zone_rules(session, LATE_TRANSFORM_PHASE)
    forwarding = {
        (row.zone_id, row.hostname.lower().rstrip("."))
        for row in session.execute(select(m.AccessCertificateSetting)).scalars()
        if row.client_certificate_forwarding
    }
    hosts: dict[str, HostData] = {}
    records = session.execute(
        select(m.DnsRecord)
        .where(m.DnsRecord.proxied.is_(True), m.DnsRecord.type.in_(("A", "AAAA", "CNAME")))
        .order_by(m.DnsRecord.created_on)
    ).scalars()
    for record in records:
        if record.name in hosts:
            continue  # several A records: the first one is the origin (no load balancing yet)
        mode = ssl_modes.get(record.zone_id, "flexible")
        origin = Origin(
            host=record.content,
            port=443 if mode in ("full", "strict") else 80,
            tls=mode in ("full", "strict"),
            verify=mode == "strict",
        )
        hosts[record.name] = HostData(
            hostname=record.name,
            zone_id=record.zone_id,
            origin=origin,
            trust=trust.get((record.zone_id, record.name), ()),
            identity=_identity_for(record.name, identities.get(record.zone_id, [])),
            firewall=firewall.get(record.zone_id, ()),
            origin_rules=origin_rules.get(record.zone_id, ()),
            managed_cert_headers=record.zone_id in cert_headers,
            late_transform=late_transform.get(record.zone_id, ()),
            client_cert_forwarding=(record.zone_id, record.name.lower().rstrip(".")) in forwarding,
            revocation=revocations.get(record.zone_id),
        )
    return ConfigData(
        version=version,
        hosts=tuple(hosts.values()),
        default_hostname=default_hostname,
        now=datetime.now(UTC),
    )


def _custom_identities(
    session: Session, keystore: KeyStore
) -> dict[str, list[tuple[list[str], ServerIdentity]]]:
    out: dict[str, list[tuple[list[str], ServerIdentity]]] = defaultdict(list)
    for cert in session.execute(select(m.CustomCertificate)).scalars():
        key = keystore.open(cert.private_key_sealed, context=cert.id)
        out[cert.zone_id].append((cert.host_list, ServerIdentity(cert.certificate, key)))
    return out


def _identity_for(
    hostname: str, candidates: list[tuple[list[str], ServerIdentity]]
) -> ServerIdentity | None:
    """An uploaded certificate whose SANs cover the hostname (exact first, then wildcard)."""
    parent = hostname.split(".", 1)[1] if "." in hostname else ""
    for hosts, identity in candidates:
        if hostname in hosts:
            return identity
    for hosts, identity in candidates:
        if "*." + parent in hosts:
            return identity
    return None


def heartbeat(store: Store, node_id: str, version: int) -> None:
    """Record that this node has applied `version` (the API's propagation status reads it)."""
    with store.transaction() as session:
        # The database's clock (what the API judges heartbeats with: edge/liveness.py).
        now = store_now(session, datetime.now(UTC))
        node = session.get(m.EdgeNode, node_id)
        if node is None:
            session.add(
                m.EdgeNode(
                    id=node_id,
                    hostname=socket.gethostname(),
                    pid=int(node_id.rsplit(":", 1)[1]),
                    config_version=version,
                    started_at=now,
                    heartbeat_at=now,
                )
            )
        else:
            node.config_version = version
            node.heartbeat_at = now


def deregister(store: Store, node_id: str) -> None:
    """A worker that stopped cleanly (after its last request) is not waited for any more: its
    heartbeat row goes (a killed one's ages out instead: edge/liveness.py)."""
    with store.transaction() as session:
        node = session.get(m.EdgeNode, node_id)
        if node is not None:
            session.delete(node)


# --- watching the config version ------------------------------------------------------------


class VersionSource(Protocol):
    """Where an edge watcher learns the store's config version.

    The watcher loops: `current()` (None: nothing new to report this time), then
    `wait(timeout)` until a change may have happened or `timeout` seconds have passed."""

    async def current(self) -> int | None: ...

    async def wait(self, timeout: float) -> None: ...

    async def close(self) -> None: ...


def version_source(store: Store) -> VersionSource:
    """The cheapest way to watch this store."""
    if store.is_postgres:
        fallback = float(os.environ.get(FALLBACK_POLL_ENV) or FALLBACK_POLL)
        return PostgresNotifySource(store, fallback_poll=fallback)
    path = store.sqlite_path
    if path is not None:
        try:
            return SqlitePollSource(store, SqliteVersionReader(path))
        except sqlite3.Error as exc:
            log.warning("cannot open %s for cheap polling (%s); polling through the ORM", path, exc)
    return ExecutorPollSource(store)


class ExecutorPollSource:
    """Any store: an ORM read in a thread every POLL_INTERVAL (the general, costly way)."""

    def __init__(self, store: Store) -> None:
        self.store = store

    async def current(self) -> int | None:
        return await asyncio.get_running_loop().run_in_executor(None, self.store.config_version)

    async def wait(self, timeout: float) -> None:
        await asyncio.sleep(POLL_INTERVAL)

    async def close(self) -> None:
        pass


class SqlitePollSource:
    """SQLite: `SqliteVersionReader.read()` every POLL_INTERVAL, on the event loop thread (a few
    microseconds: no thread hop, no ORM, no lock; the version row is read only after another
    connection committed). The reader never waits for a lock: on the rare SQLITE_BUSY (or any
    other SQLite error) that one poll goes through the ORM in a thread instead."""

    def __init__(self, store: Store, reader: SqliteVersionReader) -> None:
        self.store = store
        self.reader = reader

    async def current(self) -> int | None:
        try:
            return self.reader.read()
        except sqlite3.Error:
            loop = asyncio.get_running_loop()
            return await loop.run_in_executor(None, self.store.config_version)

    async def wait(self, timeout: float) -> None:
        await asyncio.sleep(POLL_INTERVAL)

    async def close(self) -> None:
        self.reader.close()


class PostgresNotifySource:
    """PostgreSQL: LISTEN on a dedicated connection, and read the version when woken.

    `wait` watches the connection's socket with the event loop (no thread, no timer ticks while
    idle) and returns when a notification arrives, when FALLBACK_POLL has passed since the last
    read, or at the watcher's timeout (its next heartbeat). `current` reads the version (one
    autocommit SELECT on the same connection, in a thread) only after a notification, when the
    fallback read is due, or after (re)connecting; otherwise it reports nothing new.

    A lost connection (or one that cannot be made) is logged once; the source reconnects with
    backoff (RECONNECT_MIN doubling to RECONNECT_MAX) and meanwhile reads the version through
    the store's pool every FALLBACK_POLL. The connection uses TCP keepalives, so a silently dead
    peer is noticed too.
    """

    def __init__(self, store: Store, *, fallback_poll: float = FALLBACK_POLL) -> None:
        self.store = store
        self.fallback_poll = fallback_poll
        self.conninfo = store.libpq_conninfo()
        self.conn: psycopg.Connection[Any] | None = None
        self.pending = True  # a notification (or a reconnection) calls for a read
        self.next_poll = 0.0
        self.retry_at = 0.0
        self.backoff = RECONNECT_MIN
        self.down = False  # an outage has been logged and has not ended yet

    # -- the VersionSource protocol --

    async def current(self) -> int | None:
        loop = asyncio.get_running_loop()
        if self.conn is None:
            if loop.time() >= self.retry_at:
                await self._connect()
            if self.conn is None:
                return await self._poll_through_store()
        now = loop.time()
        if not (self.pending or now >= self.next_poll):
            return None
        self.pending = False  # notifications that arrive during the read set it again
        self.next_poll = now + self.fallback_poll
        conn = self.conn
        try:
            return await loop.run_in_executor(None, _read_version, conn)
        except Exception as exc:
            self._lost(exc)
            return None

    async def wait(self, timeout: float) -> None:
        loop = asyncio.get_running_loop()
        conn = self.conn
        if conn is None:
            await asyncio.sleep(max(0.05, min(timeout, self.retry_at - loop.time())))
            return
        if self._drain(conn):  # notifications libpq already holds: no socket event for them
            return
        remaining = min(timeout, self.next_poll - loop.time())
        if remaining <= 0:
            return
        woken: asyncio.Future[bool] = loop.create_future()

        def wake(readable: bool) -> None:
            if not woken.done():
                woken.set_result(readable)

        fd = conn.fileno()
        loop.add_reader(fd, wake, True)
        timer = loop.call_later(remaining, wake, False)
        try:
            if not await woken:
                return
        finally:
            timer.cancel()
            loop.remove_reader(fd)
        try:
            conn.pgconn.consume_input()
        except psycopg.Error as exc:
            self._lost(exc)
            return
        if conn.pgconn.status != psycopg.pq.ConnStatus.OK:
            self._lost(psycopg.OperationalError("the server closed the connection"))
            return
        self._drain(conn)

    async def close(self) -> None:
        if self.conn is not None:
            with contextlib.suppress(Exception):
                self.conn.close()
            self.conn = None

    # -- internals --

    def _drain(self, conn: psycopg.Connection[Any]) -> bool:
        """Take the notifications libpq has parsed; True when a read is called for."""
        while conn.pgconn.notifies() is not None:
            self.pending = True
        return self.pending

    def _on_notify(self, _notify: psycopg.Notify) -> None:
        # Called by psycopg (in the reading thread) for notifications that arrive during a read.
        self.pending = True

    def _open(self) -> psycopg.Connection[Any]:
        conn = psycopg.connect(
            self.conninfo,
            autocommit=True,
            connect_timeout=5,
            application_name=LISTEN_APPLICATION_NAME,
            keepalives=1,
            keepalives_idle=10,
            keepalives_interval=5,
            keepalives_count=3,
        )
        try:
            conn.add_notify_handler(self._on_notify)
            conn.execute(
                psycopg.sql.SQL("LISTEN {}").format(psycopg.sql.Identifier(CONFIG_CHANNEL))
            )
        except BaseException:
            conn.close()
            raise
        return conn

    async def _connect(self) -> None:
        loop = asyncio.get_running_loop()
        try:
            conn = await loop.run_in_executor(None, self._open)
        except Exception as exc:
            if not self.down:
                log.warning(
                    "edge cannot LISTEN on PostgreSQL (%s); reading the config version every "
                    "%.1f s and reconnecting with backoff",
                    _one_line(exc),
                    self.fallback_poll,
                )
                self.down = True
            self._retry_later()
            return
        self.conn = conn
        self.pending = True  # changes made while not listening: read the version now
        self.backoff = RECONNECT_MIN
        if self.down:
            log.info("edge listening for config changes on PostgreSQL again")
            self.down = False

    def _lost(self, exc: BaseException) -> None:
        if not self.down:
            log.warning(
                "edge lost its LISTEN connection to PostgreSQL (%s); reconnecting with backoff, "
                "reading the config version every %.1f s meanwhile",
                _one_line(exc),
                self.fallback_poll,
            )
            self.down = True
        conn, self.conn = self.conn, None
        if conn is not None:
            with contextlib.suppress(Exception):
                conn.close()
        self._retry_later()

    def _retry_later(self) -> None:
        self.retry_at = asyncio.get_running_loop().time() + self.backoff
        self.backoff = min(self.backoff * 2, RECONNECT_MAX)

    async def _poll_through_store(self) -> int | None:
        """The safety net while not listening: the store's pool, every fallback_poll."""
        loop = asyncio.get_running_loop()
        if loop.time() < self.next_poll:
            return None
        self.next_poll = loop.time() + self.fallback_poll
        try:
            return await loop.run_in_executor(None, self.store.config_version)
        except Exception as exc:  # the outage is logged once, in _connect/_lost
            log.debug("config version poll failed: %s", _one_line(exc))
            return None


def _read_version(conn: psycopg.Connection[Any]) -> int:
    row = conn.execute(CONFIG_VERSION_SQL).fetchone()
    return int(row[0]) if row else 0


def _one_line(exc: BaseException) -> str:
    text = str(exc).strip().splitlines()
    return f"{type(exc).__name__}: {text[0] if text else ''}"
