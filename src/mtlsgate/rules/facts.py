"""Field values given as text (the CLI's --field NAME=VALUE) turned into typed facts."""

from __future__ import annotations

import ipaddress
import json
from typing import Any

from mtlsgate.rules.scheme import BOOL, INT, IP, STRING, Scheme, Type


def parse_field_value(t: Type, text: str) -> Any:
    """`true`/`false` for Bool, a decimal integer, an IP address, a plain string, or JSON for
    arrays and maps. Raises ValueError with a readable message."""
    if t == BOOL:
        if text not in ("true", "false"):
            raise ValueError(f"expected true or false, got {text!r}")
        return text == "true"
    if t == INT:
        try:
            return int(text, 10)
        except ValueError:
            raise ValueError(f"expected a decimal integer, got {text!r}") from None
    if t == IP:
        try:
            return ipaddress.ip_address(text)
        except ValueError:
            raise ValueError(f"expected an IP address, got {text!r}") from None
    if t == STRING:
        return text
    try:
        value = json.loads(text)
    except ValueError:
        raise ValueError(f"expected JSON for a value of type {t}, got {text!r}") from None
    if not _conforms(t, value):
        raise ValueError(f"the JSON value does not have type {t}")
    if t.kind == "Map":
        return {str(k): v for k, v in value.items()}
    return value


def _conforms(t: Type, value: Any) -> bool:
    if t == BOOL:
        return isinstance(value, bool)
    if t == INT:
        return isinstance(value, int) and not isinstance(value, bool)
    if t == STRING:
        return isinstance(value, str)
    if t.kind == "Array":
        assert t.elem is not None
        return isinstance(value, list) and all(_conforms(t.elem, v) for v in value)
    if t.kind == "Map":
        assert t.elem is not None
        return isinstance(value, dict) and all(_conforms(t.elem, v) for v in value.values())
    return False


def facts_from_text(scheme: Scheme, given: dict[str, str]) -> dict[str, Any]:
    """Typed facts for every given field; raises ValueError naming the field at fault."""
    facts: dict[str, Any] = {}
    for name, text in given.items():
        fld = scheme.get(name)
        if fld is None:
            raise ValueError(f"unknown field {name!r}")
        try:
            facts[fld.key] = parse_field_value(fld.type, text)
        except ValueError as exc:
            raise ValueError(f"{name}: {exc}") from None
    return facts
