"""AST → canonical expression text (parses back to an equal AST) and → JSON (golden files)."""

from __future__ import annotations

import ipaddress
from typing import Any

from mtlsgate.rules import ast

_SYMBOL = {"strict_wildcard": "strict wildcard"}


def _quote(s: str) -> str:
    out = []
    for ch in s:
        if ch == '"':
            out.append('\\"')
        elif ch == "\\":
            out.append("\\\\")
        elif "\udc80" <= ch <= "\udcff":  # a byte that was not UTF-8 (surrogateescape)
            out.append(f"\\x{ord(ch) - 0xDC00:02x}")
        else:
            out.append(ch)
    return '"' + "".join(out) + '"'


def _has_byte_escape(s: str) -> bool:
    return any("\udc80" <= ch <= "\udcff" for ch in s)


def _string(s: str, *, regex: bool = False) -> str:
    """A string literal that lexes back to `s`. A regex keeps its backslashes for RE2, and a
    quoted regex treats `\\"` differently inside `[...]`, so one with `\\` or `"` is printed raw;
    other strings with a backslash print raw for readability, unless they hold a non-UTF-8
    byte, which only the quoted form can spell (`\\xHH`)."""
    if regex:
        return _raw(s) if ("\\" in s or '"' in s) else _quote(s)
    if "\\" in s and not _has_byte_escape(s):
        return _raw(s)
    return _quote(s)


def _raw(s: str) -> str:
    hashes = 1
    while '"' + "#" * hashes in s:
        hashes += 1
    return "r" + "#" * hashes + '"' + s + '"' + "#" * hashes


def _value(v: object) -> str:
    if isinstance(v, str):
        return _quote(v)
    if isinstance(v, ast.Range):
        return f"{_value(v.lo)}..{_value(v.hi)}"
    if isinstance(v, bool):
        return "true" if v else "false"
    if isinstance(v, (int, ipaddress.IPv4Address, ipaddress.IPv6Address)):
        return str(v)
    if isinstance(v, (ipaddress.IPv4Network, ipaddress.IPv6Network)):
        return str(v)
    raise TypeError(f"cannot print {v!r}")


def to_text(e: ast.Expr | ast.SetLit) -> str:
    if isinstance(e, ast.FieldRef):
        return e.name
    if isinstance(e, ast.Lit):
        if isinstance(e.value, str):
            return _string(e.value)
        return _value(e.value)
    if isinstance(e, ast.SetLit):
        return "{" + " ".join(_value(i) for i in e.items) + "}"
    if isinstance(e, ast.Call):
        return f"{e.name}(" + ", ".join(to_text(a) for a in e.args) + ")"
    if isinstance(e, ast.Index):
        return f"{to_text(e.base)}[{e.index}]"
    if isinstance(e, ast.MapKey):
        return f"{to_text(e.base)}[{_quote(e.key)}]"
    if isinstance(e, ast.Star):
        return f"{to_text(e.base)}[*]"
    if isinstance(e, ast.Compare):
        if e.op == "matches" and isinstance(e.rhs, ast.Lit) and isinstance(e.rhs.value, str):
            rhs = _string(e.rhs.value, regex=True)
        else:
            rhs = to_text(e.rhs)
        return f"{to_text(e.lhs)} {_SYMBOL.get(e.op, e.op)} {rhs}"
    if isinstance(e, ast.Not):
        inner = to_text(e.operand)
        return (
            f"not ({inner})"
            if isinstance(e.operand, (ast.Logical, ast.Compare))
            else f"not {inner}"
        )
    if isinstance(e, ast.Logical):
        parts = [
            f"({to_text(o)})" if isinstance(o, ast.Logical) else to_text(o) for o in e.operands
        ]
        return f" {e.op} ".join(parts)
    raise TypeError(f"cannot print {e!r}")


def to_json(e: ast.Expr | ast.SetLit) -> dict[str, Any]:
    if isinstance(e, ast.FieldRef):
        return {"field": e.name, "type": str(e.type)}
    if isinstance(e, ast.Lit):
        return {"literal": _value(e.value), "type": str(e.type)}
    if isinstance(e, ast.SetLit):
        return {"set": [_value(i) for i in e.items], "type": str(e.type)}
    if isinstance(e, ast.Call):
        return {"call": e.name, "args": [to_json(a) for a in e.args], "type": str(e.type)}
    if isinstance(e, ast.Index):
        return {"index": e.index, "of": to_json(e.base), "type": str(e.type)}
    if isinstance(e, ast.MapKey):
        return {"key": e.key, "of": to_json(e.base), "type": str(e.type)}
    if isinstance(e, ast.Star):
        return {"each": to_json(e.base), "type": str(e.type)}
    if isinstance(e, ast.Compare):
        return {"op": e.op, "lhs": to_json(e.lhs), "rhs": to_json(e.rhs)}
    if isinstance(e, ast.Not):
        return {"not": to_json(e.operand)}
    if isinstance(e, ast.Logical):
        return {e.op: [to_json(o) for o in e.operands]}
    raise TypeError(f"cannot convert {e!r}")
