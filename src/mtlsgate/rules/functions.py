"""Functions of the Rules language: their type signatures and their runtime implementations.

Every implementation accepts MISSING (the value of an absent map key, an index past the end, a
JSON key that is not there) and returns MISSING for it, so a comparison with it is false.
Strings are UTF-8 text; where Cloudflare counts bytes (len, substring), so do these.
"""

from __future__ import annotations

import base64
import binascii
import ipaddress
import json
import re
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any
from urllib.parse import unquote_to_bytes

from mtlsgate.rules.scheme import BOOL, INT, IP, STRING, Type, array


class _Missing:
    __slots__ = ()

    def __repr__(self) -> str:
        return "MISSING"


MISSING: Any = _Missing()

_ASCII_LOWER = {c: c + 32 for c in range(ord("A"), ord("Z") + 1)}
_ASCII_UPPER = {c: c - 32 for c in range(ord("a"), ord("z") + 1)}


def f_lower(s: Any) -> Any:
    if s is MISSING:
        return MISSING
    # ASCII only, as in Cloudflare: "İ" must not turn into "i̇".
    return s.lower() if s.isascii() else s.translate(_ASCII_LOWER)


def f_upper(s: Any) -> Any:
    if s is MISSING:
        return MISSING
    return s.upper() if s.isascii() else s.translate(_ASCII_UPPER)


def f_len(v: Any) -> Any:
    if v is MISSING:
        return MISSING
    if isinstance(v, str):
        return len(v) if v.isascii() else len(v.encode("utf-8", "surrogateescape"))
    return len(v)


def f_starts_with(s: Any, prefix: Any) -> bool:
    return s is not MISSING and prefix is not MISSING and s.startswith(prefix)


def f_ends_with(s: Any, suffix: Any) -> bool:
    return s is not MISSING and suffix is not MISSING and s.endswith(suffix)


def f_any(values: Any) -> bool:
    return values is not MISSING and any(v is True for v in values)


def f_all(values: Any) -> bool:
    return values is not MISSING and all(v is True for v in values)


def f_concat(*parts: Any) -> Any:
    if any(p is MISSING for p in parts):
        return MISSING
    if isinstance(parts[0], str):
        return "".join(parts)
    out: list[Any] = []
    for p in parts:
        out.extend(p)
    return out


def f_join(values: Any, sep: Any) -> Any:
    if values is MISSING or sep is MISSING:
        return MISSING
    return sep.join(values)


def f_substring(s: Any, start: Any, end: Any = None) -> Any:
    if s is MISSING or start is MISSING or end is MISSING:
        return MISSING
    raw = s.encode("utf-8", "surrogateescape")
    return raw[start:end].decode("utf-8", "surrogateescape")


def f_to_string(v: Any) -> Any:
    if v is MISSING:
        return MISSING
    if isinstance(v, bool):
        return "true" if v else "false"
    return str(v)


_PERCENT_U = re.compile(r"%u([0-9A-Fa-f]{4})")


def f_url_decode(s: Any, options: Any = "") -> Any:
    if s is MISSING or options is MISSING:
        return MISSING
    recursive = "r" in options
    unicode = "u" in options
    for _ in range(16 if recursive else 1):
        text = _PERCENT_U.sub(lambda m: chr(int(m.group(1), 16)), s) if unicode else s
        decoded = unquote_to_bytes(text.replace("+", " ")).decode("utf-8", "surrogateescape")
        if decoded == s:
            break
        s = decoded
    return s


def f_decode_base64(s: Any) -> Any:
    if s is MISSING:
        return MISSING
    try:
        padded = s + "=" * (-len(s) % 4)
        return base64.b64decode(padded, validate=True).decode("utf-8", "surrogateescape")
    except (binascii.Error, ValueError):
        return MISSING


def _json_lookup(doc: Any, keys: Sequence[Any]) -> Any:
    if doc is MISSING:
        return MISSING
    try:
        value = json.loads(doc)
    except ValueError:
        return MISSING
    for key in keys:
        by_name = isinstance(key, str) and isinstance(value, dict) and key in value
        by_index = isinstance(key, int) and isinstance(value, list) and 0 <= key < len(value)
        if by_name or by_index:
            value = value[key]
        else:
            return MISSING
    return value


def f_lookup_json_string(doc: Any, *keys: Any) -> Any:
    value = _json_lookup(doc, keys)
    return value if isinstance(value, str) else MISSING


def f_lookup_json_integer(doc: Any, *keys: Any) -> Any:
    value = _json_lookup(doc, keys)
    return value if isinstance(value, int) and not isinstance(value, bool) else MISSING


def f_cidr(ip: Any, v4_bits: Any, v6_bits: Any) -> Any:
    if ip is MISSING:
        return MISSING
    bits = v4_bits if ip.version == 4 else v6_bits
    return ipaddress.ip_network(f"{ip}/{bits}", strict=False).network_address


def f_cidr6(ip: Any, v6_bits: Any) -> Any:
    if ip is MISSING:
        return MISSING
    if ip.version == 4:
        return ip
    return ipaddress.ip_network(f"{ip}/{v6_bits}", strict=False).network_address


class SignatureError(Exception):
    """A call does not fit the function's signature; `arg` is the offending argument or None."""

    def __init__(self, message: str, arg: int | None = None) -> None:
        super().__init__(message)
        self.message = message
        self.arg = arg


Checker = Callable[[Sequence[Type]], Type]


@dataclass(frozen=True)
class Function:
    name: str
    impl: Callable[..., Any]
    check: Checker  # argument types -> result type, or SignatureError
    # How a `[*]` first argument is used: "map" applies the function to each element,
    # "consume" hands it the whole sequence (any, all, concat, join).
    star: str = "map"
    # Arguments (by position) that must be literals because Cloudflare requires them to be.
    literal_args: tuple[int, ...] = ()


def _arity(types: Sequence[Type], lo: int, hi: int) -> None:
    if not lo <= len(types) <= hi:
        raise SignatureError("invalid number of arguments")


def _want(types: Sequence[Type], i: int, *allowed: Type) -> None:
    if types[i] not in allowed:
        names = " or ".join(str(a) for a in allowed)
        raise SignatureError(f"expected value of type {names}, but got {types[i]}", i)


def _fixed(result: Type, *params: Type | tuple[Type, ...], optional: int = 0) -> Checker:
    def check(types: Sequence[Type]) -> Type:
        _arity(types, len(params) - optional, len(params))
        for i in range(len(types)):
            p = params[i]
            _want(types, i, *(p if isinstance(p, tuple) else (p,)))
        return result

    return check


def _check_bool_array(types: Sequence[Type]) -> Type:
    _arity(types, 1, 1)
    _want(types, 0, array(BOOL))
    return BOOL


def _check_concat(types: Sequence[Type]) -> Type:
    if len(types) < 2:
        raise SignatureError("invalid number of arguments")
    first = types[0]
    if first != STRING and first.kind != "Array":
        raise SignatureError(f"expected value of type String or Array, but got {first}", 0)
    for i in range(1, len(types)):
        _want(types, i, first)
    return first


def _check_len(types: Sequence[Type]) -> Type:
    _arity(types, 1, 1)
    if types[0] != STRING and types[0].kind != "Array":
        raise SignatureError(f"expected value of type String or Array, but got {types[0]}", 0)
    return INT


def _check_lookup(result: Type) -> Checker:
    def check(types: Sequence[Type]) -> Type:
        if len(types) < 2:
            raise SignatureError("invalid number of arguments")
        _want(types, 0, STRING)
        for i in range(1, len(types)):
            _want(types, i, STRING, INT)
        return result

    return check


FUNCTIONS: dict[str, Function] = {
    f.name: f
    for f in (
        Function("any", f_any, _check_bool_array, star="consume"),
        Function("all", f_all, _check_bool_array, star="consume"),
        Function("concat", f_concat, _check_concat, star="consume"),
        Function("join", f_join, _fixed(STRING, array(STRING), STRING), star="consume"),
        Function("starts_with", f_starts_with, _fixed(BOOL, STRING, STRING)),
        Function("ends_with", f_ends_with, _fixed(BOOL, STRING, STRING)),
        Function("len", f_len, _check_len),
        Function("lower", f_lower, _fixed(STRING, STRING)),
        Function("upper", f_upper, _fixed(STRING, STRING)),
        Function("substring", f_substring, _fixed(STRING, STRING, INT, INT, optional=1)),
        Function("url_decode", f_url_decode, _fixed(STRING, STRING, STRING, optional=1)),
        Function("decode_base64", f_decode_base64, _fixed(STRING, STRING)),
        Function("lookup_json_string", f_lookup_json_string, _check_lookup(STRING)),
        Function("lookup_json_integer", f_lookup_json_integer, _check_lookup(INT)),
        Function("to_string", f_to_string, _fixed(STRING, (INT, BOOL, IP, STRING))),
        Function("cidr", f_cidr, _fixed(IP, IP, INT, INT), literal_args=(1, 2)),
        Function("cidr6", f_cidr6, _fixed(IP, IP, INT), literal_args=(1,)),
    )
}

# Functions whose result is MISSING for some inputs even when every argument is present.
MAY_MISS = frozenset({"lookup_json_string", "lookup_json_integer", "decode_base64"})
