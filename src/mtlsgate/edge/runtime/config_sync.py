"""Read the edge's configuration from the store (ConfigData) and report what a node applied.

Which hostnames are served: the zone's proxied A/AAAA/CNAME records; their origin: the record's
content, with the zone's `ssl` setting choosing plain HTTP to port 80 (off, flexible), TLS to 443
without verification (full) or verified TLS (strict). Client certificates are requested on a
hostname exactly when it has hostname associations; the trust set is exactly those CAs.
"""

from __future__ import annotations

import socket
from collections import defaultdict
from datetime import UTC, datetime

from cryptography import x509
from sqlalchemy import select
from sqlalchemy.orm import Session

from mtlsgate.edge.builder import ConfigData, HostData, RuleData
from mtlsgate.edge.snapshot import Origin
from mtlsgate.edge.tls import ServerIdentity
from mtlsgate.store import models as m
from mtlsgate.store.db import Store
from mtlsgate.store.keystore import KeyStore

FIREWALL_PHASE = "http_request_firewall_custom"
ORIGIN_PHASE = "http_request_origin"
LATE_TRANSFORM_PHASE = "http_request_late_transform"


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
    uploaded CA first, then older ones, then the managed CA."""
    rows = session.execute(select(m.HostnameAssociation)).scalars().all()
    uploaded = {c.id: c for c in session.execute(select(m.MtlsCertificate)).scalars() if c.ca}
    managed = {c.id: c for c in session.execute(select(m.ManagedCA)).scalars()}
    grouped: dict[tuple[str, str], list[m.HostnameAssociation]] = defaultdict(list)
    for assoc in rows:
        grouped[(assoc.zone_id, assoc.hostname)].append(assoc)
    out: dict[tuple[str, str], tuple[x509.Certificate, ...]] = {}
    for key, assocs in grouped.items():
        ordered = sorted(assocs, key=lambda a: (a.ca_kind == "managed", -a.deployed_on.timestamp()))
        certs: list[x509.Certificate] = []
        for assoc in ordered:
            if assoc.ca_kind == "managed" and assoc.ca_id in managed:
                pem = managed[assoc.ca_id].certificate_pem
            elif assoc.ca_id in uploaded:
                # The first certificate of an upload is its trust anchor (docs/api.md).
                pem = uploaded[assoc.ca_id].certificates
            else:
                continue
            certs.append(x509.load_pem_x509_certificates(pem.encode())[0])
        out[key] = tuple(certs)
    return out


def load_config(
    session: Session, keystore: KeyStore, *, default_hostname: str | None
) -> ConfigData:
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
    identities = _custom_identities(session, keystore)
    trust = _trust(session)
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
    now = datetime.now(UTC)
    with store.transaction() as session:
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
