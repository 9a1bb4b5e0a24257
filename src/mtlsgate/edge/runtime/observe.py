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

if TYPE_CHECKING:
    from mtlsgate.edge.runtime.server import ClientConnection, Request

# Upper bounds (seconds) of the origin latency histogram buckets.
LATENCY_BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0)
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


def _labels(**kv: object) -> str:
    def esc(v: object) -> str:
        return str(v).replace("\\", "\\\\").replace('"', '\\"').replace("\n", "\\n")

    return "{" + ",".join(f'{k}="{esc(v)}"' for k, v in kv.items()) + "}"


def render_prometheus(metrics_dir: Path) -> str:
    """Sum every worker's counters into the Prometheus text format."""
    handshakes: Counter[tuple[str, str]] = Counter()
    requests: Counter[tuple[str, int, str]] = Counter()
    rules: Counter[tuple[str, str, str]] = Counter()
    latency: Counter[tuple[str, float]] = Counter()
    lsum: defaultdict[str, float] = defaultdict(float)
    lcount: Counter[str] = Counter()
    for path in sorted(metrics_dir.glob("*.json")) if metrics_dir.exists() else []:
        try:
            data = json.loads(path.read_text())
        except (OSError, ValueError):
            continue  # a file being replaced: next scrape
        for h, s, n in data.get("handshakes", []):
            handshakes[(h, s)] += n
        for h, st, a, n in data.get("requests", []):
            requests[(h, st, a)] += n
        for h, a, r, n in data.get("rules", []):
            rules[(h, a, r)] += n
        for h, b, n in data.get("latency", []):
            latency[(h, b)] += n
        for h, v in data.get("latency_sum", {}).items():
            lsum[h] += v
        lcount.update(data.get("latency_count", {}))
    out: list[str] = []

    def family(name: str, kind: str, text: str) -> None:
        out.extend([f"# HELP {name} {text}", f"# TYPE {name} {kind}"])

    family("mtlsgate_edge_handshakes_total", "counter", "TLS handshakes by client-cert status.")
    for (h, s), n in sorted(handshakes.items()):
        out.append(f"mtlsgate_edge_handshakes_total{_labels(hostname=h, mtls_status=s)} {n}")
    family("mtlsgate_edge_requests_total", "counter", "Requests by status and action.")
    for (h, st, a), n in sorted(requests.items()):
        out.append(f"mtlsgate_edge_requests_total{_labels(hostname=h, status=st, action=a)} {n}")
    family("mtlsgate_edge_rule_actions_total", "counter", "Firewall rule matches.")
    for (h, a, r), n in sorted(rules.items()):
        labels = _labels(hostname=h, action=a, rule_id=r)
        out.append(f"mtlsgate_edge_rule_actions_total{labels} {n}")
    name = "mtlsgate_edge_origin_latency_seconds"
    family(name, "histogram", "From sending a request to the origin to the end of its response.")
    for host in sorted(lcount):
        for bound in LATENCY_BUCKETS:
            count = latency[(host, bound)]
            out.append(f"{name}_bucket{_labels(hostname=host, le=bound)} {count}")
        out.append(f"{name}_bucket{_labels(hostname=host, le='+Inf')} {lcount[host]}")
        out.append(f"{name}_sum{_labels(hostname=host)} {lsum[host]}")
        out.append(f"{name}_count{_labels(hostname=host)} {lcount[host]}")
    return "\n".join(out) + "\n"
