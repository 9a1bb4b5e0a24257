"""Dashboard sessions: server-side, in the memory of the `serve` process, keyed by a random id.

The cookie carries only a random 256-bit session id; the API token stays on the server (never in a
cookie, a URL or a log line) and is re-checked on every request, so revoking the token ends the
session at once. The table holds the SHA-256 of the id, not the id itself.
"""

from __future__ import annotations

import hashlib
import hmac
import secrets
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field

IDLE_SECONDS = 30 * 60
ABSOLUTE_SECONDS = 12 * 60 * 60
MAX_SESSIONS = 10_000
# Sessions one API token may hold at once: signing in again and again with one token evicts
# that token's own oldest session, never other people's (the table-wide bound is a last resort).
MAX_PER_TOKEN = 20


def _key(session_id: str) -> str:
    return hashlib.sha256(session_id.encode()).hexdigest()


def new_secret() -> str:
    return secrets.token_urlsafe(32)


def same_secret(expected: str, given: object) -> bool:
    """Constant-time comparison of a CSRF token; anything but a non-empty string is a mismatch."""
    return isinstance(given, str) and bool(given) and hmac.compare_digest(expected, given)


@dataclass
class DashSession:
    api_token: str = field(repr=False)
    csrf: str = field(repr=False)
    zone_id: str | None
    created: float
    last_seen: float
    # One-shot notices for the next page ("Saved ...", upload warnings): plain words only.
    flashes: list[str] = field(default_factory=list)
    # A generated private key waiting for the "Certificate issued" page (certificate id -> PEM):
    # issuing redirects there (a reload never issues again) and the page takes the key out, so
    # it is shown once and is gone from the server's memory after that.
    issued_keys: dict[str, str] = field(default_factory=dict, repr=False)

    def pop_flashes(self) -> list[str]:
        out, self.flashes = self.flashes, []
        return out


class SessionStore:
    """Thread-safe (the dashboard's sync routes run in a thread pool)."""

    def __init__(self, *, clock: Callable[[], float] = time.monotonic) -> None:
        self._clock = clock
        self._lock = threading.Lock()
        self._sessions: dict[str, DashSession] = {}

    def _now(self) -> float:
        return self._clock()

    def create(self, api_token: str, zone_id: str | None) -> tuple[str, DashSession]:
        session_id = new_secret()
        now = self._now()
        sess = DashSession(
            api_token=api_token, csrf=new_secret(), zone_id=zone_id, created=now, last_seen=now
        )
        with self._lock:
            self._expire(now)
            mine = [
                k for k, s in self._sessions.items() if hmac.compare_digest(s.api_token, api_token)
            ]
            if len(mine) >= MAX_PER_TOKEN:
                del self._sessions[min(mine, key=lambda k: self._sessions[k].last_seen)]
            if len(self._sessions) >= MAX_SESSIONS:
                # Bounded memory: the least recently used session goes first.
                oldest = min(self._sessions, key=lambda k: self._sessions[k].last_seen)
                del self._sessions[oldest]
            self._sessions[_key(session_id)] = sess
        return session_id, sess

    def get(self, session_id: str | None) -> DashSession | None:
        if not session_id:
            return None
        now = self._now()
        with self._lock:
            sess = self._sessions.get(_key(session_id))
            if sess is None:
                return None
            if now - sess.last_seen > IDLE_SECONDS or now - sess.created > ABSOLUTE_SECONDS:
                del self._sessions[_key(session_id)]
                return None
            sess.last_seen = now
            return sess

    def delete(self, session_id: str | None) -> None:
        if session_id:
            with self._lock:
                self._sessions.pop(_key(session_id), None)

    def _expire(self, now: float) -> None:
        dead = [
            k
            for k, s in self._sessions.items()
            if now - s.last_seen > IDLE_SECONDS or now - s.created > ABSOLUTE_SECONDS
        ]
        for k in dead:
            del self._sessions[k]
