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
from collections.abc import Callable
from functools import partial
from json.encoder import encode_basestring_ascii as _quote
from operator import itemgetter
from pathlib import Path
from typing import TYPE_CHECKING, Any, TextIO

from mtlsgate.metrics import LATENCY_BUCKETS

if TYPE_CHECKING:
    from mtlsgate.edge.runtime.server import ClientConnection, Request

# The part of a line that repeats between requests (same host, client, URI, verdict, rule...) is
# formatted once per key; each line then adds only its timestamp and durations.
_MIDDLE = (
    '"host":%s,"client":"%s","method":"%s","uri":%s,"status":%d,"mtls":"%s",'
    '"fingerprint":"%s","rule":"%s","action":"%s"'
)
_LINE = '{"ts":%s,%s,"ms":%.2f}\n'
_LINE_ORIGIN = '{"ts":%s,%s,"ms":%.2f,"origin_ms":%.2f}\n'
EVENT_SAMPLE = 500  # the newest records offered to the events store per write, at most
# Past this many distinct keys the key <-> line-part maps start afresh (after a flush).
MAX_KEYS = 4096

# Added to the line of a request whose verified certificate is revoked: why (pki/revocation.py:
# "managed", "crl", "crl_stale", "crl_missing" or "denylist", a fixed alphabet).
_REVOCATION = ',"revocation":"%s"'
# host, client, method, uri, status, mtls, fingerprint, rule, action, revocation reason ("" when
# not revoked): what requests share.
Key = tuple[str, str, bytes, bytes, int, str, str, str, str, str]
# What a request leaves until the next flush: exactly the arguments of its line's format
# (_LINE: ts, middle, ms; _LINE_ORIGIN: the same and the origin's ms), so a batch of lines is
# formatted by one map() in C, with no Python code per line. The timestamp is text already:
# requests finished in the same millisecond share one string, formatted once.
Record = tuple[str, str, float] | tuple[str, str, float, float]
_MIDDLE_OF = itemgetter(1)
_FORMATS = {3: _LINE, 4: _LINE_ORIGIN}
_LATENCY_BUCKETS_MS = [bound * 1000 for bound in LATENCY_BUCKETS]
# A connection's last line part, for its next request forwarded by the same plan (server.py:
# _repeat) with the same status: (plan, status, the key maps' generation it was made in, host,
# middle). (A generation, not the map itself: an idle connection must not keep a map alive.)
LogMemo = tuple[Any, int, int, str, str]
NO_LOG_MEMO: LogMemo = (None, 0, -1, "", "")
_bucket_ms = partial(bisect_left, _LATENCY_BUCKETS_MS)


class Observer:
    def __init__(
        self,
        metrics_dir: Path | None,
        node_id: str,
        out: TextIO | None = None,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.metrics_dir = metrics_dir
        self.node_id = node_id
        self.out = out or sys.stderr
        # A monotonic clock for line timestamps; the worker passes its event loop's, which
        # uvloop reads once per loop iteration (millisecond steps): cheaper than time.time()
        # per request, and each step's text is formatted once (request_done).
        self.clock = clock
        self.wall_offset = time.time() - clock()  # (re-taken at each flush: no drift)
        self._last_clock = -1.0
        self._last_ts = ""
        self.records: list[Record] = []
        self.origin_ms: defaultdict[str, list[float]] = defaultdict(list)  # of the records
        # The shared part of a line per key, and back (counters are per key).
        self.middles: dict[Key, str] = {}
        self.keys: dict[str, Key] = {}
        self.generation = 0  # of the two maps: incremented each time they start afresh
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
        plan = req.plan
        memo = conn.log_memo
        if (
            plan is not None
            and memo[0] is plan
            and memo[1] == req.status
            and memo[2] == self.generation
        ):
            # A request forwarded as the connection's previous one was (same head, snapshot and
            # verdict: everything the key holds but the status, compared here).
            host, middle = memo[3], memo[4]
        else:
            host, middle = self._key(conn, req)
            if plan is not None:
                conn.log_memo = (plan, req.status, self.generation, host, middle)
        now = self.clock()
        if now == self._last_clock:
            ts = self._last_ts
        else:
            ts = self._last_ts = "%.3f" % (now + self.wall_offset)
            self._last_clock = now
        origin = req.origin_seconds
        if origin is None:
            self.records.append((ts, middle, (time.monotonic() - req.started) * 1000))
        else:
            origin_ms = origin * 1000
            self.records.append((ts, middle, (time.monotonic() - req.started) * 1000, origin_ms))
            self.origin_ms[host].append(origin_ms)

    def _key(self, conn: ClientConnection, req: Request) -> tuple[str, str]:
        """The request's host and the shared part of its line (formatted once per key)."""
        verdict = conn.verdict
        # What the line says of the client certificate changes with the verdict only: kept on
        # the connection as (verdict, mtls status, fingerprint, revocation reason).
        ident = conn.log_ident
        if ident is None or ident[0] is not verdict:
            ident = conn.log_ident = (
                (verdict, verdict.status, conn.fingerprint(),
                 verdict.reason if verdict.revoked else "")
                if verdict is not None else (None, "none", "", "")
            )  # fmt: skip
        facts = req.facts
        # The host is the configuration's (never the client's SNI or Host header): the
        # profile the request was judged by (the connection's in the current snapshot when its
        # rules were decided per connection; the handshake's when there was none).
        host = (facts.profile if facts is not None else conn.profile or conn.state.profile).hostname
        key = (
            host, conn.peer, req.method, req.url, req.status, ident[1], ident[2], req.rule_id,
            req.action or "forward", ident[3],
        )  # fmt: skip
        middle = self.middles.get(key)
        if middle is None:
            middle = self.middles[key] = self._middle(key)
            self.keys[middle] = key
        return host, middle

    def _count(self, records: list[Record], keys: Counter[Key]) -> None:
        """Counters from a batch: per distinct key (requests of a batch share few keys), and the
        origin latencies the batch's requests left per host."""
        requests, rules, minutes = self.requests, self.rules, self.minute_counts
        for (host, _, _, _, status, _, _, rule, action, why), n in keys.items():
            requests[(host, status, action)] += n
            if rule:
                rules[(host, action, rule)] += n
            if why:
                self.revocations[(host, why)] += n
        minute = int(float(records[0][0])) // 60 * 60
        if int(float(records[-1][0])) // 60 * 60 == minute:
            for (host, _, _, _, status, mtls, _, _, action, _), n in keys.items():
                minutes[(minute, host, mtls, status, action)] += n
        else:  # the batch straddles a minute
            for r in records:
                host, _, _, _, status, mtls, _, _, action, _ = self.keys[r[1]]
                minutes[(int(float(r[0])) // 60 * 60, host, mtls, status, action)] += 1
        for host, ms in self.origin_ms.items():
            buckets = self.latency[host]
            for i, n in Counter(map(_bucket_ms, ms)).items():
                buckets[i] += n
            self.latency_sum[host] += sum(ms) / 1000
        self.origin_ms.clear()

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
    def format(r: Record) -> str:
        """One JSON log line (with its newline)."""
        return _FORMATS[len(r)] % r

    @staticmethod
    def as_dict(r: Record) -> dict[str, Any]:
        d: dict[str, Any] = json.loads(Observer.format(r))
        return d

    def flush_log(self) -> None:
        records = self.records
        if not records:
            return
        self.records = []
        self.wall_offset = time.time() - self.clock()
        keys_of = self.keys
        keys = Counter({keys_of[m]: n for m, n in Counter(map(_MIDDLE_OF, records)).items()})
        self._count(records, keys)
        # Each record's format by its length, and the lines: all in C.
        formats = map(_FORMATS.__getitem__, map(len, records))
        self.out.write("".join(map(str.__mod__, formats, records)))
        self.out.flush()
        if len(self.middles) > MAX_KEYS:  # (the records just written were the last users)
            self.middles.clear()
            keys_of.clear()
            self.generation += 1  # (connections' memos of parts from before are stale)
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
