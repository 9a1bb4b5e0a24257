"""How the API and the edge agree that a change has reached every running edge (pure figures).

The API calls a managed certificate's revocation done (`revoked`, and the same for a
reactivation) once every *running* edge node has reported the config version that carries it
(services/client_certificates.py `settle`). A node that stops reporting (stopped, killed, frozen,
cut off from the store) stops counting as running after RUNNING_WINDOW without a heartbeat. So
that forgetting such a node can never let a revoked certificate through, a worker that has not
confirmed its configuration for FENCE_AFTER answers every request with 503 until it has (every
hostname: one its stale configuration serves without mTLS may have been given an association
since; edge/runtime/server.py, worker.py): by the time the API stops waiting for a node, the
node has fenced itself, even if it was merely frozen and wakes up later.

The margins: a worker confirms its configuration with each heartbeat, at least every
HEARTBEAT_INTERVAL; on PostgreSQL what it confirms may be up to the safety poll (2 s) old. A node
last heard of at H has fenced itself by H + FENCE_AFTER + 2 s, well before H + RUNNING_WINDOW.
Durations are measured on each side's own monotonic clock and compared against the store's clock
(heartbeat times are the database's), so clocks that disagree between machines do not matter.

MTLSGATE_EDGE_HEARTBEAT_INTERVAL scales all three together (tests use it to run in seconds); the
API process and the edge processes must see the same value.
"""

from __future__ import annotations

import os

HEARTBEAT_INTERVAL_ENV = "MTLSGATE_EDGE_HEARTBEAT_INTERVAL"


def heartbeat_interval() -> float:
    raw = os.environ.get(HEARTBEAT_INTERVAL_ENV)
    try:
        value = float(raw) if raw else 2.0
    except ValueError:
        value = 2.0
    return value if 0.05 <= value <= 60 else 2.0


HEARTBEAT_INTERVAL = heartbeat_interval()
FENCE_AFTER = 4 * HEARTBEAT_INTERVAL  # 8 s by default
RUNNING_WINDOW = 7.5 * HEARTBEAT_INTERVAL  # 15 s by default
