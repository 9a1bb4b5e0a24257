"""Real mtlsgate processes for end-to-end tests: `mtlsgate init`, then `mtlsgate serve` on a
free port of 127.0.0.1, on SQLite or on a throwaway PostgreSQL database."""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx

MTLSGATE = str(Path(sys.executable).parent / "mtlsgate")


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def run_cli(
    *args: str, check: bool = True, env: dict[str, str] | None = None
) -> subprocess.CompletedProcess[str]:
    proc = subprocess.run(
        [MTLSGATE, *args], capture_output=True, text=True, timeout=120, env=env or dict(os.environ)
    )
    if check and proc.returncode != 0:
        raise AssertionError(
            f"mtlsgate {' '.join(args)} failed ({proc.returncode}):\n{proc.stderr}"
        )
    return proc


@dataclass
class Gateway:
    data_dir: Path
    database_url: str | None
    account_id: str
    zones: dict[str, str]
    token: str
    port: int = 0
    proc: subprocess.Popen[bytes] | None = None
    extra: list[subprocess.Popen[bytes]] = field(default_factory=list)

    @property
    def store_args(self) -> list[str]:
        args = ["--data-dir", str(self.data_dir)]
        if self.database_url:
            args += ["--database-url", self.database_url]
        return args

    @property
    def base_url(self) -> str:
        return f"http://127.0.0.1:{self.port}/client/v4"

    @property
    def zone_id(self) -> str:
        return next(iter(self.zones.values()))

    def cli(self, *args: str, check: bool = True) -> subprocess.CompletedProcess[str]:
        return run_cli(*_insert_store_args(args, self.store_args), check=check)

    def cli_json(self, *args: str) -> Any:
        return json.loads(self.cli(*args).stdout)

    def start(
        self, port: int | None = None, edge: list[str] | None = None
    ) -> subprocess.Popen[bytes]:
        """Start a `serve` process; the first one becomes `self.proc`, later ones are extras.
        Without `edge` (extra arguments such as ["--edge", "127.0.0.1:PORT"]) it serves the
        API only, so parallel tests never share an edge port."""
        port = port or free_port()
        log = open(self.data_dir.parent / f"serve-{port}.log", "wb")  # noqa: SIM115
        edge_args = edge if edge is not None else ["--no-edge"]
        proc = subprocess.Popen(
            [MTLSGATE, "serve", *self.store_args, "--api", f"127.0.0.1:{port}", *edge_args],
            stdout=log,
            stderr=subprocess.STDOUT,
        )
        wait_healthy(port, proc)
        if self.proc is None or self.proc.poll() is not None:
            self.proc, self.port = proc, port
        else:
            self.extra.append(proc)
        return proc

    def stop(self, sig: int = signal.SIGTERM) -> None:
        for proc in [self.proc, *self.extra]:
            if proc is not None and proc.poll() is None:
                proc.send_signal(sig)
                try:
                    proc.wait(timeout=15)
                except subprocess.TimeoutExpired:
                    proc.kill()
                    proc.wait()
        self.extra.clear()

    def http(self, token: str | None = None) -> httpx.Client:
        headers = {"Authorization": f"Bearer {token or self.token}"}
        return httpx.Client(base_url=self.base_url, headers=headers, timeout=30)

    def sdk(self, token: str | None = None) -> Any:
        from cloudflare import Cloudflare

        return Cloudflare(api_token=token or self.token, base_url=self.base_url, max_retries=0)


def _insert_store_args(args: tuple[str, ...], store_args: list[str]) -> list[str]:
    """Put --data-dir/--database-url after the (sub)command words, e.g. `token create`."""
    words = list(args)
    i = 0
    while i < len(words) and not words[i].startswith("-"):
        i += 1
    return [*words[:i], *store_args, *words[i:]]


def wait_healthy(port: int, proc: subprocess.Popen[bytes], timeout: float = 30) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise AssertionError(f"mtlsgate serve exited with {proc.returncode}")
        try:
            if httpx.get(f"http://127.0.0.1:{port}/healthz", timeout=1).status_code == 200:
                return
        except httpx.HTTPError:
            pass
        time.sleep(0.05)
    raise AssertionError("mtlsgate serve did not become healthy")


def init_gateway(
    data_dir: Path, database_url: str | None, zones: tuple[str, ...] = ("example.com",)
) -> Gateway:
    args = ["init", "--data-dir", str(data_dir)]
    if database_url:
        args += ["--database-url", database_url]
    for z in zones:
        args += ["--zone", z]
    out = json.loads(run_cli(*args).stdout)
    return Gateway(
        data_dir=data_dir,
        database_url=database_url,
        account_id=out["account_id"],
        zones=out["zones"],
        token=out["api_token"],
    )


@contextmanager
def edge_gateway(
    data_dir: Path,
    database_url: str | None,
    hosts: tuple[str, ...] = ("api.example.com",),
    *,
    workers: int = 1,
    zones: tuple[str, ...] = ("example.com",),
) -> Iterator[tuple[Gateway, int]]:
    """A `serve` with its edge and an echo origin: a proxied A record for each of `hosts` (in
    that order), all routed to the echo origin by an origin rule. Yields (gateway, edge port)."""
    gw = init_gateway(data_dir, database_url, zones=zones)
    origin_port, edge_port = free_port(), free_port()
    origin = subprocess.Popen(
        [MTLSGATE, "echo-origin", "--listen", f"127.0.0.1:{origin_port}"],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    gw.start(edge=["--edge", f"127.0.0.1:{edge_port}", "--workers", str(workers)])
    try:
        with gw.http() as c:
            for host in hosts:
                r = c.post(
                    f"/zones/{gw.zone_id}/dns_records",
                    json={"type": "A", "name": host, "content": "127.0.0.1", "proxied": True},
                )
                assert r.status_code == 200, r.text
            # The echo origin listens on a free port: an origin rule routes there.
            route = {"expression": "true", "action": "route",
                     "action_parameters": {"origin": {"port": origin_port}}}  # fmt: skip
            r = c.put(
                f"/zones/{gw.zone_id}/rulesets/phases/http_request_origin/entrypoint",
                json={"rules": [route]},
            )
            assert r.status_code == 200, r.text
        yield gw, edge_port
    finally:
        gw.stop()
        origin.terminate()
        origin.wait(10)
