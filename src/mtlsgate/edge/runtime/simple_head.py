"""The request heads most keep-alive clients send, read without httptools (pure; no I/O).

A keep-alive client (an SDK, a device agent, `ab`, a curl loop) sends a bodiless request in one
read and, request after request on one connection, the same header fields. Going through
httptools costs a Python callback per field plus five per message, about a quarter of the
edge's per-request interpreter work. For a head of exactly the shape below, the edge reads it
here instead, with a few regular-expression calls in C, and keeps the parsed fields of the
connection's last such head: a repeat costs one bytes comparison.

The shape is a strict subset of what llhttp (httptools) accepts, so taking this path never
admits a request the parser would refuse: a bodiless method, an origin-form target of visible
ASCII without a fragment, HTTP/1.0 or 1.1, then fields whose names are tokens and whose values
are visible ASCII with inner spaces or tabs, no trailing whitespace, nothing empty. Any field
that frames or changes the message (Content-Length, Transfer-Encoding, Expect, Upgrade,
Proxy-Connection, a Connection other than one `keep-alive` or `close`, a second Host), and a
target or fields longer than MAX_SIMPLE, send the head to httptools,
which judges it as before. tests/edge/test_simple_head.py checks the subset property against
httptools.
"""

from __future__ import annotations

import re

_TOKEN = rb"[!#$%&'*+\-.^_`|~0-9A-Za-z]+"
_VALUE = rb"[\x21-\x7e](?:[ \t\x21-\x7e]*[\x21-\x7e])?"
# The request line; what follows it (the fields and the blank line) is `fields` below.
# (A target and fields of at most MAX_SIMPLE bytes each: the head stays under the 32 KiB limit
# the httptools path enforces with 431.)
REQUEST_LINE = re.compile(
    rb"(GET|HEAD|DELETE|OPTIONS) (/[\x21\x22\x24-\x7e]{0,8191}) HTTP/1\.([01])\r\n"
)
_FIELDS = re.compile(rb"(?:" + _TOKEN + rb":[ \t]*" + _VALUE + rb"\r\n)*+\r\n")
_FIELD = re.compile(rb"([^:]+):[ \t]*([^\r]*)\r\n")
# Fields that frame the message or change how it is handled: httptools and the edge's
# callbacks decide those requests. (llhttp reads Proxy-Connection as Connection.)
_NOT_SIMPLE = frozenset(
    {b"content-length", b"transfer-encoding", b"expect", b"upgrade", b"proxy-connection"}
)
# Fields longer than this go to httptools (which counts the head against the 431 limit).
MAX_SIMPLE = 8192

# (the fields lowercased-name first, as the callbacks build them; the Host value or b"";
# the Connection value lowercased, or b"" when there is none)
Fields = tuple[list[tuple[bytes, bytes]], bytes, bytes]


def parse_fields(fields: bytes) -> Fields | None:
    """The header fields after a request line (through the blank line), or None when the head
    is not of the simple shape."""
    if len(fields) > MAX_SIMPLE or _FIELDS.fullmatch(fields) is None:
        return None
    headers = [(name.lower(), value) for name, value in _FIELD.findall(fields)]
    names = [name for name, _ in headers]
    if not _NOT_SIMPLE.isdisjoint(names):
        return None
    host = b""
    if b"host" in names:
        if names.count(b"host") > 1:
            return None
        host = headers[names.index(b"host")][1]
    connection = b""
    if b"connection" in names:
        if names.count(b"connection") > 1:
            return None
        connection = headers[names.index(b"connection")][1].lower()
        if connection not in (b"keep-alive", b"close"):
            return None
    return headers, host, connection
