"""A repeat of a connection's last simple request head is forwarded by the plan its first
instance left (runtime/server.py `_repeat`): the same origin head but for a fresh CF-Ray, and
the same log line but for its status and timings. Nothing the plan was decided by may change
underneath it: a new configuration, a new verdict, a fenced configuration, another head.

The requests go through a real EdgeWorker and ClientConnection with an in-memory TLS client
(test_request_limits.Edge), on a hostname whose rule reads only the connection's fields."""

from __future__ import annotations

import dataclasses
import io
import json
import re

import pytest

from mtlsgate.edge.runtime import observe
from mtlsgate.edge.runtime.server import ClientConnection
from mtlsgate.pki.client_auth import Verdict
from mtlsgate.rules import compile_expression
from mtlsgate.rules.compiler import compile_first_match
from tests.edge.test_connection_rules import SEED, _edge_with
from tests.edge.test_request_garbage import HOST, RESPONSE
from tests.edge.test_request_limits import Edge

NOT_FOUND = b"HTTP/1.1 404 Not Found\r\nContent-Length: 2\r\n\r\nno"

HEAD_11 = b"GET /poll?x=1 HTTP/1.1\r\nHost: api.example.com\r\nAccept: */*\r\nX-Agent: a\r\n\r\n"
HEAD_10 = (
    b"GET / HTTP/1.0\r\nConnection: Keep-Alive\r\nHost: api.example.com\r\n"
    b"User-Agent: ApacheBench/2.3\r\nAccept: */*\r\n\r\n"
)
_RAY = re.compile(rb"\r\nCF-Ray: ([0-9a-f]{12})\r\n")


def _exchange(edge: Edge, head: bytes, response: bytes = RESPONSE) -> tuple[bytes, bytes]:
    """One request: (the head the origin got, what the client got)."""
    edge.send(head)
    sent = edge.origin_out.take()
    if sent:
        edge.origin.data_received(response)
    return sent, edge.received()


def _without_ray(head: bytes) -> bytes:
    return _RAY.sub(b"\r\n", head)


@pytest.mark.parametrize("head", [HEAD_11, HEAD_10])
def test_a_repeat_is_forwarded_as_its_first_instance_was(
    head: bytes, monkeypatch: pytest.MonkeyPatch
) -> None:
    with _edge_with(SEED) as edge:
        planned = [_exchange(edge, head) for _ in range(4)]
        assert edge.conn.plan is not None
        # The same requests with the plan never used: each decided and built by _start.
        monkeypatch.setattr(ClientConnection, "_repeat", lambda self, plan: False)
        unplanned = [_exchange(edge, head) for _ in range(4)]
    first = _without_ray(planned[0][0])
    assert first.startswith(head.split(b" HTTP/")[0] + b" HTTP/1.1\r\nHost: api.example.com")
    assert b"cf-cert-verified: true\r\n" in first
    for sent, got in planned + unplanned:
        assert _without_ray(sent) == first
        assert got == planned[0][1]
        assert got.startswith(b"HTTP/1.1 200")
        if head is HEAD_10:
            assert b"\r\nConnection: keep-alive\r\n" in got
    rays = [_RAY.search(sent).group(1) for sent, _ in planned + unplanned]  # type: ignore[union-attr]
    assert len(set(rays)) == len(rays)


def test_a_repeat_after_a_new_configuration_is_decided_by_it() -> None:
    with _edge_with(SEED) as edge:
        assert _exchange(edge, HEAD_11)[1].startswith(b"HTTP/1.1 200")
        assert _exchange(edge, HEAD_11)[1].startswith(b"HTTP/1.1 200")
        before = edge.worker.snapshot
        profile = before.exact[HOST]
        blocking = dataclasses.replace(
            profile, firewall=compile_first_match([compile_expression("ssl")])
        )
        edge.worker.install(dataclasses.replace(before, version=2, exact={HOST: blocking}))
        sent, got = _exchange(edge, HEAD_11)
        assert sent == b""
        assert got.startswith(b"HTTP/1.1 403")
        # Without the managed headers: the origin head changes with the configuration too.
        plain = dataclasses.replace(profile, managed_cert_headers=False)
        edge.worker.install(dataclasses.replace(before, version=3, exact={HOST: plain}))
        sent, got = _exchange(edge, HEAD_11)
        assert got.startswith(b"HTTP/1.1 200")
        assert sent and b"cf-cert-" not in sent


def test_a_repeat_follows_a_new_verdict() -> None:
    with _edge_with(SEED) as edge:
        assert _exchange(edge, HEAD_11)[1].startswith(b"HTTP/1.1 200")
        assert _exchange(edge, HEAD_11)[1].startswith(b"HTTP/1.1 200")
        # As _recheck replaces it when a CA is removed from the hostname.
        edge.conn.verdict = Verdict.failed(20, 0)
        sent, got = _exchange(edge, HEAD_11)
        assert (sent, got[9:12]) == (b"", b"403")


def test_a_repeat_on_a_fenced_configuration_gets_503() -> None:
    with _edge_with(SEED) as edge:
        assert _exchange(edge, HEAD_11)[1].startswith(b"HTTP/1.1 200")
        assert _exchange(edge, HEAD_11)[1].startswith(b"HTTP/1.1 200")
        edge.worker.fenced_from = edge.worker.loop.time() - 1
        sent, got = _exchange(edge, HEAD_11)
        assert (sent, got[9:12]) == (b"", b"503")
        edge.worker.fenced_from = float("inf")  # confirmed current again
        assert _exchange(edge, HEAD_11)[1].startswith(b"HTTP/1.1 200")


def test_another_head_between_repeats_is_forwarded_as_itself() -> None:
    other = HEAD_11.replace(b"/poll?x=1", b"/other")
    with _edge_with(SEED) as edge:
        targets = [
            _exchange(edge, head)[0].split(b" ")[1]
            for head in (HEAD_11, HEAD_11, other, other, HEAD_11, HEAD_11)
        ]
        assert targets == [b"/poll?x=1", b"/poll?x=1", b"/other", b"/other"] + [b"/poll?x=1"] * 2
    # A head that leaves no plan (its Host names the port: not the profile's name as sent)
    # must not be forwarded by the previous head's plan when it repeats.
    ported = other.replace(b"Host: api.example.com", b"Host: api.example.com:443")
    with _edge_with(SEED) as edge:
        heads = [_exchange(edge, head)[0] for head in (HEAD_11, HEAD_11, ported, ported, HEAD_11)]
        assert [h.split(b" ")[1] for h in heads] == [b"/poll?x=1"] * 2 + [b"/other"] * 2 + [
            b"/poll?x=1"
        ]
        assert all(h.startswith(b"GET /other HTTP/1.1\r\nHost: api.example.com:443\r\n")
                   for h in heads[2:4])  # fmt: skip


def test_log_lines_of_repeats_carry_their_own_status(monkeypatch: pytest.MonkeyPatch) -> None:
    not_found = b"HTTP/1.1 404 Not Found\r\nContent-Type: text/plain\r\nContent-Length: 2\r\n\r\nno"
    with _edge_with(SEED) as edge:
        observer = edge.worker.observer
        out = observer.out = io.StringIO()
        for response in (RESPONSE, RESPONSE, not_found, RESPONSE, not_found):
            _exchange(edge, HEAD_11, response)
        # Every flush starts the line parts afresh: a memo of a part from before must not be
        # used (its key would be gone when the batch is counted).
        monkeypatch.setattr(observe, "MAX_KEYS", 0)
        observer.flush_log()
        for response in (not_found, RESPONSE):
            _exchange(edge, HEAD_11, response)
            observer.flush_log()
        lines = [json.loads(line) for line in out.getvalue().splitlines()]
    assert [line["status"] for line in lines] == [200, 200, 404, 200, 404, 404, 200]
    for line in lines:
        assert (line["host"], line["method"], line["uri"], line["mtls"]) == (
            HOST, "GET", "/poll?x=1", "ok",
        )  # fmt: skip
        assert line["action"] == "forward"
        assert line["origin_ms"] >= 0
    assert observer.requests[(HOST, 200, "forward")] == 4
    assert observer.requests[(HOST, 404, "forward")] == 3


def test_no_plan_where_a_rule_reads_the_request() -> None:
    with _edge_with('http.request.uri.path eq "/admin"') as edge:
        for _ in range(3):
            assert _exchange(edge, HEAD_11)[1].startswith(b"HTTP/1.1 200")
        assert edge.conn.plan is None
        assert _exchange(edge, HEAD_11.replace(b"/poll?x=1", b"/admin"))[1][9:12] == b"403"


def _install(edge: Edge, **changes: object) -> None:
    """A new configuration: the hostname's profile with `changes`."""
    snapshot = edge.worker.snapshot
    assert snapshot.default is not None
    profile = dataclasses.replace(snapshot.default, **changes)  # type: ignore[arg-type]
    edge.worker.install(
        dataclasses.replace(snapshot, exact={profile.hostname: profile}, default=profile)
    )


def test_a_long_head_between_repeats_does_not_replace_the_plan() -> None:
    # A simple head over 2 KiB is not kept whole (head_seen): it must leave no plan, or the kept
    # head's next repeat would be forwarded as the long one.
    long = HEAD_11.replace(b"/poll?x=1", b"/long").replace(
        b"\r\n\r\n", b"\r\nX-Pad: " + b"p" * 2100 + b"\r\n\r\n"
    )
    with _edge_with(SEED) as edge:
        sent = [_exchange(edge, head)[0] for head in (HEAD_11, HEAD_11, long, HEAD_11)]
    assert [s.split(b" ")[1] for s in sent] == [b"/poll?x=1", b"/poll?x=1", b"/long", b"/poll?x=1"]
    assert b"x-pad" not in sent[3]


def test_access_forwarding_leaves_no_plan(monkeypatch: pytest.MonkeyPatch) -> None:
    with _edge_with(SEED) as edge:
        _install(edge, client_cert_forwarding=True)
        planned = [_exchange(edge, HEAD_11)[0] for _ in range(3)]
        assert edge.conn.plan is None
        monkeypatch.setattr(ClientConnection, "_repeat", lambda self, plan: False)
        unplanned = [_exchange(edge, HEAD_11)[0] for _ in range(2)]
    # Access forwarding: the certificate goes with the connection's first request only.
    assert b"Cf-Client-Cert-Der-Base64" in planned[0]
    assert {_without_ray(s) for s in planned[1:] + unplanned} == {_without_ray(unplanned[0])}
    assert b"X-Forwarded-For: " in unplanned[0]


def test_a_repeat_keeps_its_log_rule() -> None:
    with _edge_with(SEED) as edge:
        _install(
            edge,
            log_rules=compile_first_match([compile_expression("cf.tls_client_auth.cert_verified")]),
            log_rule_ids=("L1",),
        )
        observer = edge.worker.observer
        out = observer.out = io.StringIO()
        # (The third, with another status, is keyed afresh, not taken from the first's memo.)
        for response in (RESPONSE, RESPONSE, NOT_FOUND):
            _exchange(edge, HEAD_11, response)
        observer.flush_log()
    lines = [json.loads(line) for line in out.getvalue().splitlines()]
    assert [(line["rule"], line["action"]) for line in lines] == [("L1", "log")] * 3
    assert observer.rules[(HOST, "log", "L1")] == 3


def test_each_plan_logs_its_own_uri() -> None:
    other = HEAD_11.replace(b"/poll?x=1", b"/other")
    with _edge_with(SEED) as edge:
        observer = edge.worker.observer
        out = observer.out = io.StringIO()
        for head in (HEAD_11, other, other, HEAD_11, HEAD_11):
            _exchange(edge, head)
        observer.flush_log()
    uris = [json.loads(line)["uri"] for line in out.getvalue().splitlines()]
    assert uris == ["/poll?x=1", "/other", "/other", "/poll?x=1", "/poll?x=1"]


def test_a_plan_of_an_older_configuration_is_dropped() -> None:
    # A connection that keeps repeating a head the new configuration answers at the edge (a
    # block) must not keep the old configuration alive through its plan.
    with _edge_with(SEED) as edge:
        _exchange(edge, HEAD_11)
        assert edge.conn.plan is not None
        _install(edge, firewall=compile_first_match([compile_expression("ssl")]))
        for _ in range(2):
            assert _exchange(edge, HEAD_11)[1][9:12] == b"403"
            assert edge.conn.plan is None
