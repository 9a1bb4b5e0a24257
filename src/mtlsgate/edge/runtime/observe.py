"""What the edge tells the rest: one JSON line per request, and counters for /metrics.

Per request the edge only appends a tuple (the request path pays for little); the lines are
formatted and written, and the counters updated, together every 200 ms. Counters live in the
worker and are written to DATA_DIR/metrics/<node>.json every second; the API's /metrics sums
the files of all workers into Prometheus text. The newest records are also offered to the
request-events store (`take_events`), as a bounded sample, with exact per-minute counts.
"""

from __future__ import annotations

import json
import os
import sys
import time
from bisect import bisect_left
from collections import Counter, defaultdict
from json.encoder import encode_basestring_ascii as _quote
from pathlib import Path
from typing import TYPE_CHECKING, Any, TextIO

from mtlsgate.metrics import LATENCY_BUCKETS

if TYPE_CHECKING:
    from mtlsgate.edge.runtime.server import ClientConnection, Request

_FIELDS = (
    '{"ts":%.3f,"host":%s,"client":"%s","method":"%s","uri":%s,"status":%d,"mtls":"%s",'
    '"fingerprint":"%s","rule":"%s","action":"%s","ms":%.2f'
)
_LINE = _FIELDS + "}\n"
_LINE_ORIGIN = _FIELDS + ',"origin_ms":%.2f}\n'
EVENT_SAMPLE = 500  # the newest records offered to the events store per write, at most

# ts, host, client, method, uri, status, mtls, fingerprint, rule, action, total s, origin s
Record = tuple[float, str, str, bytes, bytes, int, str, str, str, str, float, float | None]


class Observer:
    def __init__(self, metrics_dir: Path | None, node_id: str, out: TextIO | None = None) -> None:
        self.metrics_dir = metrics_dir
        self.node_id = node_id
        self.out = out or sys.stderr
        self.records: list[Record] = []
        self.handshakes: Counter[tuple[str, str]] = Counter()
        self.requests: Counter[tuple[str, int, str]] = Counter()
        self.rules: Counter[tuple[str, str, str]] = Counter()
        # Per hostname: how many origin latencies fell in each bucket (not cumulative).
        self.latency: defaultdict[str, list[int]] = defaultdict(
            lambda: [0] * (len(LATENCY_BUCKETS) + 1)
        )
        self.latency_sum: defaultdict[str, float] = defaultdict(float)
        # (minute, host, mtls, status, action) → requests, since the last take_events().
        self.minute_counts: Counter[tuple[int, str, str, int, str]] = Counter()
        self.events: list[Record] = []

    def handshake(self, hostname: str, mtls_status: str) -> None:
        self.handshakes[(hostname, mtls_status)] += 1

    def request_done(self, conn: ClientConnection, req: Request) -> None:
        # Only a tuple per request; counters are computed from the batch in flush_log().
        verdict = conn.verdict
        facts = req.facts
        self.records.append(
            # The host is the configuration's (never the client's SNI or Host header).
            (time.time(), (facts.profile if facts is not None else conn.state.profile).hostname,
             conn.peer, req.method, req.url, req.status,
             verdict.status if verdict is not None else "none",
             conn.fingerprint() if verdict is not None else "", req.rule_id,
             req.action or "forward", time.monotonic() - req.started, req.origin_seconds)
        )  # fmt: skip

    def _count(self, records: list[Record]) -> None:
        requests, rules, minutes = self.requests, self.rules, self.minute_counts
        latency, latency_sum = self.latency, self.latency_sum
        for ts, host, _, _, _, status, mtls, _, rule, action, _, seconds in records:
            requests[(host, status, action)] += 1
            if rule:
                rules[(host, action, rule)] += 1
            if seconds is not None:
                latency[host][bisect_left(LATENCY_BUCKETS, seconds)] += 1
                latency_sum[host] += seconds
            minutes[(int(ts) // 60 * 60, host, mtls, status, action)] += 1

    @staticmethod
    def format(r: Record) -> str:
        """One JSON log line (with its newline). The URI and the host are escaped (the host
        comes from the configuration, but is escaped anyway); the client is an address, llhttp
        admits only token methods, and status words, fingerprints and rule ids are fixed
        alphabets. One %-format per line: the cheapest way Python has to build it."""
        ts, host, client, method, uri, status, mtls, fp, rule, action, total, origin = r
        uri_json = _quote(uri.decode("latin-1")[:2048])
        verb = method.decode("latin-1")
        if origin is None:
            return _LINE % (ts, _quote(host), client, verb, uri_json, status, mtls, fp, rule,
                            action, total * 1000)  # fmt: skip
        return _LINE_ORIGIN % (ts, _quote(host), client, verb, uri_json, status, mtls, fp, rule,
                               action, total * 1000, origin * 1000)  # fmt: skip

    @staticmethod
    def as_dict(r: Record) -> dict[str, Any]:
        d: dict[str, Any] = json.loads(Observer.format(r))
        return d

    def flush_log(self) -> None:
        records = self.records
        if not records:
            return
        self.records = []
        self._count(records)
        fmt = self.format
        self.out.write("".join([fmt(r) for r in records]))
        self.out.flush()
        # The newest ones are the sample the events store keeps.
        events = self.events
        events.extend(records[-EVENT_SAMPLE:])
        if len(events) > EVENT_SAMPLE:
            del events[:-EVENT_SAMPLE]

    def take_events(self) -> tuple[list[Record], dict[tuple[int, str, str, int, str], int]]:
        """The sampled records (as_dict() turns one into the store's event; done by the
        caller, off the event loop) and the exact per-minute counts since the last call."""
        events, counts = self.events, dict(self.minute_counts)
        self.events = []
        self.minute_counts = Counter()
        return events, counts

    def dump_metrics(self) -> None:
        if self.metrics_dir is None:
            return
        latency: list[list[Any]] = []
        latency_count: dict[str, int] = {}
        for host, buckets in self.latency.items():
            running = 0
            for bound, n in zip(LATENCY_BUCKETS, buckets, strict=False):
                running += n
                latency.append([host, bound, running])
            latency_count[host] = running + buckets[-1]
        data = {
            "handshakes": [[h, s, n] for (h, s), n in self.handshakes.items()],
            "requests": [[h, st, a, n] for (h, st, a), n in self.requests.items()],
            "rules": [[h, a, r, n] for (h, a, r), n in self.rules.items()],
            "latency": latency,
            "latency_sum": dict(self.latency_sum),
            "latency_count": latency_count,
        }
        self.metrics_dir.mkdir(parents=True, exist_ok=True)
        path = self.metrics_dir / f"{self.node_id.replace(':', '-')}.json"
        tmp = path.with_suffix(".tmp")
        tmp.write_text(json.dumps(data))
        os.replace(tmp, path)
