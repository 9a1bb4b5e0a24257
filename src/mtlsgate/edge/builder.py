"""Plain configuration data → an immutable Snapshot: compiled rules, OpenSSL contexts, origins.

Pure apart from OpenSSL context construction; the runtime reads the data from the store
(runtime/config_sync.py) and hands it here.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from cryptography import x509
from cryptography.hazmat.primitives import hashes
from OpenSSL import SSL

from mtlsgate.edge.facts import CONNECTION_FIELDS
from mtlsgate.edge.header_policy import is_token, refusal
from mtlsgate.edge.snapshot import (
    BlockResponse,
    FirewallRule,
    HeaderOps,
    HostProfile,
    Origin,
    Snapshot,
)
from mtlsgate.edge.tls import ServerIdentity, build_context
from mtlsgate.pki.edge_ca import EdgeCA
from mtlsgate.pki.revocation import RevocationIndex
from mtlsgate.rules import compile_expression
from mtlsgate.rules.compiler import compile_first_match
from mtlsgate.rules.functions import MISSING
from mtlsgate.rules.scheme import STRING

log = logging.getLogger("mtlsgate.edge")


@dataclass(frozen=True)
class RuleData:
    rule_id: str
    expression: str
    action: str
    action_parameters: str | None  # JSON text as stored


@dataclass(frozen=True)
class HostData:
    hostname: str
    zone_id: str
    origin: Origin
    # Trust anchors in advertising order: most recently deployed uploaded CA first, then older
    # ones, then the managed CA. Empty: the hostname does not ask for client certificates.
    trust: tuple[x509.Certificate, ...] = ()
    identity: ServerIdentity | None = None  # an uploaded certificate covering the hostname
    firewall: tuple[RuleData, ...] = ()
    origin_rules: tuple[RuleData, ...] = ()
    managed_cert_headers: bool = False
    advertise_ca_names: bool = True
    late_transform: tuple[RuleData, ...] = ()  # http_request_late_transform, enabled, in order
    client_cert_forwarding: bool = False  # Access mTLS hostname setting
    revocation: RevocationIndex | None = None  # the zone's account's; None: nothing to check


@dataclass(frozen=True)
class ConfigData:
    version: int
    hosts: tuple[HostData, ...]
    default_hostname: str | None = None
    now: datetime = field(default_factory=lambda: datetime.now().astimezone())


def _block_response(params: str | None) -> BlockResponse | None:
    if not params:
        return None
    data = json.loads(params)
    response = data.get("response") if isinstance(data, dict) else None
    if not isinstance(response, dict):
        return None
    return BlockResponse(
        status=int(response.get("status_code", 403)),
        content=str(response.get("content", "")).encode(),
        content_type=str(response.get("content_type", "text/plain")),
    )


def _route(params: str | None, base: Origin) -> Origin:
    data = json.loads(params) if params else {}
    origin = data.get("origin") or {}
    sni = (data.get("sni") or {}).get("value")
    return Origin(
        host=str(origin.get("host", base.host)),
        port=int(origin.get("port", base.port)),
        tls=base.tls,
        verify=base.verify,
        host_header=data.get("host_header", base.host_header),
        sni=sni or base.sni,
    )


def build_snapshot(
    data: ConfigData,
    edge_ca: EdgeCA,
    on_sni: Callable[[SSL.Connection], None],
    identities: dict[str, ServerIdentity] | None = None,
) -> Snapshot:
    """`identities` caches edge-CA certificates between rebuilds (hostname → identity)."""
    cache = identities if identities is not None else {}
    exact: dict[str, HostProfile] = {}
    wildcard: dict[str, HostProfile] = {}
    for host in data.hosts:
        identity = host.identity or cache.get(host.hostname)
        if identity is None:
            issued = edge_ca.issue([host.hostname], now=data.now)
            identity = ServerIdentity(issued.chain_pem, issued.key_pem)
            cache[host.hostname] = identity
        context = build_context(
            identity,
            trust_anchors=host.trust,
            advertise=host.trust if host.advertise_ca_names else (),
            request_client_cert=bool(host.trust),
            on_sni=on_sni,
        )
        # `log` does not end evaluation: it is kept out of the first-match chain (which decides
        # block or skip) and evaluated on its own, so it can never shadow a later block.
        deciding = tuple(r for r in host.firewall if r.action != "log")
        logging_rules = tuple(r for r in host.firewall if r.action == "log")
        firewall, fields = _compile(deciding)
        log_rules, log_fields = _compile(logging_rules)
        routes, _ = _compile(host.origin_rules)
        profile = HostProfile(
            hostname=host.hostname,
            zone_id=host.zone_id,
            context=context,
            mtls=bool(host.trust),
            origin=host.origin,
            firewall=firewall,
            firewall_rules=tuple(
                FirewallRule(r.rule_id, r.action, _block_response(r.action_parameters))
                for r in deciding
            ),
            log_rules=log_rules,
            log_rule_ids=tuple(r.rule_id for r in logging_rules),
            managed_cert_headers=host.managed_cert_headers,
            trust_fingerprints=frozenset(c.fingerprint(hashes.SHA256()) for c in host.trust),
            origin_rules=routes,
            origin_routes=tuple(
                _route(r.action_parameters, host.origin) for r in host.origin_rules
            ),
            late_transform=compile_late_transform(host.late_transform),
            connection_rules=(fields | log_fields) <= CONNECTION_FIELDS
            and not host.origin_rules
            and not host.late_transform,
            client_cert_forwarding=host.client_cert_forwarding,
            revocation=host.revocation,
        )
        if host.hostname.startswith("*."):
            wildcard[host.hostname[2:]] = profile
        else:
            exact[host.hostname] = profile
    default = None
    if data.default_hostname:
        default = exact.get(data.default_hostname)
    elif len(data.hosts) == 1:
        default = next(iter(exact.values()), None) or next(iter(wildcard.values()), None)
    return Snapshot(data.version, exact, wildcard, default)


def _compile(rules: Sequence[RuleData]) -> tuple[Callable[..., int] | None, frozenset[str]]:
    """The first-match function of `rules` (None without rules) and the fields they read."""
    if not rules:
        return None, frozenset()
    # Rules were checked when they were written; a rule that no longer compiles (an engine
    # change) would raise here and keep the previous snapshot in place.
    compiled = [compile_expression(r.expression) for r in rules]
    return compile_first_match(compiled), frozenset().union(*(c.fields for c in compiled))


# --- late-transform header rules --------------------------------------------------------------


def _set_value(name: bytes, value: Any) -> tuple[bytes, bytes] | None:
    """A `set` with an expression: its String result, or removal when it is "" or missing
    (Cloudflare omits a header whose computed value is empty)."""
    if value is MISSING or not isinstance(value, str) or not value:
        return None
    return name, value.encode("latin-1", "replace")


def compile_late_transform(
    rules: Sequence[RuleData],
) -> Callable[[Mapping[str, Any]], HeaderOps] | None:
    """One generated function for a zone's late-transform (`rewrite`) rules.

    Every matching rule applies its header operations in order, each `set` or `remove`
    replacing whatever an earlier one did to that header: the net effect is the last operation
    per header name, which is what the function returns (empty when no rule matches). Rule
    conditions are inlined as in compile_first_match; `set` expressions are called through their
    compiled `.fn`. Operations on headers a rule may not touch (edge/header_policy.py; the API
    refuses them, so only rules stored before it did have any) are dropped, logged once, here.
    """
    lines = ["def _late(f):", "    ops = {}"]
    namespace: dict[str, Any] = {"MISSING": MISSING, "_late_set": _set_value}
    used = False
    for i, rule in enumerate(rules):
        if rule.action != "rewrite":
            continue
        params = json.loads(rule.action_parameters) if rule.action_parameters else {}
        headers = params.get("headers") if isinstance(params, dict) else None
        if not isinstance(headers, dict):
            continue
        body: list[str] = []
        for j, (name, op) in enumerate(headers.items()):
            if not isinstance(name, str) or not is_token(name) or not isinstance(op, dict):
                continue
            lower = name.lower()
            key = lower.encode("ascii")
            raw = name.encode("ascii")
            operation = op.get("operation")
            # The API refuses these (header_policy); a rule stored before it did is ignored.
            why = refusal(name, "remove" if operation == "remove" else "set")
            if why is not None:
                log.warning("late transform %s: %s; operation ignored", rule.rule_id, why)
                continue
            if operation == "remove":
                body.append(f"ops[{key!r}] = None")
            elif operation == "set" and isinstance(op.get("value"), str):
                value = op["value"].encode("latin-1", "replace")
                body.append(f"ops[{key!r}] = {(raw, value)!r}")
            elif operation == "set" and isinstance(op.get("expression"), str):
                ref = f"_late_x{i}_{j}"
                namespace[ref] = compile_expression(op["expression"], expect=STRING).fn
                body.append(f"ops[{key!r}] = _late_set({raw!r}, {ref}(f))")
        if not body:
            continue
        condition = compile_expression(rule.expression)
        namespace.update(condition.consts)
        lines.append(f"    if {condition.body}:")
        lines += [f"        {line}" for line in body]
        used = True
    if not used:
        return None
    lines.append("    return ops")
    exec(compile("\n".join(lines) + "\n", "<late_transform>", "exec"), namespace)
    fn: Callable[[Mapping[str, Any]], HeaderOps] = namespace["_late"]
    return fn
