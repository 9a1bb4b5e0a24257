"""Domain errors. The API maps them to the v4 envelope in one place (api/envelope.py).

Each error carries a stable integer code (Cloudflare's where it is known) and the HTTP status the
API answers with. Codes we chose ourselves are listed in docs/api.md.
"""

from __future__ import annotations

# How much of a client's value an error message shows (see quote()).
QUOTE_LIMIT = 100


def quote(value: object, limit: int = QUOTE_LIMIT) -> str:
    """`repr(value)` for an error message, bounded: a string of at most `limit` characters is
    quoted exactly as repr() quotes it; a longer one shows its beginning (about `limit`
    characters of repr, escapes included), an ellipsis inside the quotes and its length, as in
    `'aaaa…' (1048576 characters)`. Any other value longer than `limit` characters as repr()
    prints it is cut there and ends in an ellipsis."""
    if not isinstance(value, str):
        shown = repr(value)
        return shown if len(shown) <= limit else shown[:limit] + "…"
    if len(value) <= limit:
        return repr(value)
    head = repr(value[: _head_length(value, limit)])
    return f"{head[:-1]}…{head[-1]} ({len(value)} characters)"


def shorten(text: str, limit: int = QUOTE_LIMIT) -> str:
    """A client's text shown as is (unquoted) in an error message, bounded like quote():
    unchanged up to `limit` characters, else its beginning, an ellipsis and its length."""
    if len(text) <= limit:
        return text
    return f"{text[:limit]}… ({len(text)} characters)"


def _head_length(text: str, limit: int) -> int:
    """How many leading characters of `text` repr() shows in about `limit` characters (a
    control character takes 4 to 10 as an escape)."""
    width = 0
    for i, ch in enumerate(text[:limit]):
        width += len(repr(ch)) - 2
        if width > limit:
            return max(i, 1)
    return min(len(text), limit)


class MtlsgateError(Exception):
    """Root of every error mtlsgate raises on purpose."""

    status: int = 400
    code: int = 1000

    def __init__(
        self,
        message: str,
        *,
        code: int | None = None,
        status: int | None = None,
        pointer: str | None = None,
    ) -> None:
        super().__init__(message)
        self.message = message
        if code is not None:
            self.code = code
        if status is not None:
            self.status = status
        self.pointer = pointer


class BadRequest(MtlsgateError):
    status = 400
    code = 1001


class UploadError(BadRequest):
    """An uploaded certificate, bundle or key was refused; the message names what is wrong."""

    code = 1401


class NotFound(MtlsgateError):
    status = 404
    code = 1404


class Conflict(MtlsgateError):
    status = 409
    code = 1409


class Forbidden(MtlsgateError):
    status = 403
    code = 10000


class QuotaExceeded(MtlsgateError):
    status = 400
    code = 1489


# Codes used for upload validation (UploadError). Stable: clients may match on them.
PEM_MALFORMED = 1401
NOT_A_CA = 1402
SIGNATURE_ALGORITHM_NOT_ALLOWED = 1403
FOREIGN_PEM_BLOCK = 1404
PRIVATE_KEY_INVALID = 1405
BUNDLE_NOT_A_CHAIN = 1406

# Codes of the warnings an upload can carry in `messages` (the upload still succeeds).
WARN_SHA1_SIGNATURE = 1450
WARN_WEAK_RSA_KEY = 1451
WARN_EXPIRED = 1452
WARN_NOT_YET_VALID = 1453
WARN_EXPIRING_SOON = 1454
WARN_DUPLICATE = 1455
