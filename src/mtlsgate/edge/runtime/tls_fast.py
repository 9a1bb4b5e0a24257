"""The fast TLS path: OpenSSL called directly on a pyOpenSSL Connection's memory BIOs.

The only module of mtlsgate that touches pyOpenSSL's internals (see tls_engine.py for why, the
version pins, the self-test and the fallback). Buffers belong to the worker process, not to a
connection: one read buffer and one write buffer, copied out of with `ffi.unpack`.
"""

from __future__ import annotations

from typing import Any

from OpenSSL import SSL
from OpenSSL._util import ffi as _ffi
from OpenSSL._util import lib as _lib

from mtlsgate.edge.tls import FORGIVEN_ERRORS, HandshakeState
from mtlsgate.pki.client_auth import Verdict

READ_SIZE = 16384
WRITE_SIZE = 256 * 1024

_SSL_read = _lib.SSL_read
_SSL_write = _lib.SSL_write
_SSL_get_error = _lib.SSL_get_error
_SSL_do_handshake = _lib.SSL_do_handshake
_BIO_write = _lib.BIO_write
_BIO_read = _lib.BIO_read
_BIO_pending = _lib.BIO_get_mem_data  # (a memory BIO's byte count; NULL: no data pointer wanted)
_ERR_clear_error = _lib.ERR_clear_error
_unpack = _ffi.unpack  # (bytes of a char array: one call, half the cost of buffer()[:])
_WANT_READ = _lib.SSL_ERROR_WANT_READ
_NULL = _ffi.NULL

_RBUF = _ffi.new("char[]", READ_SIZE)
_WBUF = _ffi.new("char[]", WRITE_SIZE)

# The two common verdicts, shared (Verdict is frozen): one object fewer per mTLS handshake.
_VERIFIED = Verdict(presented=True, verified=True)
_ABSENT = Verdict(presented=False, verified=False)

# Chain failures the raw verify callback saw, by the address of the connection's SSL*: the first
# one that is not forgiven. Written during a handshake, taken by verdict(), dropped by forget().
_FAILURES: dict[int, tuple[int, int]] = {}
_SSL_IDX = _lib.SSL_get_ex_data_X509_STORE_CTX_idx()


def _raw_verify(ok: int, store: Any) -> int:
    # Called by OpenSSL for every chain element; must never raise. It accepts (the handshake
    # completes whatever the client sends: rules decide) once the failure is recorded.
    if ok:
        return 1
    try:
        error = _lib.X509_STORE_CTX_get_error(store)
        if error not in FORGIVEN_ERRORS:
            ssl = _lib.X509_STORE_CTX_get_ex_data(store, _SSL_IDX)
            key = int(_ffi.cast("uintptr_t", ssl))
            if key not in _FAILURES:
                _FAILURES[key] = (error, _lib.X509_STORE_CTX_get_error_depth(store))
        # As pyOpenSSL's wrapper does when its callback accepts: the chain is taken as valid.
        _lib.X509_STORE_CTX_set_error(store, _lib.X509_V_OK)
    except Exception:
        return 0  # could not record the failure: fail the handshake, never "verified"
    return 1


_RAW_VERIFY = _ffi.callback("int(int, X509_STORE_CTX *)", _raw_verify)


def available() -> str | None:
    """None when every internal the fast path uses is where it expects; else what is missing."""
    probe = SSL.Connection(SSL.Context(SSL.TLS_SERVER_METHOD), None)
    for attr in ("_ssl", "_into_ssl", "_from_ssl"):
        if getattr(probe, attr, None) is None:
            return f"pyOpenSSL Connection has no {attr}"
    return None


def set_ctx_verify(context: SSL.Context) -> None:
    _lib.SSL_CTX_set_verify(context._context, _lib.SSL_VERIFY_PEER, _RAW_VERIFY)


def set_conn_verify(conn: SSL.Connection, request_client_cert: bool) -> None:
    if request_client_cert:
        _lib.SSL_set_verify(conn._ssl, _lib.SSL_VERIFY_PEER, _RAW_VERIFY)
    else:
        _lib.SSL_set_verify(conn._ssl, _lib.SSL_VERIFY_NONE, _NULL)


class FastSession:
    __slots__ = ("conn", "eof", "key", "rbio", "ssl", "state", "wbio")
    fast = True

    def __init__(self, conn: SSL.Connection, state: HandshakeState) -> None:
        self.conn = conn  # owns the SSL* and its BIOs (freed with it)
        self.state = state
        self.ssl = conn._ssl
        self.rbio = conn._into_ssl
        self.wbio = conn._from_ssl
        self.key = int(_ffi.cast("uintptr_t", self.ssl))
        _FAILURES.pop(self.key, None)  # a freed connection's, whose SSL* had this address
        self.eof = False

    def handshake(self, data: bytes) -> int:
        ssl = self.ssl
        _BIO_write(self.rbio, data, len(data))
        r = _SSL_do_handshake(ssl)
        if r == 1:
            return 1
        if _SSL_get_error(ssl, r) == _WANT_READ:
            return 0
        _ERR_clear_error()
        return -1

    def decrypt(self, data: bytes) -> bytes:
        ssl = self.ssl
        _BIO_write(self.rbio, data, len(data))
        n = _SSL_read(ssl, _RBUF, READ_SIZE)
        if n <= 0:
            self._read_error(n)
            return b""
        out: bytes = _unpack(_RBUF, n)
        if not _BIO_pending(self.rbio, _NULL):
            # OpenSSL takes one record at a time from the BIO (no read-ahead): with the BIO empty
            # nothing is left to read, and the usual case skips a read that would only fail.
            return out
        # More records arrived together (pipelining): read until OpenSSL wants more.
        n = _SSL_read(ssl, _RBUF, READ_SIZE)
        if n <= 0:
            self._read_error(n)
            return out
        parts = [out]
        while n > 0:
            parts.append(_unpack(_RBUF, n))
            n = _SSL_read(ssl, _RBUF, READ_SIZE)
        self._read_error(n)
        return b"".join(parts)

    def _read_error(self, n: int) -> None:
        if _SSL_get_error(self.ssl, n) != _WANT_READ:
            # close_notify (ZERO_RETURN) or a bad record: the connection is over.
            _ERR_clear_error()
            self.eof = True

    def encrypt(self, data: bytes) -> bytes:
        size = len(data)
        n = _SSL_write(self.ssl, data, size)
        if n < size:
            # pyOpenSSL's contexts enable partial writes: one record (16 KiB) per call.
            buf = _ffi.from_buffer(data)
            total = n
            while n > 0 and total < size:
                n = _SSL_write(self.ssl, buf + total, size - total)
                total += n
            if n <= 0:
                _ERR_clear_error()
                self.eof = True
                return b""
        # drain(), inline for the common case (one Python call fewer per response).
        n = _BIO_read(self.wbio, _WBUF, WRITE_SIZE)
        if n <= 0:
            return b""
        out: bytes = _unpack(_WBUF, n)
        if n < WRITE_SIZE:
            return out
        return self._rest(out)

    def drain(self) -> bytes:
        n = _BIO_read(self.wbio, _WBUF, WRITE_SIZE)
        if n <= 0:
            return b""
        out: bytes = _unpack(_WBUF, n)
        if n < WRITE_SIZE:
            return out
        return self._rest(out)

    def _rest(self, first: bytes) -> bytes:
        """`first` (a full buffer of ciphertext) and what is left in the BIO after it."""
        parts = [first]
        n = WRITE_SIZE
        while n == WRITE_SIZE:
            n = _BIO_read(self.wbio, _WBUF, WRITE_SIZE)
            if n > 0:
                parts.append(_unpack(_WBUF, n))
        return b"".join(parts)

    def shutdown(self) -> bytes:
        if _lib.SSL_shutdown(self.ssl) < 0:
            _ERR_clear_error()
        return self.drain()

    def verdict(self) -> Verdict:
        failure = _FAILURES.pop(self.key, None)
        x509 = _lib.SSL_get_peer_certificate(self.ssl)
        if x509 == _NULL:
            return _ABSENT
        _lib.X509_free(x509)
        if failure is None and _lib.SSL_session_reused(self.ssl):
            # A resumed session skipped verification (contexts forbid resumption; should one
            # happen anyway, its certificate is not taken as verified).
            return Verdict.failed(20, 0)
        if failure is None:
            return _VERIFIED
        return Verdict.failed(failure[0], failure[1])

    def forget(self) -> None:
        """The connection is gone: a failure recorded for a handshake that never finished must
        not be found by a later connection whose SSL* has the same address."""
        _FAILURES.pop(self.key, None)
