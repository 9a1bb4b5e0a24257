"""Hostname syntax: normalise what people type to the lowercase A-label form the edge matches.

Unicode names are converted with IDNA 2008 (UTS 46 mapping), as browsers send them in SNI.
A wildcard is allowed only as the whole leftmost label (`*.example.com`) and covers exactly one
label, like a TLS certificate's wildcard.
"""

from __future__ import annotations

import re

import idna

from mtlsgate.errors import BadRequest

INVALID_HOSTNAME = 1003
HOSTNAME_NOT_IN_ZONE = 1004

_LABEL = re.compile(r"^(?!-)[a-z0-9-]{1,63}(?<!-)$")


def normalize_hostname(raw: object) -> str:
    """Return the canonical form of a hostname or raise BadRequest saying what is wrong."""
    if not isinstance(raw, str):
        raise BadRequest(f"hostname must be a string, got {raw!r}", code=INVALID_HOSTNAME)
    name = raw.strip().rstrip(".").lower()
    if not name:
        raise BadRequest("hostname must not be empty", code=INVALID_HOSTNAME)
    wildcard = name.startswith("*.")
    body = name[2:] if wildcard else name
    if not body.isascii():
        try:
            body = idna.encode(body, uts46=True).decode("ascii")
        except idna.IDNAError as exc:
            raise BadRequest(
                f"{raw!r} is not a valid internationalised hostname: {exc}",
                code=INVALID_HOSTNAME,
            ) from None
    labels = body.split(".")
    for label in labels:
        if "*" in label:
            raise BadRequest(
                f"{raw!r}: a wildcard may only be the whole leftmost label, as in *.example.com",
                code=INVALID_HOSTNAME,
            )
        if not _LABEL.match(label):
            raise BadRequest(
                f"{raw!r} is not a valid hostname: label {label!r} must be 1-63 letters, digits "
                "or hyphens, not starting or ending with a hyphen",
                code=INVALID_HOSTNAME,
            )
    if len(body) > 253 - (2 if wildcard else 0) or len(labels) < 2:
        raise BadRequest(f"{raw!r} is not a fully qualified hostname", code=INVALID_HOSTNAME)
    return ("*." if wildcard else "") + body


def in_zone(hostname: str, zone_name: str) -> bool:
    bare = hostname[2:] if hostname.startswith("*.") else hostname
    return bare == zone_name or bare.endswith("." + zone_name)
