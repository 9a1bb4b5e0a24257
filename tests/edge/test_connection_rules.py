"""Rules that read only a connection's fields are decided once per connection and
configuration and verdict (edge/facts.py CONNECTION_FIELDS, runtime/server.py `_start`); any other
rule is evaluated on every request.

build_snapshot decides which, from the fields the compiled rules read; the requests go through
a real EdgeWorker and ClientConnection with an in-memory TLS client (test_request_limits.Edge)."""

from __future__ import annotations

import dataclasses
from datetime import UTC, datetime

import pytest

from mtlsgate.edge.builder import ConfigData, HostData, RuleData, build_snapshot
from mtlsgate.edge.snapshot import FirewallRule, HostProfile, Origin
from mtlsgate.pki.client_auth import Verdict
from mtlsgate.pki.edge_ca import EdgeCA
from mtlsgate.rules import compile_expression
from mtlsgate.rules.compiler import compile_first_match
from tests.edge.test_request_garbage import HOST, RESPONSE
from tests.edge.test_request_limits import Edge

SEED = f'(http.host in {{"{HOST}"}} and not cf.tls_client_auth.cert_verified)'


def _profile(firewall: tuple[str, ...], **extra: tuple[RuleData, ...]) -> HostProfile:
    data = ConfigData(1, (HostData(
        HOST, "z", Origin("127.0.0.1", 9),
        firewall=tuple(RuleData(f"r{i}", e, "block", None) for i, e in enumerate(firewall)),
        **extra,  # type: ignore[arg-type]
    ),))  # fmt: skip
    snapshot = build_snapshot(data, EdgeCA.generate(now=datetime.now(UTC)), lambda _c: None)
    return snapshot.exact[HOST]


@pytest.mark.parametrize(
    ("rules", "extra", "expected"),
    [
        ((SEED,), {}, True),
        (("not cf.tls_client_auth.cert_verified or cf.tls_client_auth.cert_revoked",), {}, True),
        (
            ('cf.tls_client_auth.cert_subject_dn contains "CN=x" and ip.src in {10.0.0.0/8}',),
            {},
            True,
        ),
        ((SEED, 'http.request.uri.path eq "/admin"'), {}, False),
        (('http.user_agent contains "curl"',), {}, False),
        (("http.request.timestamp.sec > 0",), {}, False),
        ((SEED,), {"origin_rules": (RuleData("o", "true", "route", "{}"),)}, False),
        ((SEED,), {"late_transform": (RuleData("t", "true", "rewrite", None),)}, False),
    ],
)
def test_which_rules_are_decided_per_connection(
    rules: tuple[str, ...], extra: dict[str, tuple[RuleData, ...]], expected: bool
) -> None:
    assert _profile(rules, **extra).connection_rules is expected


def _edge_with(expression: str) -> Edge:
    edge = Edge()
    rule = compile_expression(expression)
    profile = dataclasses.replace(
        edge.worker.snapshot.exact[HOST],
        firewall=compile_first_match([rule]),
        firewall_rules=(FirewallRule("r1", "block"),),
        connection_rules=_profile((expression,)).connection_rules,
        # (The CA that verified the client: kept by later configurations.)
        trust_fingerprints=frozenset({edge.conn._verifying_anchor()}),
    )
    snapshot = dataclasses.replace(edge.worker.snapshot, exact={HOST: profile}, default=profile)
    edge.worker.install(snapshot)
    return edge


def _status(edge: Edge, path: bytes) -> bytes:
    edge.send(b"GET " + path + b" HTTP/1.1\r\nHost: api.example.com\r\n\r\n")
    if edge.origin_out.take():
        edge.origin.data_received(RESPONSE)
    return edge.received()[9:12]


def test_a_rule_on_the_path_is_evaluated_for_every_request_of_a_connection() -> None:
    with _edge_with('http.request.uri.path eq "/admin"') as edge:
        assert [_status(edge, p) for p in (b"/", b"/admin", b"/", b"/admin")] == [
            b"200", b"403", b"200", b"403",
        ]  # fmt: skip


def test_a_decision_kept_for_a_connection_follows_its_verdict() -> None:
    with _edge_with(SEED) as edge:
        assert edge.worker.snapshot.exact[HOST].connection_rules
        assert _status(edge, b"/") == b"200"
        assert _status(edge, b"/") == b"200"
        # The verdict changes (as a removed CA or a revocation changes it, in _recheck).
        edge.conn.verdict = Verdict.failed(20, 0)
        assert _status(edge, b"/") == b"403"
        edge.conn.verdict = Verdict(presented=True, verified=True)
        assert _status(edge, b"/") == b"200"
        # A new configuration is decided anew: here its rule blocks every request.
        profile = edge.worker.snapshot.exact[HOST]
        blocking = dataclasses.replace(
            profile, firewall=compile_first_match([compile_expression("ssl")])
        )
        edge.worker.install(
            dataclasses.replace(edge.worker.snapshot, version=2, exact={HOST: blocking})
        )
        assert _status(edge, b"/") == b"403"
