"""Explain a verdict: what the edge would decide, right now, for a client sending a given chain.

One implementation with the edge, not a second one: the store is read by the edge's own loader
(injected: the control plane does not import edge.runtime, see ExplainLoader), the snapshot is
built by edge/builder.py and the hostname looked up in it as the edge does; the chain is verified
by the host profile's own OpenSSL context (edge/probe.py); revocation is the profile's
RevocationIndex; the cf.tls_client_auth.* values are those RequestFacts computes; and the rules
are the profile's compiled first-match functions, applied in the order of the edge's request
path (edge/runtime/server.py `_start`). docs/explain.md describes the result.
"""

from __future__ import annotations

import dataclasses
import ipaddress
import logging
import re
from collections.abc import Callable, Mapping, Sequence
from datetime import UTC, datetime
from functools import cache
from typing import Any, cast

from cryptography import x509
from cryptography.hazmat.primitives import hashes
from sqlalchemy import select
from sqlalchemy.orm import Session

from mtlsgate.edge.builder import ConfigData, HostData, build_snapshot
from mtlsgate.edge.facts import RequestFacts
from mtlsgate.edge.probe import ChainRefused, ProbeError, ProbeResult, probe
from mtlsgate.edge.snapshot import HostProfile
from mtlsgate.edge.tls import ServerIdentity
from mtlsgate.errors import BadRequest, Conflict, MtlsgateError, quote, shorten
from mtlsgate.hostnames import HOSTNAME_NOT_IN_ZONE, in_zone, normalize_hostname
from mtlsgate.pki import names
from mtlsgate.pki.client_auth import FIELD_NAMES, ClientCertFacts, Verdict
from mtlsgate.pki.edge_ca import EdgeCA
from mtlsgate.pki.inspect import normalize_pem_text
from mtlsgate.rules import compile_expression
from mtlsgate.services import managed_cas
from mtlsgate.services.accounts import visible_zone
from mtlsgate.services.permissions import ZONE_SSL_READ, Principal
from mtlsgate.store import models as m
from mtlsgate.store.keystore import KeyStore

log = logging.getLogger("mtlsgate.explain")

# Codes of explain's own input errors (docs/api.md).
EXPLAIN_BAD_CERTIFICATES = 1460
EXPLAIN_BAD_PATH = 1461
EXPLAIN_BAD_METHOD = 1462
EXPLAIN_UNAVAILABLE = 1463

MAX_CERTIFICATES = 10
MAX_PATH = 8192
# The methods the edge's HTTP parser (llhttp) accepts in a request line.
_METHOD_LIST = (
    "GET HEAD POST PUT DELETE CONNECT OPTIONS TRACE PATCH PROPFIND PROPPATCH MKCOL COPY MOVE "
    "LOCK UNLOCK SEARCH REPORT MKACTIVITY CHECKOUT MERGE M-SEARCH NOTIFY SUBSCRIBE UNSUBSCRIBE "
    "PURGE MKCALENDAR LINK UNLINK SOURCE QUERY"
)
METHODS = frozenset(_METHOD_LIST.split(" "))
# A request target as the edge accepts it: origin-form, printable ASCII, no spaces.
_PATH = re.compile(r"/[\x21-\x7e]*")
_PEM_LABEL = re.compile(r"-----BEGIN ([^-\n]*)-----")

# The edge's loader: (session, keystore, *, default_hostname, server_identities) → ConfigData.
# The API and the CLI pass edge.runtime.config_sync.load_config (they are where the two planes
# are composed).
ExplainLoader = Callable[..., ConfigData]

# What a request explained here carries besides what the caller gives (docs/explain.md).
STAND_IN_IP = "0.0.0.0"
STAND_IN_TLS = ("TLSv1.3", "TLS_AES_256_GCM_SHA384")
STAND_IN_PORT = 443


@dataclasses.dataclass(frozen=True)
class ExplainRequest:
    hostname: str
    chain: tuple[x509.Certificate, ...]  # leaf first; empty: no certificate
    path: str = "/"
    method: str = "GET"


def parse_request(
    hostname: object, certificates: object, path: object = None, method: object = None
) -> ExplainRequest:
    """Validate explain's inputs; a BadRequest names the field and what is wrong with it."""
    if hostname is None:
        raise BadRequest("hostname is required", pointer="/hostname")
    name = normalize_hostname(hostname)
    if name.startswith("*."):
        raise BadRequest(
            f"hostname {name!r} is a wildcard; give a name a client would connect to "
            f"(for example www.{name[2:]})",
            pointer="/hostname",
        )
    return ExplainRequest(
        hostname=name,
        chain=parse_certificates(certificates),
        path=_parse_path(path),
        method=_parse_method(method),
    )


def parse_certificates(value: object) -> tuple[x509.Certificate, ...]:
    """The client's chain as it would send it (leaf first); "" or null: no certificate."""
    if value is None:
        return ()
    if not isinstance(value, str):
        raise BadRequest(
            "certificates must be a string of PEM CERTIFICATE blocks (leaf first), "
            'or "" for a client that sends no certificate',
            code=EXPLAIN_BAD_CERTIFICATES,
            pointer="/certificates",
        )
    text = normalize_pem_text(value)
    if not text:
        return ()
    for position, label in enumerate(_PEM_LABEL.findall(text), start=1):
        if label != "CERTIFICATE":
            hint = (
                "explain needs only the certificates a client sends, never its private key: "
                "remove that block (and consider the key exposed if it left its owner)"
                if label.endswith("PRIVATE KEY")
                else "only CERTIFICATE blocks are accepted"
            )
            raise BadRequest(
                f"PEM block {position} in certificates is a {shorten(label)} block: {hint}",
                code=EXPLAIN_BAD_CERTIFICATES,
                pointer="/certificates",
            )
    try:
        certs = x509.load_pem_x509_certificates(text.encode("ascii", "replace"))
    except ValueError:
        raise BadRequest(
            "certificates is not a valid PEM certificate chain: expected one or more "
            "-----BEGIN CERTIFICATE----- blocks holding X.509 certificates, leaf first",
            code=EXPLAIN_BAD_CERTIFICATES,
            pointer="/certificates",
        ) from None
    if len(certs) > MAX_CERTIFICATES:
        raise BadRequest(
            f"certificates holds {len(certs)} certificates; at most {MAX_CERTIFICATES}",
            code=EXPLAIN_BAD_CERTIFICATES,
            pointer="/certificates",
        )
    return tuple(certs)


def _parse_path(value: object) -> str:
    if value is None:
        return "/"
    if not isinstance(value, str) or not _PATH.fullmatch(value) or len(value) > MAX_PATH:
        raise BadRequest(
            f"path must be a request path starting with / (query allowed), at most {MAX_PATH} "
            "printable ASCII characters without spaces (percent-encode others), "
            f"got {quote(value)}",
            code=EXPLAIN_BAD_PATH,
            pointer="/path",
        )
    return value


def _parse_method(value: object) -> str:
    if value is None:
        return "GET"
    if not isinstance(value, str) or value.upper() not in METHODS:
        raise BadRequest(
            f"method must be an HTTP method such as GET, POST or DELETE, got {quote(value)}",
            code=EXPLAIN_BAD_METHOD,
            pointer="/method",
        )
    return value.upper()


# --- the stand-ins the edge's RequestFacts reads (the shape of server.py's objects) -------------


class _Request:
    """What RequestFacts reads of a request (edge/runtime/server.py Request)."""

    def __init__(self, method: str, path: str, host: str) -> None:
        self.method = method.encode("ascii")
        self.url = path.encode("ascii")
        self.host = host.encode("ascii")
        self.version = "1.1"
        self.headers = [(b"host", self.host)]


class _Connection:
    """What RequestFacts reads of a client connection (edge/runtime/server.py ClientConnection)."""

    def __init__(self, verdict: Verdict | None, chain: Sequence[x509.Certificate]) -> None:
        self.verdict = verdict
        self._facts = (
            ClientCertFacts(chain[0] if chain else None, chain[1:], verdict)
            if verdict is not None
            else None
        )

    def client_facts(self) -> ClientCertFacts | None:
        return self._facts

    def peer_ip(self) -> Any:
        return ipaddress.ip_address(STAND_IN_IP)

    def tls_info(self) -> tuple[str, str]:
        return STAND_IN_TLS

    def local_address(self) -> tuple[Any, int]:
        return ipaddress.ip_address(STAND_IN_IP), STAND_IN_PORT


# --- the snapshot ----------------------------------------------------------------------------


@cache
def _probe_identity() -> tuple[ServerIdentity, EdgeCA]:
    """A throwaway server identity for the probe's contexts: the server's own certificate plays
    no part in verifying the client's, and this keeps custom keys sealed and the edge CA's key
    where it is."""
    now = datetime.now(UTC)
    ca = EdgeCA.generate(now=now)
    issued = ca.issue(["mtlsgate-explain-probe.invalid"], now=now)
    return ServerIdentity(issued.chain_pem, issued.key_pem), ca


def _profile(data: ConfigData, hostname: str) -> tuple[HostProfile | None, HostData | None]:
    """The profile the edge would choose for SNI `hostname`, built by the edge's builder from
    the hosts the lookup can reach (the exact name and its one-label wildcard)."""
    parent = hostname.partition(".")[2]
    reachable = tuple(h for h in data.hosts if h.hostname in (hostname, "*." + parent))
    identity, edge_ca = _probe_identity()
    reduced = dataclasses.replace(
        data,
        hosts=tuple(dataclasses.replace(h, identity=identity) for h in reachable),
        default_hostname=None,
    )
    try:
        snapshot = build_snapshot(reduced, edge_ca, lambda _conn: None, {})
    except Exception as e:  # the edge keeps its previous snapshot in this case
        raise Conflict(
            f"the current configuration of {hostname} does not build ({e}); the edge keeps "
            "serving the previous one"
        ) from None
    profile = snapshot.lookup(hostname)
    host = next((h for h in reachable if profile and h.hostname == profile.hostname), None)
    return profile, host


# --- the CAs of the hostname -----------------------------------------------------------------


def _candidates(session: Session, zone_id: str, profile: HostProfile) -> list[dict[str, Any]]:
    """The hostname's associated CAs in the edge's order (config_sync._trust: the most recently
    deployed uploaded CA first, then older ones, then the managed CA), as far as they are in
    the profile's trust set."""
    assocs = session.scalars(
        select(m.HostnameAssociation)
        .where(
            m.HostnameAssociation.zone_id == zone_id,
            m.HostnameAssociation.hostname == profile.hostname,
        )
        .order_by(m.HostnameAssociation.id)
    ).all()
    ordered = sorted(assocs, key=lambda a: (a.ca_kind == "managed", -a.deployed_on.timestamp()))
    # A managed association trusts the account's active and retiring managed CAs (rotation:
    # services/managed_cas.py), in that order, as config_sync._trust does.
    sources: list[tuple[str, str, str | None, str]] = []  # (id, pem, name, kind)
    for assoc in ordered:
        if assoc.ca_kind == "managed":
            zone = session.get(m.Zone, zone_id)
            if zone is not None and not any(k == "managed" for *_, k in sources):
                for ca in managed_cas.trust_chain(session, zone.account_id):
                    sources.append((ca.id, ca.certificate_pem, ca.name, "managed"))
        else:
            uploaded = session.get(m.MtlsCertificate, assoc.ca_id)
            if uploaded is None or not uploaded.ca:
                continue
            sources.append((uploaded.id, uploaded.certificates, uploaded.name, "uploaded"))
    out: list[dict[str, Any]] = []
    for ca_id, pem, name, kind in sources:
        anchor = x509.load_pem_x509_certificates(pem.encode())[0]
        fingerprint = anchor.fingerprint(hashes.SHA256())
        if fingerprint not in profile.trust_fingerprints:
            continue
        out.append(
            {
                "id": ca_id,
                "name": name,
                "kind": kind,
                "subject": names.rfc4514(anchor.subject.public_bytes()),
                "fingerprint_sha256": fingerprint.hex(),
            }
        )
    return out


# --- the verdict -----------------------------------------------------------------------------


def _with_revocation(verdict: Verdict, profile: HostProfile, result: ProbeResult) -> Verdict:
    """As the edge does after the handshake (server.py `_apply_revocation`): a verified
    certificate the account's RevocationIndex names stays verified and becomes revoked."""
    index = profile.revocation
    path = result.verified_chain
    if index is None or not verdict.verified or not path:
        return verdict
    leaf = path[0]
    issuer = path[1].fingerprint(hashes.SHA256()) if len(path) > 1 else None
    why = index.reason(leaf.serial_number, leaf.fingerprint(hashes.SHA256()), issuer)
    if why is None:
        return verdict
    return Verdict(presented=True, verified=True, revoked=True, reason=why)


def _anchor(
    result: ProbeResult | None,
    verdict: Verdict | None,
    candidates: Sequence[Mapping[str, Any]],
) -> tuple[Mapping[str, Any] | None, str | None]:
    """The associated CA the chain reached, and why it is not a verified anchor (if it is not)."""
    if verdict is None:
        return None, "the hostname has no associated CA: the edge does not ask for a certificate"
    if not verdict.presented:
        return None, "no certificate was presented"
    assert result is not None
    top = result.verified_chain[-1] if result.verified_chain else None
    top_fp = top.fingerprint(hashes.SHA256()).hex() if top is not None else None
    reached = next((c for c in candidates if c["fingerprint_sha256"] == top_fp), None)
    if verdict.verified:
        return reached, None
    why = f"{verdict.reason} (OpenSSL error {verdict.error} at depth {verdict.depth})"
    if reached is not None:
        return reached, f"the chain reaches {reached['name'] or reached['id']} but fails: {why}"
    return None, f"no associated CA anchors this chain: {why}"


def _client_auth(verdict: Verdict | None, facts: RequestFacts) -> dict[str, Any]:
    failed = verdict is not None and verdict.presented and not verdict.verified
    return {
        "requested": verdict is not None,
        "presented": bool(verdict is not None and verdict.presented),
        "verified": bool(verdict is not None and verdict.presented and verdict.verified),
        "revoked": bool(verdict is not None and verdict.presented and verdict.revoked),
        "revocation_reason": verdict.reason if verdict is not None and verdict.revoked else None,
        "status": verdict.status if verdict is not None else "none",
        "error_code": verdict.error if failed and verdict is not None else None,
        "error_depth": verdict.depth if failed and verdict is not None else None,
        "error_reason": verdict.reason if failed and verdict is not None else None,
        "fields": {name: facts[name] for name in FIELD_NAMES},
    }


# --- the rules, in the order of the edge's request path ----------------------------------------


def _decide(profile: HostProfile, facts: RequestFacts) -> dict[str, Any]:
    """server.py `_start`: `log` rules are evaluated on their own and never end evaluation; the
    first matching block/skip rule then decides; a block answers with its response's status."""
    action: str | None = None
    rule_id: str | None = None
    logged: str | None = None
    status: int | None = None
    if profile.log_rules is not None:
        index = profile.log_rules(facts)
        if index >= 0:
            logged = rule_id = profile.log_rule_ids[index]
            action = "log"
    if profile.firewall is not None:
        index = profile.firewall(facts)
        if index >= 0:
            rule = profile.firewall_rules[index]
            rule_id, action = rule.rule_id, rule.action
            if rule.action == "block":
                status = rule.response.status if rule.response is not None else 403
    return {
        "action": action,
        "rule_id": rule_id,
        "status": status,
        # "origin": the request is forwarded (its status is the origin's); "block": the edge
        # answers `status` itself.
        "outcome": "block" if status is not None else "origin",
        "logged_by": logged,
    }


def _rules(host: HostData | None, facts: RequestFacts) -> list[dict[str, Any]]:
    """Every enabled firewall rule in order, with whether its expression matches this request
    (a listing: the decision above is what the edge's compiled ruleset decides)."""
    out: list[dict[str, Any]] = []
    for rule in host.firewall if host is not None else ():
        matches = bool(compile_expression(rule.expression).fn(facts))
        out.append(
            {
                "id": rule.rule_id,
                "expression": rule.expression,
                "action": rule.action,
                "matches": matches,
            }
        )
    return out


# --- the service -----------------------------------------------------------------------------


def explain(
    session: Session,
    keystore: KeyStore,
    principal: Principal,
    zone_id: str,
    request: ExplainRequest,
    loader: ExplainLoader | None,
) -> dict[str, Any]:
    """What the edge would do with `request` on `zone_id` under the current configuration."""
    zone = visible_zone(session, principal, zone_id)
    principal.require(ZONE_SSL_READ, account_id=zone.account_id, zone_id=zone.id)
    if not in_zone(request.hostname, zone.name):
        raise BadRequest(
            f"hostname {request.hostname} is not in zone {zone.name}",
            code=HOSTNAME_NOT_IN_ZONE,
            pointer="/hostname",
        )
    if loader is None:
        raise MtlsgateError(
            "explain is not available in this process (it was started without the edge's "
            "configuration loader)",
            code=EXPLAIN_UNAVAILABLE,
            status=503,
        )
    try:
        # Server identities are replaced by the probe's own (_profile): the loader need not
        # unseal any custom certificate's private key for explain.
        data = loader(session, keystore, default_hostname=None, server_identities=False)
    except Exception:
        # The loader reads every account's rows (as the edge does): a bad row elsewhere must
        # not become a 500 here, nor leak what it is. The cause goes to the server log only;
        # the edge, meeting the same row, keeps serving its previous configuration.
        log.exception("explain: the edge configuration loader failed")
        raise MtlsgateError(
            "explain cannot run: the current edge configuration does not load (the edge keeps "
            "serving its previous one); the gateway's log has the cause",
            code=EXPLAIN_UNAVAILABLE,
            status=503,
        ) from None
    profile, host = _profile(data, request.hostname)
    base: dict[str, Any] = {
        "hostname": request.hostname,
        "zone_id": zone.id,
        "config_version": data.version,
        "request": {"method": request.method, "path": request.path},
    }
    if profile is None or profile.zone_id != zone.id:
        # A name inside this zone served under another zone's record (a delegated subzone) is
        # that zone's to explain: its configuration is not shown through this one.
        elsewhere = profile is not None
        return {
            **base,
            "served": False,
            "profile_hostname": None,
            "explanation": f"{request.hostname} is served under another zone; explain it there"
            if elsewhere
            else f"{request.hostname} is not served: no proxied DNS record names it, and the "
            "edge fails the TLS handshake for it",
            "client_auth": None,
            "anchor": None,
            "anchor_reason": None,
            "candidate_cas": [],
            "decision": {
                "action": None,
                "rule_id": None,
                "status": None,
                "outcome": "other_zone" if elsewhere else "handshake_failure",
                "logged_by": None,
            },
            "rules": [],
        }
    candidates = _candidates(session, zone.id, profile) if profile.mtls else []
    verdict: Verdict | None = None
    result: ProbeResult | None = None
    if profile.mtls:
        try:
            result = probe(profile.context, request.hostname, request.chain)
        except ChainRefused as e:
            raise BadRequest(
                f"the edge cannot take this chain: {e}; a client sending it fails the TLS "
                "handshake",
                code=EXPLAIN_BAD_CERTIFICATES,
                pointer="/certificates",
            ) from None
        except ProbeError as e:  # the host's context refused the probe's handshake: a bug
            raise MtlsgateError(f"could not verify the chain: {e}", status=500) from None
        verdict = _with_revocation(result.verdict, profile, result)
    conn = _Connection(verdict, request.chain)
    req = _Request(request.method, request.path, request.hostname)
    facts = RequestFacts(cast(Any, conn), cast(Any, req), profile)
    # As the request path does before any rule: the two fields it knows already.
    if req.host == profile.name_bytes:
        facts["http.host"] = profile.hostname
    facts["cf.tls_client_auth.cert_verified"] = (
        verdict is not None and verdict.presented and verdict.verified
    )
    anchor, anchor_reason = _anchor(result, verdict, candidates)
    decision = _decide(profile, facts)
    return {
        **base,
        "served": True,
        "profile_hostname": profile.hostname,
        "explanation": None
        if profile.mtls
        else f"{request.hostname} has no associated CA: the edge does not ask for a client "
        "certificate, so every cf.tls_client_auth field has its default value",
        "client_auth": _client_auth(verdict, facts),
        "anchor": anchor,
        "anchor_reason": anchor_reason,
        "candidate_cas": candidates,
        "decision": decision,
        "rules": _rules(host, facts),
    }
