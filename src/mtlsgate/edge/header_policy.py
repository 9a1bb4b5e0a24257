"""Which request headers a late-transform (`rewrite`) rule may set or remove.

The one list both sides use: the Rulesets API (services/rulesets.py) refuses a rule that names
a header the edge owns, and the edge (builder.py) drops such an operation from a rule stored
before the API refused it. Pure: standard library only, no I/O.

The edge writes these headers itself (runtime/server.py `_origin_head`), after dropping the
client's copies:

- framing and hop-by-hop headers (`Host`, `Content-Length`, `Transfer-Encoding`,
  `Connection`, ...): they describe this request on this connection, which the edge frames;
- names starting with `cf-` or `x-cf-` (`CF-Ray`, `CF-Connecting-IP`, the managed `cf-cert-*`
  headers, Access's `Cf-Client-Cert-*`), as at Cloudflare; `CF-Connecting-IP` may be removed;
- `X-Forwarded-For`: the client's copies, then the client's address; it may not be set or
  removed, as at Cloudflare;
- `X-Real-IP` and `True-Client-IP` carry the visitor's address: a rule may remove them, not
  set them, as at Cloudflare.

`X-Forwarded-Proto` may be replaced or removed (the edge writes `https` only when no rule
touched it), unlike at Cloudflare today.
"""

from __future__ import annotations

import re
from typing import Literal

# RFC 9110 §5.1 field-name = token (§5.6.2): visible ASCII except delimiters, at least one.
# Matched with fullmatch: `$` would also accept a trailing newline.
TOKEN = re.compile(r"[!#$%&'*+\-.^_`|~0-9A-Za-z]+")

# Headers that frame the request or the connection; the edge writes them itself.
FRAMING = frozenset(
    {
        "connection",
        "content-length",
        "expect",
        "host",
        "keep-alive",
        "proxy-connection",
        "te",
        "trailer",
        "transfer-encoding",
        "upgrade",
    }
)
# Names with these prefixes belong to the edge ...
EDGE_PREFIXES = ("cf-", "x-cf-")
# ... except these, which a rule may remove (but not set).
EDGE_REMOVABLE = frozenset({"cf-connecting-ip"})
# Written by the edge; a rule may neither set nor remove it.
EDGE_WRITTEN = frozenset({"x-forwarded-for"})
# The visitor's address: a rule may remove these, not set them.
VISITOR_ADDRESS = frozenset({"x-real-ip", "true-client-ip"})

Operation = Literal["set", "remove"]


def is_token(name: str) -> bool:
    """Whether `name` is a valid header field name (an RFC 9110 token)."""
    return TOKEN.fullmatch(name) is not None


def refusal(name: str, operation: Operation) -> str | None:
    """Why a rule may not `operation` ("set" or "remove") header `name`, or None when it may.

    `name` is as the rule wrote it (compared ignoring case; the message quotes it as given)."""
    lower = name.lower()
    verb = "set" if operation == "set" else "removed"
    if lower in FRAMING:
        reason = (
            f"header {name!r} cannot be {verb}: it frames the request or the connection, and "
            "the edge writes it itself"
        )
        if lower == "host":
            reason += " (a route rule's host_header in http_request_origin changes the Host)"
        return reason
    if lower.startswith(EDGE_PREFIXES):
        if lower in EDGE_REMOVABLE:
            if operation == "remove":
                return None
            return (
                f"header {name!r} cannot be set: the edge writes the visitor's IP address into "
                "it; a rule may only remove it"
            )
        return (
            f"header {name!r} cannot be {verb}: headers whose names start with cf- or x-cf- "
            "belong to the edge (CF-Ray, CF-Connecting-IP, cf-cert-*, Cf-Client-Cert-*); only "
            "CF-Connecting-IP may be removed"
        )
    if lower in EDGE_WRITTEN:
        return (
            f"header {name!r} cannot be {verb}: the edge writes it (the client's "
            "X-Forwarded-For, then the client's IP address)"
        )
    if lower in VISITOR_ADDRESS and operation == "set":
        return (
            f"header {name!r} cannot be set: it carries the visitor's IP address, which a rule "
            "cannot change; a rule may only remove it"
        )
    return None
