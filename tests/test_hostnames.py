"""Hostname normalisation: what people type becomes the A-label form the edge matches."""

import pytest

from mtlsgate.errors import BadRequest
from mtlsgate.hostnames import INVALID_HOSTNAME, in_zone, normalize_hostname


@pytest.mark.parametrize(
    ("raw", "expected"),
    [
        ("API.Example.COM", "api.example.com"),
        ("api.example.com.", "api.example.com"),
        ("  api.example.com ", "api.example.com"),
        ("bücher.example.com", "xn--bcher-kva.example.com"),
        ("xn--bcher-kva.example.com", "xn--bcher-kva.example.com"),
        ("*.example.com", "*.example.com"),
        ("*.bücher.example.com", "*.xn--bcher-kva.example.com"),
        ("a-b.example.com", "a-b.example.com"),
    ],
)
def test_accepted(raw: str, expected: str) -> None:
    assert normalize_hostname(raw) == expected


@pytest.mark.parametrize(
    "raw",
    [
        "",
        "localhost",
        "-bad.example.com",
        "bad-.example.com",
        "a..example.com",
        "exa mple.example.com",
        "*.*.example.com",
        "foo.*.example.com",
        "f*o.example.com",
        "*",
        "a_b.example.com",
        "x" * 64 + ".example.com",
        ".".join(["a" * 60] * 5),
        "☃☃☃\u200d.example.com",
        5,
        None,
    ],
)
def test_refused(raw: object) -> None:
    with pytest.raises(BadRequest) as info:
        normalize_hostname(raw)
    assert info.value.code == INVALID_HOSTNAME
    assert info.value.message


def test_in_zone() -> None:
    assert in_zone("example.com", "example.com")
    assert in_zone("a.b.example.com", "example.com")
    assert in_zone("*.example.com", "example.com")
    assert not in_zone("badexample.com", "example.com")
    assert not in_zone("example.com.evil.org", "example.com")
