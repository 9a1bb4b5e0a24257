"""One edge worker process: its event loop, its listening socket (SO_REUSEPORT), the config
watcher that swaps snapshots, the heartbeat, and a graceful drain on SIGTERM."""

from __future__ import annotations

import asyncio
import contextlib
import ctypes
import gc
import logging
import os
import signal
import socket
import sys
from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path

import uvloop

from mtlsgate.edge.builder import build_snapshot
from mtlsgate.edge.liveness import FENCE_AFTER, HEARTBEAT_INTERVAL
from mtlsgate.edge.runtime.config_sync import (
    POLL_INTERVAL,
    VersionSource,
    deregister,
    heartbeat,
    load_config,
    version_source,
)
from mtlsgate.edge.runtime.observe import Observer
from mtlsgate.edge.runtime.server import EdgeWorker
from mtlsgate.edge.timeouts import EdgeTimeouts
from mtlsgate.edge.tls import ServerIdentity
from mtlsgate.pki.edge_ca import EdgeCA
from mtlsgate.services.request_events import record_events
from mtlsgate.store.db import Store
from mtlsgate.store.keystore import KeyStore

log = logging.getLogger("mtlsgate.edge")

DRAIN_SECONDS = 10.0


def listen_socket(host: str, port: int) -> socket.socket:
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    sock = socket.socket(family, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEPORT, 1)
    sock.bind((host, port))
    sock.listen(4096)
    sock.setblocking(False)
    return sock


class ConfigWatcher:
    """Watches the store's config version and installs a new snapshot when it changes.

    How the version is learnt is the `VersionSource`'s business (config_sync.version_source):
    a cheap poll on the event loop every POLL_INTERVAL on SQLite, LISTEN/NOTIFY with a slow
    safety-net poll on PostgreSQL. Building a configuration runs in a thread, so a slow database
    never stalls the connections of this loop. A configuration that fails to build keeps the
    previous snapshot in place (and says so).
    """

    def __init__(
        self,
        store: Store,
        keystore: KeyStore,
        edge_ca: EdgeCA,
        worker: EdgeWorker,
        default_hostname: str | None,
        node_id: str,
        source: VersionSource | None = None,
    ) -> None:
        self.store = store
        self.keystore = keystore
        self.edge_ca = edge_ca
        self.worker = worker
        self.default_hostname = default_hostname
        self.node_id = node_id
        self.source = source if source is not None else version_source(store)
        self.identities: dict[str, ServerIdentity] = {}
        self.version = -1
        self.reported = -1
        self.next_beat = 0.0

    def build(self) -> None:
        """Load and build the current configuration (called in a thread)."""
        with self.store.transaction() as session:
            data = load_config(session, self.keystore, default_hostname=self.default_hostname)
        snapshot = build_snapshot(data, self.edge_ca, self.worker.on_sni, self.identities)
        self.worker.install(snapshot)
        self.version = data.version

    async def run(self) -> None:
        loop = asyncio.get_running_loop()
        while True:
            try:
                checked = loop.time()
                current = await self.source.current()
                if current is not None and current != self.version:
                    await loop.run_in_executor(None, self.build)
                    log.info("edge applied config version %d", self.version)
                # The heartbeat is a write: at once when a new version is applied (propagation
                # status waits for it), otherwise every HEARTBEAT_INTERVAL.
                if self.version != self.reported or loop.time() >= self.next_beat:
                    await loop.run_in_executor(
                        None, heartbeat, self.store, self.node_id, self.version
                    )
                    self.reported = self.version
                    self.next_beat = loop.time() + HEARTBEAT_INTERVAL
                    # The store has heard from this node, with the version read at `checked`:
                    # mTLS hostnames stay served (edge/liveness.py).
                    self.worker.confirmed(checked)
            except Exception:
                log.exception("edge configuration refresh failed; keeping the current one")
            # Never less than POLL_INTERVAL, so a failing heartbeat cannot spin this loop.
            await self.source.wait(max(POLL_INTERVAL, self.next_beat - loop.time()))

    async def close(self) -> None:
        await self.source.close()


def run_worker(
    data_dir: Path,
    database_url: str,
    host: str,
    port: int,
    default_hostname: str | None,
    ready: Callable[[], None] | None = None,
    timeouts: EdgeTimeouts | None = None,
) -> None:
    """The body of one worker process."""
    _die_with_parent()
    # Store work runs in threads (request events, heartbeats): when one holds the GIL, the
    # event loop waits up to the switch interval for it (5 ms by default, a visible p99).
    sys.setswitchinterval(0.0005)
    logging.basicConfig(
        level=logging.INFO,
        stream=sys.stderr,
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
    )
    logging.getLogger("alembic").setLevel(logging.WARNING)
    uvloop.run(_main(data_dir, database_url, host, port, default_hostname, ready, timeouts))


EVENTS_INTERVAL = 5.0  # seconds between request-event writes to the store


async def _flush_observations(observer: Observer, store: Store, node_id: str) -> None:
    """Log lines every 200 ms, metrics every second, the request-events sample every
    EVENTS_INTERVAL (a store write in a thread: rare, so it seldom delays a request)."""
    loop = asyncio.get_running_loop()
    tick = 0
    while True:
        await asyncio.sleep(0.2)
        observer.flush_log()
        tick += 1
        if tick % 5 == 0:
            try:
                observer.dump_metrics()
            except OSError:
                log.exception("could not write metrics")
        if tick % int(EVENTS_INTERVAL / 0.2) == 0:
            await _record_events(loop, observer, store, node_id)


async def _record_events(
    loop: asyncio.AbstractEventLoop, observer: Observer, store: Store, node_id: str
) -> None:
    """The newest requests (a sample) and exact per-minute counts into the store, where the
    API (/zones/{zone_id}/mtls_events) and the dashboard read them."""
    records, counts = observer.take_events()
    if not records and not counts:
        return

    def record() -> None:
        record_events(store, node_id, [Observer.as_dict(r) for r in records], counts)

    try:
        await loop.run_in_executor(None, record)
    except Exception:  # the store may be briefly unavailable: the sample is dropped, not the edge
        log.exception("could not record request events")


def _die_with_parent() -> None:
    """Linux: this worker gets SIGTERM when `serve` goes away, however it goes (even SIGKILL)."""
    try:
        libc = ctypes.CDLL("libc.so.6", use_errno=True)
        libc.prctl(1, signal.SIGTERM)  # PR_SET_PDEATHSIG
    except (OSError, AttributeError):
        pass
    if os.getppid() == 1:  # the parent was already gone before prctl took effect
        os.kill(os.getpid(), signal.SIGTERM)


async def _main(
    data_dir: Path,
    database_url: str,
    host: str,
    port: int,
    default_hostname: str | None,
    ready: Callable[[], None] | None,
    timeouts: EdgeTimeouts | None = None,
) -> None:
    loop = asyncio.get_running_loop()
    store = Store(database_url)
    keystore = KeyStore.for_data_dir(data_dir)
    edge_ca = EdgeCA.load_or_create(data_dir, now=datetime.now(UTC))
    node_id = f"{socket.gethostname()}:{os.getpid()}"
    # An empty snapshot until the first build: connections are refused meanwhile.
    from mtlsgate.edge.snapshot import Snapshot

    observer = Observer(data_dir / "metrics", node_id, clock=loop.time)
    worker = EdgeWorker(Snapshot(-1, {}), loop, observer, timeouts=timeouts)
    watcher = ConfigWatcher(store, keystore, edge_ca, worker, default_hostname, node_id)
    await loop.run_in_executor(None, watcher.build)
    worker.fence_after = FENCE_AFTER  # (in-process test workers, without a watcher, never fence)
    worker.confirmed(loop.time())
    # What start-up created lives as long as the worker: out of the cyclic GC's way.
    gc.freeze()
    server = await loop.create_server(worker.protocol_factory, sock=listen_socket(host, port))
    poller = loop.create_task(watcher.run())
    flusher = loop.create_task(_flush_observations(observer, store, node_id))
    stop = asyncio.Event()
    loop.add_signal_handler(signal.SIGTERM, stop.set)
    loop.add_signal_handler(signal.SIGINT, stop.set)
    log.info(
        "edge worker %s listening on %s:%d (config version %d)",
        node_id,
        host,
        port,
        watcher.version,
    )
    if ready is not None:
        ready()
    await stop.wait()
    # Graceful drain: stop accepting, let requests in flight finish, then close idle ones.
    server.close()
    deadline = loop.time() + DRAIN_SECONDS
    while any(c.active is not None for c in worker.connections) and loop.time() < deadline:
        await asyncio.sleep(0.05)
    for conn in list(worker.connections):
        if conn.transport is not None:
            conn.transport.close()
    poller.cancel()
    flusher.cancel()
    with contextlib.suppress(asyncio.CancelledError):
        await poller
    await watcher.close()
    try:
        await loop.run_in_executor(None, deregister, store, node_id)
    except Exception:  # the store may be gone: the row then ages out
        log.exception("could not deregister edge node %s", node_id)
    observer.flush_log()
    observer.dump_metrics()
    await _record_events(loop, observer, store, node_id)
    worker.close()
    worker.pool.close_all()
    store.dispose()
