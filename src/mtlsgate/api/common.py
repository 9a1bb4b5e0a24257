"""What every route module needs: the store and keystore, ids in paths, formatting."""

from __future__ import annotations

import re
from datetime import UTC, datetime

from fastapi import Request

from mtlsgate.api.envelope import NO_ROUTE, ROUTE_NOT_FOUND, ApiError
from mtlsgate.store.db import Store
from mtlsgate.store.keystore import KeyStore

# Used with fullmatch: `re.match` with `$` would accept an id ending in "\n" (`%0A` in a path).
_HEX32 = re.compile(r"[0-9a-f]{32}")
_UUID = re.compile(r"[0-9a-f]{8}-?[0-9a-f]{4}-?[0-9a-f]{4}-?[0-9a-f]{4}-?[0-9a-f]{12}")


def store_of(request: Request) -> Store:
    store: Store = request.app.state.store
    return store


def keystore_of(request: Request) -> KeyStore:
    keystore: KeyStore = request.app.state.keystore
    return keystore


def _bad_id(request: Request) -> ApiError:
    return ApiError(
        f"Could not route to {request.url.path}, perhaps your object identifier is invalid?",
        code=ROUTE_NOT_FOUND,
        status=400,
        chain=[(NO_ROUTE, "No route for that URI")],
    )


def path_hex_id(request: Request, value: str) -> str:
    """An account, zone or token id: 32 lowercase hex characters."""
    if not _HEX32.fullmatch(value):
        raise _bad_id(request)
    return value


def path_uuid(request: Request, value: str) -> str:
    """An mTLS certificate id: a UUID, with or without dashes; returned in the 36-char form."""
    v = value.lower()
    if not _UUID.fullmatch(v):
        raise _bad_id(request)
    h = v.replace("-", "")
    return f"{h[:8]}-{h[8:12]}-{h[12:16]}-{h[16:20]}-{h[20:]}"


def iso(dt: datetime, *, micro: bool = True) -> str:
    dt = dt.astimezone(UTC)
    if micro:
        return dt.strftime("%Y-%m-%dT%H:%M:%S.%fZ")
    return dt.strftime("%Y-%m-%dT%H:%M:%SZ")
