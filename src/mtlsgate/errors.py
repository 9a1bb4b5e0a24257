"""Domain errors. The API maps them to the v4 envelope in one place (api/envelope.py).

Each error carries a stable integer code (Cloudflare's where it is known) and the HTTP status the
API answers with. Codes we chose ourselves are listed in docs/api.md.
"""

from __future__ import annotations


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
