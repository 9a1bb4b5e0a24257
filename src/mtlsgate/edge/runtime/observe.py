"""What the edge tells the rest: one JSON line per request, and counters for /metrics.

Log lines are buffered and written together every 200 ms (one write instead of one per
request). Counters live in the worker and are written to DATA_DIR/metrics/<node>.json every
second; the API's /metrics sums the files of all workers into Prometheus text.
"""

from __future__ import annotations

import json
import os
import sys
import time
from collections import Counter, defaultdict
from pathlib import Path
from typing import TYPE_CHECKING, Any, TextIO

from mtlsgate.metrics import LATENCY_BUCKETS

if TYPE_CHECKING:
    from mtlsgate.edge.runtime.server import ClientConnection, Request

FINGERPRINT = "cf.tls_client_auth.cert_fingerprint_sha256"


class Observer:
    def __init__(self, metrics_dir: Path | None, node_id: str, out: TextIO | None = None) -> None:
        self.metrics_dir = metrics_dir
        self.node_id = node_id
        self.out = out or sys.stderr
        self.lines: list[str] = []
        self.handshakes: Counter[tuple[str, str]] = Counter()
        self.requests: Counter[tuple[str, int, str]] = Counter()
        self.rules: Counter[tuple[str, str, str]] = Counter()
        self.latency: Counter[tuple[str, float]] = Counter()
        self.latency_sum: defaultdict[str, float] = defaultdict(float)
        self.latency_count: Counter[str] = Counter()

    def handshake(self, hostname: str, mtls_status: str) -> None:
        self.handshakes[(hostname, mtls_status)] += 1

    def request_done(self, conn: ClientConnection, req: Request) -> None:
        facts = conn.cert_facts
        mtls = facts.verdict.status if facts is not None else "none"
        host = req.facts.profile.hostname if req.facts is not None else (conn.state.sni or "")
        action = req.action or "forward"
        total = time.monotonic() - req.started
        self.requests[(host, req.status, action)] += 1
        if req.rule_id:
            self.rules[(host, action, req.rule_id)] += 1
        if req.origin_seconds is not None:
            for bound in LATENCY_BUCKETS:
                if req.origin_seconds <= bound:
                    self.latency[(host, bound)] += 1
            self.latency_sum[host] += req.origin_seconds
            self.latency_count[host] += 1
        record: dict[str, Any] = {
            "ts": round(time.time(), 3),
            "host": host,
            "client": str(conn.peer_ip),
            "method": req.method.decode("latin-1"),
            "uri": req.url.decode("latin-1")[:2048],
            "status": req.status,
            "mtls": mtls,
            "fingerprint": facts.get(FINGERPRINT) if facts is not None else "",
            "rule": req.rule_id,
            "action": action,
            "ms": round(total * 1000, 2),
        }
        if req.origin_seconds is not None:
            record["origin_ms"] = round(req.origin_seconds * 1000, 2)
        self.lines.append(json.dumps(record, separators=(",", ":")))

    def flush_log(self) -> None:
        if self.lines:
            self.out.write("\n".join(self.lines) + "\n")
            self.out.flush()
            self.lines.clear()

    def dump_metrics(self) -> None:
        if self.metrics_dir is None:
            return
        data = {
            "handshakes": [[h, s, n] for (h, s), n in self.handshakes.items()],
            "requests": [[h, st, a, n] for (h, st, a), n in self.requests.items()],
            "rules": [[h, a, r, n] for (h, a, r), n in self.rules.items()],
            "latency": [[h, b, n] for (h, b), n in self.latency.items()],
            "latency_sum": dict(self.latency_sum),
            "latency_count": dict(self.latency_count),
        }
        self.metrics_dir.mkdir(parents=True, exist_ok=True)
        path = self.metrics_dir / f"{self.node_id.replace(':', '-')}.json"
        tmp = path.with_suffix(".tmp")
        tmp.write_text(json.dumps(data))
        os.replace(tmp, path)
