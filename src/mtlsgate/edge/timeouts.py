"""The edge's timeouts (seconds), set with `mtlsgate serve|edge --*-timeout`.

Defaults follow nginx where it has one (client_header_timeout 60 s is long for an edge: 15 s, as
Envoy's request_headers_timeout is often set) and Cloudflare where it documents one (an origin
has 100 s to start its response there; 60 s here, as nginx's proxy_read_timeout).
"""

from __future__ import annotations

import os
from dataclasses import dataclass

# Tests and demos shorten the origin response timeout without a flag.
RESPONSE_TIMEOUT_ENV = "MTLSGATE_EDGE_RESPONSE_TIMEOUT"
MAX_SECONDS = 3600.0


@dataclass(frozen=True)
class EdgeTimeouts:
    idle: float = 60.0  # a keep-alive connection waiting for its next request
    header: float = 15.0  # a request head (or the handshake) still arriving
    origin_connect: float = 10.0  # connecting to an origin (TCP and TLS)
    origin_response: float = 60.0  # an origin's complete response after the request

    def __post_init__(self) -> None:
        for name in ("idle", "header", "origin_connect", "origin_response"):
            value = getattr(self, name)
            if not 0 < value <= MAX_SECONDS:
                raise ValueError(f"the {name.replace('_', ' ')} timeout must be between 0 and "
                                 f"{MAX_SECONDS:g} seconds, not {value!r}")  # fmt: skip

    @classmethod
    def with_env(cls, **values: float | None) -> EdgeTimeouts:
        """Given values (None: default), the origin response one from the environment when
        it is not given."""
        chosen = {k: v for k, v in values.items() if v is not None}
        raw = os.environ.get(RESPONSE_TIMEOUT_ENV, "")
        if "origin_response" not in chosen and raw:
            try:
                chosen["origin_response"] = float(raw)
            except ValueError:
                raise ValueError(f"{RESPONSE_TIMEOUT_ENV} must be a number of seconds") from None
        return cls(**chosen)
