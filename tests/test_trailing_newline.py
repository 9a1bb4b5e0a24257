"""Validators refuse values ending in (or containing) a newline.

`re.match(r"^...$", s)` accepts `s + "\\n"`: `$` also matches just before a final newline. Every
validator below uses `fullmatch` instead; these tests pin that down at the function level (the
same values through a real `mtlsgate serve` are in tests/e2e/test_trailing_newline_api.py).
"""

from __future__ import annotations

from types import SimpleNamespace
from typing import Any

import pytest
from starlette.requests import Request

from mtlsgate.api.auth import INVALID_AUTHORIZATION_FORMAT, INVALID_HEADERS, principal_from_request
from mtlsgate.api.common import path_hex_id, path_uuid
from mtlsgate.api.envelope import ROUTE_NOT_FOUND, ApiError
from mtlsgate.errors import BadRequest
from mtlsgate.hostnames import INVALID_HOSTNAME, normalize_hostname
from mtlsgate.services.hostname_associations import UNKNOWN_CA, parse_certificate_id

HEX = "0123456789abcdef0123456789abcdef"
UUID = "01234567-89ab-cdef-0123-456789abcdef"
TOKEN = "AbC_def-0123456789"


# --- hostnames -----------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "raw",
    [
        "api.example.com\n",
        "api\n.example.com",
        "api.exa\nmple.com",
        "api.example.com.\n",
        "\napi.example.com",
        "*.example.com\n",
        "api.example.com\r\n",
        "api.example.com\r",
        "api.example.com\t",
        "api.example.com\x00",
        "api.example.com\x7f",
        "api.example.com\x85",
        "api.example.com\u2028",
        "bücher.example.com\n",
        "api.example.com\nX-Injected: 1",
    ],
)
def test_hostname_with_control_character_is_refused(raw: str) -> None:
    with pytest.raises(BadRequest) as info:
        normalize_hostname(raw)
    assert info.value.code == INVALID_HOSTNAME
    assert info.value.status == 400
    message = info.value.message
    assert "not a valid hostname" in message and "control character" in message
    # The message shows the value escaped: it never carries the raw character itself.
    assert "\n" not in message and "\r" not in message


def test_hostname_label_is_matched_whole() -> None:
    """A label is refused by the label check itself, not only by the control-character check."""
    from mtlsgate import hostnames

    assert hostnames._LABEL.fullmatch("api") is not None
    for label in ("api\n", "-api", "api-", "a" * 64, ""):
        assert hostnames._LABEL.fullmatch(label) is None, label


@pytest.mark.parametrize(
    ("raw", "expected"),
    [
        ("api.example.com", "api.example.com"),
        ("  api.example.com ", "api.example.com"),
        ("API.Example.com.", "api.example.com"),
        ("*.example.com", "*.example.com"),
    ],
)
def test_hostnames_without_control_characters_still_accepted(raw: str, expected: str) -> None:
    assert normalize_hostname(raw) == expected


# --- ids in paths ---------------------------------------------------------------------------------


def _request(path: str = "/client/v4/x", headers: list[tuple[bytes, bytes]] | None = None) -> Any:
    app = SimpleNamespace(state=SimpleNamespace(store=_NoStore()))
    scope = {
        "type": "http",
        "method": "GET",
        "path": path,
        "raw_path": path.encode(),
        "query_string": b"",
        "headers": headers or [],
        "app": app,
    }
    return Request(scope)


class _Authenticated(Exception):
    """The header passed the format check and would be looked up."""


class _NoStore:
    def transaction(self) -> Any:
        raise _Authenticated


@pytest.mark.parametrize("suffix", ["\n", "\r\n", "\n\n", " ", "\t"])
def test_hex_id_with_trailing_whitespace_is_refused(suffix: str) -> None:
    assert path_hex_id(_request(), HEX) == HEX
    with pytest.raises(ApiError) as info:
        path_hex_id(_request(), HEX + suffix)
    assert (info.value.status, info.value.code) == (400, ROUTE_NOT_FOUND)
    assert "object identifier is invalid" in info.value.message


@pytest.mark.parametrize("value", [HEX[:16] + "\n" + HEX[16:], "\n" + HEX, HEX[:31] + "\n"])
def test_hex_id_with_newline_inside_is_refused(value: str) -> None:
    with pytest.raises(ApiError) as info:
        path_hex_id(_request(), value)
    assert (info.value.status, info.value.code) == (400, ROUTE_NOT_FOUND)


@pytest.mark.parametrize("value", [UUID, UUID.upper(), UUID.replace("-", "")])
def test_uuid_forms_accepted(value: str) -> None:
    assert path_uuid(_request(), value) == UUID


@pytest.mark.parametrize(
    "value",
    [
        UUID + "\n",
        UUID.replace("-", "") + "\n",
        UUID[:8] + "\n" + UUID[9:],
        UUID + "\r\n",
        "\n" + UUID,
    ],
)
def test_uuid_with_newline_is_refused(value: str) -> None:
    with pytest.raises(ApiError) as info:
        path_uuid(_request(), value)
    assert (info.value.status, info.value.code) == (400, ROUTE_NOT_FOUND)


# --- mtls_certificate_id in a body or query ------------------------------------------------------


@pytest.mark.parametrize("value", [UUID, UUID.upper(), UUID.replace("-", ""), f" {UUID} "])
def test_certificate_id_forms_accepted(value: str) -> None:
    assert parse_certificate_id(value) == UUID


@pytest.mark.parametrize(
    "value",
    [
        UUID + "\n",
        UUID.replace("-", "") + "\n",
        UUID[:8] + "\n" + UUID[9:],
        "\n" + UUID,
        UUID + "\t",
        # int(..., 16), which uuid.UUID relies on, also takes a sign and underscores.
        "+" + UUID.replace("-", "")[1:],
        UUID.replace("-", "")[:4] + "_" + UUID.replace("-", "")[5:],
        "{" + UUID + "}",
        "urn:uuid:" + UUID,
    ],
)
def test_certificate_id_with_newline_or_oddities_is_refused(value: str) -> None:
    with pytest.raises(BadRequest) as info:
        parse_certificate_id(value)
    assert (info.value.status, info.value.code) == (400, UNKNOWN_CA)
    assert "must be the id of an uploaded CA" in info.value.message


# --- the Authorization header --------------------------------------------------------------------


def _auth(value: bytes) -> Any:
    return principal_from_request(_request(headers=[(b"authorization", value)]))


@pytest.mark.parametrize(
    "value",
    [f"Bearer {TOKEN}", f"Bearer {TOKEN} ", f" Bearer {TOKEN}\t"],
)
def test_well_formed_bearer_reaches_the_lookup(value: str) -> None:
    with pytest.raises(_Authenticated):
        _auth(value.encode())


@pytest.mark.parametrize(
    "value",
    [
        f"Bearer {TOKEN}\n",
        f"Bearer {TOKEN}\r\n",
        f"Bearer {TOKEN[:4]}\n{TOKEN[4:]}",
        f"Bearer\n{TOKEN}",
        f"Bearer {TOKEN}\nX-Injected: 1",
    ],
)
def test_bearer_with_newline_is_refused(value: str) -> None:
    with pytest.raises(ApiError) as info:
        _auth(value.encode())
    assert (info.value.status, info.value.code) == (400, INVALID_HEADERS)
    assert info.value.chain == [
        (INVALID_AUTHORIZATION_FORMAT, "Invalid format for Authorization header")
    ]
