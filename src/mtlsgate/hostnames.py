"""Hostname syntax: normalise what people type to the lowercase A-label form the edge matches.

Unicode names are converted with IDNA 2008 (UTS 46 mapping), as browsers send them in SNI.
A wildcard is allowed only as the whole leftmost label (`*.example.com`) and covers exactly one
label, like a TLS certificate's wildcard.
"""

from __future__ import annotations

import re

import idna

from mtlsgate.errors import QUOTE_LIMIT, BadRequest, quote, shorten

INVALID_HOSTNAME = 1003
HOSTNAME_NOT_IN_ZONE = 1004
# idna's reasons quote the label or the whole name (at most 1024 characters; 253 in a valid name):
# shown whole up to this length.
_IDNA_REASON = 4 * QUOTE_LIMIT

# Used with fullmatch: `re.match` with `$` would accept a label ending in "\n".
_LABEL = re.compile(r"(?!-)[a-z0-9-]{1,63}(?<!-)")
# C0/C1 controls, DEL, and the Unicode line and paragraph separators: never part of a hostname,
# and refused before the surrounding spaces are stripped, so "api.example.com\n" is an error
# rather than silently trimmed.
_CONTROL = re.compile(r"[\x00-\x1f\x7f-\x9f\u2028\u2029]")


def normalize_hostname(raw: object) -> str:
    """Return the canonical form of a hostname or raise BadRequest saying what is wrong."""
    if not isinstance(raw, str):
        raise BadRequest(f"hostname must be a string, got {quote(raw)}", code=INVALID_HOSTNAME)
    control = _CONTROL.search(raw)
    if control is not None:
        raise BadRequest(
            f"{quote(raw)} is not a valid hostname: it contains the control character "
            f"{control.group()!r} (U+{ord(control.group()):04X}); newlines, tabs and other "
            "control characters are not allowed anywhere in a hostname",
            code=INVALID_HOSTNAME,
        )
    name = raw.strip().rstrip(".").lower()
    if not name:
        raise BadRequest("hostname must not be empty", code=INVALID_HOSTNAME)
    wildcard = name.startswith("*.")
    body = name[2:] if wildcard else name
    if not body.isascii():
        try:
            body = idna.encode(body, uts46=True).decode("ascii")
        except idna.IDNAError as exc:
            reason = shorten(str(exc), _IDNA_REASON)
            raise BadRequest(
                f"{quote(raw)} is not a valid internationalised hostname: {reason}",
                code=INVALID_HOSTNAME,
            ) from None
    labels = body.split(".")
    for label in labels:
        if "*" in label:
            raise BadRequest(
                f"{quote(raw)}: a wildcard may only be the whole leftmost label, "
                "as in *.example.com",
                code=INVALID_HOSTNAME,
            )
        if not _LABEL.fullmatch(label):
            raise BadRequest(
                f"{quote(raw)} is not a valid hostname: label {quote(label)} must be 1-63 "
                "letters, digits or hyphens, not starting or ending with a hyphen",
                code=INVALID_HOSTNAME,
            )
    if len(body) > 253 - (2 if wildcard else 0) or len(labels) < 2:
        raise BadRequest(f"{quote(raw)} is not a fully qualified hostname", code=INVALID_HOSTNAME)
    return ("*." if wildcard else "") + body


def in_zone(hostname: str, zone_name: str) -> bool:
    bare = hostname[2:] if hostname.startswith("*.") else hostname
    return bare == zone_name or bare.endswith("." + zone_name)
