"""The CRL scheduler: fetches uploaded CAs' CRLs over http:// and tells the edge when a CRL
goes stale. It runs in the `serve` process (one thread beside the API), never in edge workers:
one fetch per CA instead of one per worker, and the edge keeps reading only the store.

Every TICK seconds (two threads, so a slow fetch never delays a stale notice) it:
1. fetches the CRLs that are due (fetch enabled and `next_fetch_at` passed), conditionally
   (If-None-Match / If-Modified-Since from the previous answer), bounded by FETCH_TIMEOUT and
   MAX_CRL_BYTES, without following redirects; a CRL that passes pki/crl.py's checks and the
   replacement rule is stored (and the config version bumped by services/crls.store_crl).
   The next fetch is due at the CRL's nextUpdate or after FETCH_INTERVAL, whichever is first
   (RETRY_INTERVAL after a failure, or when the published CRL is still stale);
2. bumps the config version once when a fail_closed CA's CRL passes its nextUpdate, so the edge
   rebuilds its revocation index and starts treating that CA's clients as revoked within about
   TICK seconds, with no API call (`stale_noticed` records the nextUpdate already announced).

Several `serve` processes on one PostgreSQL store each run a scheduler: a due fetch is claimed
in a transaction first (its `next_fetch_at` pushed past the fetch's own time limit), so one
process fetches it; an extra stale bump would only cost a rebuild.
"""

from __future__ import annotations

import contextlib
import http.client
import logging
import os
import socket
import threading
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from urllib.parse import urlsplit

from sqlalchemy import select
from sqlalchemy.orm import Session

from mtlsgate.errors import MtlsgateError
from mtlsgate.pki.crl import CrlError, is_stale, parse_crl
from mtlsgate.services.crls import ca_certificate, fetch_urls, store_crl
from mtlsgate.store.db import Store, bump_config_version
from mtlsgate.store.models import MtlsCertificate, UploadedCaCrl, UploadedCaRevocationSetting

log = logging.getLogger("mtlsgate.crl")

TICK = 1.0  # seconds between scheduler passes
FETCH_TIMEOUT = 10.0  # seconds for a whole fetch (connect, headers and body)
MAX_CRL_BYTES = 10 * 1024 * 1024
FETCH_INTERVAL = timedelta(hours=1)  # at most this long between fetches of a fresh CRL
RETRY_INTERVAL = timedelta(minutes=5)  # after a failed fetch, or a still-stale published CRL
CLAIM = timedelta(seconds=FETCH_TIMEOUT * 3)  # how long a claimed fetch is held
# Tests shorten the intervals (seconds); operators may too.
FETCH_INTERVAL_ENV = "MTLSGATE_CRL_FETCH_INTERVAL"
RETRY_INTERVAL_ENV = "MTLSGATE_CRL_RETRY_INTERVAL"


def _interval(env: str, default: timedelta) -> timedelta:
    raw = os.environ.get(env)
    try:
        return timedelta(seconds=float(raw)) if raw else default
    except ValueError:
        log.warning("ignoring %s=%r (not a number of seconds)", env, raw)
        return default


@dataclass(frozen=True)
class FetchResult:
    status: int  # 200 or 304
    body: bytes
    etag: str | None
    last_modified: str | None


class FetchError(Exception):
    pass


def fetch(
    url: str,
    *,
    etag: str | None = None,
    last_modified: str | None = None,
    timeout: float = FETCH_TIMEOUT,
    max_bytes: int = MAX_CRL_BYTES,
) -> FetchResult:
    """GET an http:// URL, conditionally; no redirects, bounded in time and size.

    `timeout` bounds the whole fetch, not each read: a watchdog shuts the socket down at the
    deadline, so a server trickling its headers or body a byte at a time cannot hold the
    scheduler."""
    parts = urlsplit(url)
    if parts.scheme.lower() != "http" or not parts.hostname:
        raise FetchError(f"not an http:// URL: {url}")
    path = (parts.path or "/") + (f"?{parts.query}" if parts.query else "")
    conn = http.client.HTTPConnection(parts.hostname, parts.port or 80, timeout=timeout)
    expired = threading.Event()
    # The socket itself, not conn.sock: a response without a length takes the connection's
    # socket over and conn.sock becomes None while the body is still being read.
    sockets: list[socket.socket] = []

    def cut() -> None:
        expired.set()
        for sock in sockets:
            with contextlib.suppress(OSError):
                sock.shutdown(socket.SHUT_RDWR)

    watchdog = threading.Timer(timeout, cut)
    watchdog.daemon = True
    watchdog.start()
    too_slow = FetchError(f"the fetch took longer than {timeout:g} s")
    try:
        headers = {"User-Agent": "mtlsgate-crl-fetcher", "Accept": "application/pkix-crl, */*"}
        if etag:
            headers["If-None-Match"] = etag
        if last_modified:
            headers["If-Modified-Since"] = last_modified
        conn.connect()
        if conn.sock is not None:
            sockets.append(conn.sock)
        if expired.is_set():
            raise too_slow
        conn.request("GET", path, headers=headers)
        resp = conn.getresponse()
        if resp.status == 304:
            return FetchResult(304, b"", etag, last_modified)
        if resp.status != 200:
            extra = " (redirects are not followed)" if 300 <= resp.status < 400 else ""
            raise FetchError(f"HTTP {resp.status} {resp.reason}{extra}")
        declared = resp.getheader("Content-Length")
        if declared and declared.isdigit() and int(declared) > max_bytes:
            raise FetchError(f"the CRL is larger than {max_bytes} bytes")
        chunks: list[bytes] = []
        size = 0
        while chunk := resp.read1(65536):
            if expired.is_set():
                raise too_slow
            size += len(chunk)
            if size > max_bytes:
                raise FetchError(f"the CRL is larger than {max_bytes} bytes")
            chunks.append(chunk)
        if expired.is_set():  # the watchdog ended the body early: it is not the whole CRL
            raise too_slow
        return FetchResult(
            200, b"".join(chunks), resp.getheader("ETag"), resp.getheader("Last-Modified")
        )
    except (OSError, http.client.HTTPException) as exc:
        if expired.is_set():
            raise too_slow from None
        raise FetchError(f"{type(exc).__name__}: {exc}") from None
    finally:
        watchdog.cancel()
        conn.close()


@dataclass(frozen=True)
class _Due:
    cert_id: str
    urls: list[str]
    etag: str | None
    last_modified: str | None


def _claim_due(session: Session, now: datetime) -> list[_Due]:
    rows = session.scalars(
        select(UploadedCaRevocationSetting)
        .where(
            UploadedCaRevocationSetting.fetch.is_(True),
            UploadedCaRevocationSetting.next_fetch_at <= now,
        )
        .with_for_update(skip_locked=True)
    ).all()
    due = []
    for setting in rows:
        cert = session.get(MtlsCertificate, setting.mtls_certificate_id)
        if cert is None:
            continue
        setting.next_fetch_at = now + CLAIM
        due.append(
            _Due(
                cert.id,
                fetch_urls(cert, setting.fetch_url),
                setting.fetch_etag,
                setting.fetch_last_modified,
            )
        )
    return due


def _fetch_one(store: Store, due: _Due) -> None:
    """Try the CA's URLs in order; record the outcome and when to fetch next."""
    status = "error: no http:// URL to fetch from"
    result: FetchResult | None = None
    used: str | None = None
    for url in due.urls:
        try:
            result = fetch(url, etag=due.etag, last_modified=due.last_modified)
            used = url
            break
        except FetchError as exc:
            status = f"error: {url}: {exc}"
    retry = _interval(RETRY_INTERVAL_ENV, RETRY_INTERVAL)
    now = datetime.now(UTC)
    with store.transaction() as session:
        setting = session.get(UploadedCaRevocationSetting, due.cert_id)
        cert = session.get(MtlsCertificate, due.cert_id)
        if setting is None or cert is None or not setting.fetch:
            return  # deleted or switched off meanwhile
        next_at = now + retry
        if result is not None and result.status == 304:
            status = "not modified"
        elif result is not None:
            try:
                parsed = parse_crl(result.body, ca_certificate(cert), now=now)
                changed = store_crl(session, cert, parsed, source="fetched", url=used, now=now)
                status = (
                    f"stored CRL number {parsed.crl_number}"
                    if changed
                    else f"unchanged (CRL number {parsed.crl_number})"
                )
                setting.fetch_etag = result.etag
                setting.fetch_last_modified = result.last_modified
            except CrlError as exc:
                status = f"refused: {exc.message}"
            except MtlsgateError as exc:  # the replacement rule (an older CRL was published)
                status = f"refused: {exc.message}"
        fine = status.startswith(("stored", "unchanged", "not modified"))
        if fine:
            crl = session.get(UploadedCaCrl, cert.id)
            next_at = now + _interval(FETCH_INTERVAL_ENV, FETCH_INTERVAL)
            if crl is not None and crl.next_update is not None:
                # Fetch at nextUpdate; a CRL already past it is re-tried sooner.
                next_at = min(next_at, max(crl.next_update, now + retry))
                if is_stale(crl.next_update, now):
                    fine = False
                    status += (
                        f"; the published CRL is stale (nextUpdate "
                        f"{crl.next_update.strftime('%Y-%m-%dT%H:%M:%SZ')})"
                    )
        setting.last_fetch_at = now
        setting.last_fetch_status = status
        setting.next_fetch_at = next_at
    # Failures and stale publications are what an operator must hear about (fail_open reports).
    log.log(
        logging.INFO if fine else logging.WARNING, "CRL fetch for CA %s: %s", due.cert_id, status
    )


def _notice_stale(session: Session, now: datetime) -> int:
    """Bump the config version once per fail_closed CRL that has passed its nextUpdate."""
    rows = session.execute(
        select(UploadedCaRevocationSetting, UploadedCaCrl)
        .join(
            UploadedCaCrl,
            UploadedCaCrl.mtls_certificate_id == UploadedCaRevocationSetting.mtls_certificate_id,
        )
        .where(
            UploadedCaRevocationSetting.stale_policy == "fail_closed",
            UploadedCaCrl.next_update <= now,
        )
    ).all()
    noticed = 0
    for setting, crl in rows:
        if setting.stale_noticed != crl.next_update:
            setting.stale_noticed = crl.next_update
            noticed += 1
    if noticed:
        bump_config_version(session)
        log.info("%d fail_closed CRL(s) passed their nextUpdate: edge config rebuilt", noticed)
    return noticed


def notice_stale(store: Store, now: datetime | None = None) -> int:
    with store.transaction() as session:
        return _notice_stale(session, now or datetime.now(UTC))


def fetch_due(store: Store, now: datetime | None = None) -> None:
    with store.transaction() as session:
        due = _claim_due(session, now or datetime.now(UTC))
    for item in due:
        _fetch_one(store, item)


class CrlScheduler:
    """The scheduler of a `serve` process: two threads, so that slow fetches (each up to
    FETCH_TIMEOUT per URL) never delay the stale notices the edge needs within a second."""

    def __init__(self, store: Store, *, tick: float = TICK) -> None:
        self.store = store
        self.tick = tick
        self._stop = threading.Event()
        self._threads = [
            threading.Thread(
                target=self._loop, args=(notice_stale,), name="mtlsgate-crl-stale", daemon=True
            ),
            threading.Thread(
                target=self._loop, args=(fetch_due,), name="mtlsgate-crl-fetch", daemon=True
            ),
        ]

    def start(self) -> None:
        for thread in self._threads:
            thread.start()

    def stop(self) -> None:
        self._stop.set()
        for thread in self._threads:
            thread.join(FETCH_TIMEOUT + 5)

    def _loop(self, job: Callable[[Store], object]) -> None:
        while not self._stop.wait(self.tick):
            try:
                job(self.store)
            except Exception:  # a store outage must not end the scheduler; log and go on
                log.exception("CRL scheduler pass failed")
