"""The header fields a message's Connection header names (pure; no I/O).

RFC 9110 §7.6.1: a proxy must remove, before forwarding a message, every header field that its
Connection header names (a connection option), as well as Connection itself: those fields
describe the hop the message arrived on, not the next one. (`Connection: close, X-Trace` sent
to the edge means X-Trace was meant for the edge only.) nginx does not do this; Go's
net/http ReverseProxy does.

The edge applies it to requests (runtime/server.py `_forwarded`: only the client's own fields
can be named away; the headers the edge adds come after and are never removed) and to origin
responses that go through httptools (runtime/origin.py; the fast path takes only heads whose
Connection is exactly `keep-alive`). The usual values, `keep-alive` and `close`, name nothing
that is forwarded, so they cost nothing.
"""

from __future__ import annotations

# Connection values that name no forwarded field: Keep-Alive is hop-by-hop anyway, and no
# real message carries a field named "Close". (Compared lowercased, whole.)
USUAL = frozenset({b"keep-alive", b"close", b""})


def named_fields(value: bytes, into: set[bytes] | None = None) -> set[bytes] | None:
    """The lowercased field names one Connection header value lists, added to `into` (a new set
    when None); `into` unchanged (possibly None) when the value is one of the usual ones."""
    if value.lower() in USUAL:
        return into
    names = set() if into is None else into
    for option in value.split(b","):
        option = option.strip(b" \t").lower()
        if option:
            names.add(option)
    return names


def without_named(lines: list[bytes], named: set[bytes], first: int = 0) -> list[bytes]:
    """`lines` (a head's fields from index `first` on, four parts each: name, b": ", value,
    CRLF) without the fields whose name, in any case, is in `named`."""
    kept = lines[:first]
    for i in range(first, len(lines), 4):
        if lines[i].lower() not in named:
            kept += lines[i : i + 4]
    return kept
