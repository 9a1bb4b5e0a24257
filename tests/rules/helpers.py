"""Shared helpers for the Rules language tests: compile, fill defaults, evaluate."""

from __future__ import annotations

import ipaddress
from typing import Any

from mtlsgate.rules import RulesError, compile_expression
from mtlsgate.rules.fields_cloudflare import SCHEME
from mtlsgate.rules.scheme import default_value


def facts_for(fields: frozenset[str], given: dict[str, Any]) -> dict[str, Any]:
    """Every field the rule reads: the given value (IP text becomes an address), else the
    field's default, exactly as the edge and `mtlsgate rules eval` fill them."""
    facts: dict[str, Any] = {}
    for key in fields:
        fld = SCHEME.get(key)
        assert fld is not None, key
        facts[key] = default_value(fld.type)
    for name, value in given.items():
        fld = SCHEME.get(name)
        assert fld is not None, f"unknown field in test table: {name}"
        if fld.type.kind == "IP" and isinstance(value, str):
            value = ipaddress.ip_address(value)
        facts[fld.key] = value
    return facts


def evaluate(expression: str, given: dict[str, Any] | None = None) -> Any:
    compiled = compile_expression(expression)
    return compiled(facts_for(compiled.fields, given or {}))


def error_of(expression: str) -> RulesError:
    try:
        compile_expression(expression)
    except RulesError as exc:
        return exc
    raise AssertionError(f"expected a RulesError for {expression!r}")
