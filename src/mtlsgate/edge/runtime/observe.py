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
from functools import partial
from json.encoder import encode_basestring_ascii as _quote
from operator import itemgetter
from pathlib import Path
from typing import TYPE_CHECKING, Any, TextIO

from mtlsgate.metrics import LATENCY_BUCKETS

if TYPE_CHECKING:
    from mtlsgate.edge.runtime.server import ClientConnection, Request

# The part of a line that repeats between requests (same host, client, URI, verdict, rule...) is
# formatted once per batch and key; each line then adds only its timestamp and durations.
_MIDDLE = (
    '"host":%s,"client":"%s","method":"%s","uri":%s,"status":%d,"mtls":"%s",'
    '"fingerprint":"%s","rule":"%s","action":"%s"'
)
_LINE = '{"ts":%.3f,%s,"ms":%.2f}\n'
_LINE_ORIGIN = '{"ts":%.3f,%s,"ms":%.2f,"origin_ms":%.2f}\n'
EVENT_SAMPLE = 500  # the newest records offered to the events store per write, at most

# Added to the line of a request whose verified certificate is revoked: why (pki/revocation.py:
# "managed", "crl", "crl_stale", "crl_missing" or "denylist", a fixed alphabet).
_REVOCATION = ',"revocation":"%s"'
# host, client, method, uri, status, mtls, fingerprint, rule, action, revocation reason ("" when
# not revoked): what requests share.
Key = tuple[str, str, bytes, bytes, int, str, str, str, str, str]
# ts, total seconds, origin seconds, key
Record = tuple[float, float, float | None, Key]
_KEY = itemgetter(3)
_ORIGIN = itemgetter(2)
_bucket = partial(bisect_left, LATENCY_BUCKETS)


class Observer:
    def __init__(self, metrics_dir: Path | None, node_id: str, out: TextIO | None = None) -> None:
        self.metrics_dir = metrics_dir
        self.node_id = node_id
        self.out = out or sys.stderr
        self.records: list[Record] = []
        self.handshakes: Counter[tuple[str, str]] = Counter()
        self.requests: Counter[tuple[str, int, str]] = Counter()
        self.rules: Counter[tuple[str, str, str]] = Counter()
        self.revocations: Counter[tuple[str, str]] = Counter()  # (host, reason) → requests
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
        # Only a tuple per request; counters and lines are computed from the batch in flush_log().
        verdict = conn.verdict
        facts = req.facts
        self.records.append(
            (time.time(), time.monotonic() - req.started, req.origin_seconds,
             # The host is the configuration's (never the client's SNI or Host header).
             ((facts.profile if facts is not None else conn.state.profile).hostname,
              conn.peer, req.method, req.url, req.status,
              verdict.status if verdict is not None else "none",
              conn.fingerprint() if verdict is not None else "", req.rule_id,
              req.action or "forward",
              verdict.reason if verdict is not None and verdict.revoked else ""))
        )  # fmt: skip

    def _count(self, records: list[Record], keys: Counter[Key]) -> None:
        """Counters from a batch: per distinct key (requests of a batch share few keys), and per
        record only where a value differs per request (the origin latency)."""
        requests, rules, minutes = self.requests, self.rules, self.minute_counts
        for (host, _, _, _, status, _, _, rule, action, why), n in keys.items():
            requests[(host, status, action)] += n
            if rule:
                rules[(host, action, rule)] += n
            if why:
                self.revocations[(host, why)] += n
        minute = int(records[0][0]) // 60 * 60
        if int(records[-1][0]) // 60 * 60 == minute:
            for (host, _, _, _, status, mtls, _, _, action, _), n in keys.items():
                minutes[(minute, host, mtls, status, action)] += n
        else:  # the batch straddles a minute
            for ts, _, _, (host, _, _, _, status, mtls, _, _, action, _) in records:
                minutes[(int(ts) // 60 * 60, host, mtls, status, action)] += 1
        hosts = {key[0] for key in keys}
        if len(hosts) == 1:
            host = hosts.pop()
            seconds = [s for s in map(_ORIGIN, records) if s is not None]
            if seconds:
                buckets = self.latency[host]
                for i, n in Counter(map(_bucket, seconds)).items():
                    buckets[i] += n
                self.latency_sum[host] += sum(seconds)
            return
        latency, latency_sum = self.latency, self.latency_sum
        for _, _, s, key in records:
            if s is not None:
                latency[key[0]][_bucket(s)] += 1
                latency_sum[key[0]] += s

    @staticmethod
    def _middle(key: Key) -> str:
        """The shared part of a line. The URI and the host are escaped (the host comes from the
        configuration, but is escaped anyway); the client is an address, llhttp admits only
        token methods, and status words, fingerprints and rule ids are fixed alphabets."""
        host, client, method, uri, status, mtls, fp, rule, action, why = key
        middle = _MIDDLE % (_quote(host), client, method.decode("latin-1"),
                            _quote(uri.decode("latin-1")[:2048]), status, mtls, fp, rule,
                            action)  # fmt: skip
        return middle + _REVOCATION % why if why else middle

    @staticmethod
    def _lines(records: list[Record], middles: dict[Key, str]) -> str:
        parts = []
        for ts, total, origin, key in records:
            if origin is None:
                parts.append(_LINE % (ts, middles[key], total * 1000))
            else:
                parts.append(_LINE_ORIGIN % (ts, middles[key], total * 1000, origin * 1000))
        return "".join(parts)

    @staticmethod
    def format(r: Record) -> str:
        """One JSON log line (with its newline)."""
        return Observer._lines([r], {r[3]: Observer._middle(r[3])})

    @staticmethod
    def as_dict(r: Record) -> dict[str, Any]:
        d: dict[str, Any] = json.loads(Observer.format(r))
        return d

    def flush_log(self) -> None:
        records = self.records
        if not records:
            return
        self.records = []
        keys = Counter(map(_KEY, records))
        self._count(records, keys)
        middle = self._middle
        self.out.write(self._lines(records, {key: middle(key) for key in keys}))
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
            "revocations": [[h, w, n] for (h, w), n in self.revocations.items()],
            "latency": latency,
            "latency_sum": dict(self.latency_sum),
            "latency_count": latency_count,
        }
        self.metrics_dir.mkdir(parents=True, exist_ok=True)
        path = self.metrics_dir / f"{self.node_id.replace(':', '-')}.json"
        tmp = path.with_suffix(".tmp")
        tmp.write_text(json.dumps(data))
        os.replace(tmp, path)
