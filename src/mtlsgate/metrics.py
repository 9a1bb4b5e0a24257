"""The edge workers' counters as files, and their sum in Prometheus's text format.

Shared by the edge (which writes DATA_DIR/metrics/<node>.json) and the API (whose /metrics
reads them): neither imports the other, they meet in the data dir.
"""

from __future__ import annotations

import json
from collections import Counter, defaultdict
from pathlib import Path

# Upper bounds (seconds) of the origin latency histogram buckets.
LATENCY_BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0)


def _labels(**kv: object) -> str:
    def esc(v: object) -> str:
        return str(v).replace("\\", "\\\\").replace('"', '\\"').replace("\n", "\\n")

    return "{" + ",".join(f'{k}="{esc(v)}"' for k, v in kv.items()) + "}"


def render_prometheus(metrics_dir: Path) -> str:
    """Sum every worker's counters into the Prometheus text format."""
    handshakes: Counter[tuple[str, str]] = Counter()
    requests: Counter[tuple[str, int, str]] = Counter()
    rules: Counter[tuple[str, str, str]] = Counter()
    revocations: Counter[tuple[str, str]] = Counter()
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
        for h, w, n in data.get("revocations", []):
            revocations[(h, w)] += n
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
    family(
        "mtlsgate_edge_revoked_requests_total",
        "counter",
        "Requests with a verified but revoked client certificate, by revocation reason.",
    )
    for (h, w), n in sorted(revocations.items()):
        labels = _labels(hostname=h, reason=w)
        out.append(f"mtlsgate_edge_revoked_requests_total{labels} {n}")
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
