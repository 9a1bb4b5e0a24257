"""A configuration swap can land between any two bytecodes of the event loop's thread: the
config watcher builds and installs snapshots in a thread (edge/runtime/worker.py). What a
handshake records must come from one snapshot, or a verdict judged against an old trust set is
labelled with the new version and never re-checked. (Found while looking for the cause of a
CI failure; that one was another: see tests/e2e/test_edge_fencing.py.)

A real EdgeWorker and ClientConnection with an in-memory TLS client; the swap is made to happen
inside the SNI callback's lookup, where a thread switch can land."""

from __future__ import annotations

import dataclasses
from collections.abc import Callable
from typing import Any

from mtlsgate.edge.snapshot import HostProfile, Snapshot
from tests.edge.test_request_garbage import HOST, _connect, _edge, _out


@dataclasses.dataclass(frozen=True)
class _SwappedDuringLookup(Snapshot):
    swap: Callable[[], None] = lambda: None

    def lookup(self, hostname: str | None) -> HostProfile | None:
        self.swap()  # the config thread takes the GIL here and installs a newer snapshot
        return super().lookup(hostname)


def test_a_swap_during_the_sni_lookup_still_rechecks_the_verdict() -> None:
    loop, worker, profile, cctx, _ = _edge()
    try:
        # Version 2 no longer trusts the CA that issued the client's certificate.
        removed = dataclasses.replace(profile, trust_fingerprints=frozenset({b"another CA"}))
        newer = Snapshot(2, {HOST: removed}, default=removed)
        installs: list[Any] = []

        def install() -> None:
            if not installs:
                installs.append(newer)
                worker.install(newer)

        worker.install(_SwappedDuringLookup(1, {HOST: profile}, default=profile, swap=install))
        conn, client, transport = _connect(worker, cctx)
        assert installs, "the swap did not happen during the handshake"
        assert conn.verdict is not None and conn.verdict.verified  # judged by version 1's CAs
        client.sendall(b"GET / HTTP/1.1\r\nHost: api.example.com\r\n\r\n")
        conn.data_received(_out(client))
        answer = transport.take()
        assert answer, "forwarded to the origin on a verdict judged by the old trust set"
        client.bio_write(answer)
        # Re-checked against version 2 on the request: not verified, so the rule blocks.
        assert client.recv(65536).startswith(b"HTTP/1.1 403")
        conn.connection_lost(None)
    finally:
        worker.close()
        loop.close()
