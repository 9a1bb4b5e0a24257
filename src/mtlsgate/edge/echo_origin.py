"""A small HTTP/1.1 origin for demos and tests: answers every request with a JSON description
of what it received (method, target, headers, body length and SHA-256)."""

from __future__ import annotations

import asyncio
import hashlib
import json
from typing import cast

import httptools


class EchoProtocol(asyncio.Protocol):
    def __init__(self) -> None:
        self.transport: asyncio.Transport | None = None
        self.parser = httptools.HttpRequestParser(self)
        self._reset()

    def _reset(self) -> None:
        self.url = b""
        self.headers: list[tuple[str, str]] = []
        self.body = hashlib.sha256()
        self.length = 0

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        # uvloop's transports are not asyncio.Transport subclasses, but behave as one.
        self.transport = cast(asyncio.Transport, transport)

    def data_received(self, data: bytes) -> None:
        try:
            self.parser.feed_data(data)
        except httptools.HttpParserError:
            if self.transport is not None:
                self.transport.write(b"HTTP/1.1 400 Bad Request\r\nContent-Length: 0\r\n\r\n")
                self.transport.close()

    def on_url(self, url: bytes) -> None:
        self.url += url

    def on_header(self, name: bytes, value: bytes) -> None:
        self.headers.append((name.decode("latin-1"), value.decode("latin-1")))

    def on_body(self, body: bytes) -> None:
        self.body.update(body)
        self.length += len(body)

    def on_message_complete(self) -> None:
        payload = json.dumps(
            {
                "method": self.parser.get_method().decode(),
                "url": self.url.decode("latin-1"),
                "headers": self.headers,
                "body_length": self.length,
                "body_sha256": self.body.hexdigest(),
            }
        ).encode()
        keep = self.parser.should_keep_alive()
        head = (
            b"HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nContent-Length: %d\r\n%s\r\n"
            % (len(payload), b"" if keep else b"Connection: close\r\n")
        )
        assert self.transport is not None
        self.transport.write(head + payload)
        self._reset()
        if not keep:
            self.transport.close()


async def serve_echo(host: str, port: int) -> None:
    loop = asyncio.get_running_loop()
    server = await loop.create_server(EchoProtocol, host, port, reuse_address=True)
    async with server:
        await server.serve_forever()
