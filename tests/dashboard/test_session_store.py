"""The dashboard's session table: expiry, bounded size, ids stored hashed, CSRF comparison."""

from __future__ import annotations

import pytest

from mtlsgate.dashboard import sessions
from mtlsgate.dashboard.sessions import SessionStore, same_secret


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def test_idle_and_absolute_expiry() -> None:
    clock = Clock()
    store = SessionStore(clock=clock)
    sid, sess = store.create("secret-token", None)
    assert store.get(sid) is sess
    clock.now += sessions.IDLE_SECONDS - 1
    assert store.get(sid) is sess  # use keeps it alive
    clock.now += sessions.IDLE_SECONDS + 1
    assert store.get(sid) is None
    sid, _ = store.create("secret-token", None)
    for _ in range(sessions.ABSOLUTE_SECONDS // sessions.IDLE_SECONDS + 1):
        clock.now += sessions.IDLE_SECONDS - 1
        store.get(sid)
    assert store.get(sid) is None


def test_ids_are_stored_hashed_and_delete_ends_the_session() -> None:
    store = SessionStore()
    sid, _ = store.create("secret-token", "zone")
    assert sid not in store._sessions
    assert "secret-token" not in repr(store._sessions)
    store.delete(sid)
    assert store.get(sid) is None
    assert store.get("") is None and store.get(None) is None


def test_bounded(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(sessions, "MAX_SESSIONS", 3)
    clock = Clock()
    store = SessionStore(clock=clock)
    ids = []
    for _ in range(4):
        clock.now += 1
        ids.append(store.create("t", None)[0])
    assert store.get(ids[0]) is None  # the least recently used went first
    assert all(store.get(i) is not None for i in ids[1:])


def test_one_token_cannot_evict_the_others(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(sessions, "MAX_PER_TOKEN", 2)
    monkeypatch.setattr(sessions, "MAX_SESSIONS", 4)
    clock = Clock()
    store = SessionStore(clock=clock)
    others = [store.create(f"other-{i}", None)[0] for i in range(2)]
    mine = []
    for _ in range(10):  # one token signing in over and over
        clock.now += 1
        mine.append(store.create("flood", None)[0])
    assert all(store.get(i) is not None for i in others)
    assert [store.get(i) is not None for i in mine] == [False] * 8 + [True] * 2


def test_csrf_comparison() -> None:
    assert same_secret("abc", "abc")
    assert not same_secret("abc", "abd")
    assert not same_secret("abc", "")
    assert not same_secret("abc", None)
