"""TLS records on memory BIOs for the edge's client connections: two interchangeable paths.

**Fast path.** pyOpenSSL's public methods cost about 14 µs per request on the edge's hot path:
every `recv` that finds nothing raises WantReadError, every call allocates (and zeroes) a fresh
buffer, and each checks the error queue and the callbacks' stored exceptions. The fast path calls
the same OpenSSL functions directly (`BIO_write` → `SSL_read` into one buffer the worker owns,
`SSL_write` → `BIO_read`, `SSL_get_error` codes instead of exceptions), and verifies client
certificates with a raw verify callback that does nothing on success (pyOpenSSL's wrapper builds
an X509 object per chain element and allocates a callback per `set_verify`). It reaches OpenSSL
through pyOpenSSL's private attributes (`Connection._ssl`, `._into_ssl`, `._from_ssl`) and
`OpenSSL._util`: a dependency on internals, so
- the versions it was written and tested against are pinned exactly (pyproject.toml) and checked
  here: any other version falls back to the public path;
- it self-tests at start-up (an mTLS handshake with a good and a missing client certificate, data
  both ways, a close) and falls back if anything differs from what the public path gives;
- the public path stays complete and tested: `MTLSGATE_EDGE_TLS=public` selects it (the test
  suite runs the edge tests both ways), `fast` requires the fast path, `auto` (default) prefers it.

Everything else in the edge sees one interface: `Session.handshake/decrypt/encrypt/drain/
shutdown/verdict` and `Engine.new_session/set_verify`.
"""

from __future__ import annotations

import contextlib
import logging
import os
from collections.abc import Callable
from typing import Any

from OpenSSL import SSL

from mtlsgate.edge.tls import HandshakeState, verify_callback
from mtlsgate.pki.client_auth import Verdict

log = logging.getLogger("mtlsgate.edge")

# What the fast path was written against (pyproject.toml pins the same).
TESTED_VERSIONS = {"pyopenssl": "26.4.0", "cryptography": "50.0.2"}
ENV = "MTLSGATE_EDGE_TLS"

DONE, WANT, FAILED = 1, 0, -1
READ_SIZE = 16384  # one TLS record's plaintext at most
WRITE_SIZE = 256 * 1024  # ciphertext of a large write in one BIO_read, usually


class PublicSession:
    """pyOpenSSL's public API: the reference behaviour and the fallback."""

    __slots__ = ("conn", "eof", "state")
    fast = False

    def __init__(self, conn: SSL.Connection, state: HandshakeState) -> None:
        self.conn = conn
        self.state = state
        self.eof = False

    def handshake(self, data: bytes) -> int:
        conn = self.conn
        if data:
            conn.bio_write(data)
        try:
            conn.do_handshake()
        except SSL.WantReadError:
            return WANT
        except SSL.Error:
            return FAILED
        return DONE

    def decrypt(self, data: bytes) -> bytes:
        """Plaintext of the records in `data` (b"" if none is complete yet); `eof` is set when
        the peer closed (close_notify) or a record was bad."""
        conn = self.conn
        if data:
            conn.bio_write(data)  # (pyOpenSSL refuses an empty write)
        parts = []
        while True:
            try:
                chunk = conn.recv(READ_SIZE)
            except SSL.WantReadError:
                break
            except SSL.Error:  # ZeroReturnError included
                self.eof = True
                break
            if not chunk:
                break
            parts.append(chunk)
        return parts[0] if len(parts) == 1 else b"".join(parts)

    def encrypt(self, data: bytes) -> bytes:
        self.conn.sendall(data)
        return self.drain()

    def drain(self) -> bytes:
        parts = []
        while True:
            try:
                out = self.conn.bio_read(WRITE_SIZE)
            except SSL.WantReadError:
                break
            if not out:
                break
            parts.append(out)
        return b"".join(parts)

    def shutdown(self) -> bytes:
        with contextlib.suppress(SSL.Error):
            self.conn.shutdown()
        return self.drain()

    def verdict(self) -> Verdict:
        state = self.state
        leaf = self.conn.get_peer_certificate()
        if leaf is None:
            return Verdict(presented=False, verified=False)
        if state.called and state.error == 0:
            return Verdict(presented=True, verified=True)
        return Verdict.failed(state.error or 20, state.depth)

    def forget(self) -> None:
        pass


class Engine:
    """Creates sessions on one path for the life of a worker process."""

    def __init__(self, fast: bool) -> None:
        self.fast = fast
        self.name = "fast" if fast else "public"

    def new_session(self, context: SSL.Context, state: HandshakeState) -> Any:
        conn = SSL.Connection(context, None)
        conn.set_accept_state()
        conn.set_app_data(state)
        if self.fast:
            return _fast.FastSession(conn, state)
        return PublicSession(conn, state)

    def prepare_context(self, context: SSL.Context, request_client_cert: bool) -> None:
        """Give a context the verify callback of this path (build_context sets the public one)."""
        if self.fast and request_client_cert:
            _fast.set_ctx_verify(context)

    def set_verify(self, conn: SSL.Connection, request_client_cert: bool) -> None:
        """After an SNI switch of context: OpenSSL keeps the connection's verify mode, so it is
        set again for the new profile."""
        if self.fast:
            _fast.set_conn_verify(conn, request_client_cert)
        elif request_client_cert:
            conn.set_verify(SSL.VERIFY_PEER, verify_callback)
        else:
            conn.set_verify(SSL.VERIFY_NONE)


_fast: Any = None  # the fast path's module, imported only when usable


def _versions_match() -> str | None:
    import cryptography
    import OpenSSL

    found = {"pyopenssl": OpenSSL.__version__, "cryptography": cryptography.__version__}
    if found != TESTED_VERSIONS:
        return f"versions {found} differ from the tested {TESTED_VERSIONS}"
    return None


def tls_choice(choice: str | None = None) -> str:
    """`choice`, else MTLSGATE_EDGE_TLS, else "auto"; a ValueError names a bad value."""
    value = (choice or os.environ.get(ENV) or "auto").strip().lower()
    if value not in ("auto", "fast", "public"):
        raise ValueError(f"{ENV} must be auto, fast or public, not {value!r}")
    return value


def select_engine(
    self_test: Callable[[Engine], str | None] | None = None, choice: str | None = None
) -> Engine:
    """The engine a worker uses: the fast path when allowed, importable, at the tested versions
    and passing its self-test; otherwise the public path (logged once, with the reason)."""
    global _fast
    choice = tls_choice(choice)
    if choice == "public":
        return Engine(fast=False)
    reason = _versions_match()
    if reason is None:
        try:
            from mtlsgate.edge.runtime import tls_fast

            _fast = tls_fast
            reason = tls_fast.available()
        except Exception as e:  # an internal that moved: AttributeError, ImportError, ...
            reason = f"OpenSSL internals unavailable: {e!r}"
    if reason is None:
        engine = Engine(fast=True)
        test = self_test or default_self_test
        try:
            reason = test(engine)
        except Exception as e:  # a self-test that crashed is a failed self-test
            reason = f"self-test raised {e!r}"
        if reason is None:
            return engine
    if choice == "fast":
        raise RuntimeError(f"the fast TLS path was required ({ENV}=fast) but: {reason}")
    log.warning("edge TLS: using pyOpenSSL's public API (slower): %s", reason)
    return Engine(fast=False)


def default_self_test(engine: Engine) -> str | None:
    from mtlsgate.edge.runtime.tls_selftest import run_self_test

    return run_self_test(engine)


__all__ = [
    "DONE",
    "FAILED",
    "WANT",
    "Engine",
    "PublicSession",
    "select_engine",
]
