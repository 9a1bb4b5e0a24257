"""One settings object: where the data lives, which database, where to listen.

Flags override environment variables (MTLSGATE_*), which override defaults.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

DEFAULT_API_LISTEN = "127.0.0.1:8080"
DEFAULT_EDGE_LISTEN = "127.0.0.1:8443"
PLANS = ("free", "pro", "business", "enterprise")


@dataclass(frozen=True)
class Settings:
    data_dir: Path
    database_url: str

    @classmethod
    def load(cls, data_dir: str | Path | None, database_url: str | None = None) -> Settings:
        raw_dir = data_dir or os.environ.get("MTLSGATE_DATA_DIR") or "./data"
        path = Path(raw_dir).resolve()
        url = database_url or os.environ.get("MTLSGATE_DATABASE_URL") or ""
        if not url:
            url = f"sqlite:///{path / 'mtlsgate.db'}"
        return cls(data_dir=path, database_url=normalize_database_url(url))

    @property
    def is_sqlite(self) -> bool:
        return self.database_url.startswith("sqlite")


def normalize_database_url(url: str) -> str:
    """Accept the libpq-style URLs people paste and use the psycopg 3 driver for them."""
    for prefix in ("postgres://", "postgresql://"):
        if url.startswith(prefix):
            return "postgresql+psycopg://" + url[len(prefix) :]
    return url


def parse_listen(value: str) -> tuple[str, int]:
    """Parse HOST:PORT (IPv6 as [::1]:PORT); raise ValueError with a readable message."""
    host, sep, port = value.rpartition(":")
    if not sep or not host or not port.isdigit() or not 0 < int(port) < 65536:
        raise ValueError(f"expected HOST:PORT, got {value!r}")
    return host.strip("[]"), int(port)
