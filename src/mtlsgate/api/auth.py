"""Who is calling: the Authorization header turned into a Principal, with Cloudflare's errors."""

from __future__ import annotations

import re

from fastapi import Request

from mtlsgate.api.envelope import ApiError
from mtlsgate.services.permissions import Principal
from mtlsgate.services.tokens import authenticate
from mtlsgate.store.db import Store

MISSING_CREDENTIALS = 9106
INVALID_HEADERS = 6003
INVALID_AUTHORIZATION_FORMAT = 6111
INVALID_EMAIL_FORMAT = 6102
INVALID_KEY_FORMAT = 6103
INVALID_TOKEN = 9109

# Used with fullmatch: `re.match` with `$` would accept a token ending in "\n".
_BEARER = re.compile(r"Bearer ([A-Za-z0-9_\-]{1,200})")
# Optional whitespace around a field value (RFC 9110 5.5): spaces and tabs, never a newline.
_OWS = " \t"


def principal_from_request(request: Request) -> Principal:
    store: Store = request.app.state.store
    header = request.headers.get("authorization")
    if header is None:
        if request.headers.get("x-auth-key") is not None or request.headers.get("x-auth-email"):
            # Global API keys are not part of mtlsgate: say so in Cloudflare's words.
            raise ApiError(
                "Invalid request headers",
                code=INVALID_HEADERS,
                status=400,
                chain=[
                    (INVALID_EMAIL_FORMAT, "Invalid format for X-Auth-Email header"),
                    (INVALID_KEY_FORMAT, "Invalid format for X-Auth-Key header"),
                ],
            )
        raise ApiError(
            "Missing X-Auth-Key, X-Auth-Email or Authorization headers",
            code=MISSING_CREDENTIALS,
            status=400,
        )
    match = _BEARER.fullmatch(header.strip(_OWS))
    if match is None:
        raise ApiError(
            "Invalid request headers",
            code=INVALID_HEADERS,
            status=400,
            chain=[
                (
                    INVALID_AUTHORIZATION_FORMAT,
                    "Invalid format for Authorization header",
                )
            ],
        )
    with store.transaction() as session:
        principal = authenticate(session, match.group(1))
    if principal is None:
        raise ApiError("Invalid access token", code=INVALID_TOKEN, status=403)
    return principal
