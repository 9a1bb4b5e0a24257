"""The typed syntax tree. Spans are kept for diagnostics but ignored by equality, so a printed
and re-parsed expression compares equal to the original."""

from __future__ import annotations

import ipaddress
from dataclasses import dataclass, field
from typing import Union

from mtlsgate.rules.scheme import Type

Span = tuple[int, int]
IPValue = Union[ipaddress.IPv4Address, ipaddress.IPv6Address]  # noqa: UP007


@dataclass(frozen=True)
class FieldRef:
    name: str
    key: str
    type: Type
    span: Span = field(default=(0, 0), compare=False, repr=False)
    starred: bool = False
    may_miss: bool = False


@dataclass(frozen=True)
class Lit:
    value: object
    type: Type
    span: Span = field(default=(0, 0), compare=False, repr=False)
    raw: bool = field(default=False, compare=False)  # written as r"..."
    starred: bool = False
    may_miss: bool = False


@dataclass(frozen=True)
class Call:
    name: str
    args: tuple[Expr, ...]
    type: Type
    span: Span = field(default=(0, 0), compare=False, repr=False)
    starred: bool = False
    may_miss: bool = False


@dataclass(frozen=True)
class Index:
    base: Expr
    index: int
    type: Type
    span: Span = field(default=(0, 0), compare=False, repr=False)
    starred: bool = False
    may_miss: bool = True


@dataclass(frozen=True)
class MapKey:
    base: Expr
    key: str
    type: Type
    span: Span = field(default=(0, 0), compare=False, repr=False)
    starred: bool = False
    may_miss: bool = True


@dataclass(frozen=True)
class Star:
    """`base[*]`: each element of an array, for the function call that consumes it."""

    base: Expr
    type: Type  # the element type
    span: Span = field(default=(0, 0), compare=False, repr=False)
    starred: bool = True
    may_miss: bool = False


@dataclass(frozen=True)
class Range:
    lo: object
    hi: object


@dataclass(frozen=True)
class SetLit:
    items: tuple[object, ...]  # values, Range, or ipaddress networks
    type: Type
    span: Span = field(default=(0, 0), compare=False, repr=False)


@dataclass(frozen=True)
class Compare:
    op: str  # eq ne lt le gt ge contains matches wildcard strict_wildcard in bitwise_and
    lhs: Expr
    rhs: Lit | SetLit
    type: Type
    span: Span = field(default=(0, 0), compare=False, repr=False)
    starred: bool = False
    may_miss: bool = False


@dataclass(frozen=True)
class Not:
    operand: Expr
    type: Type
    span: Span = field(default=(0, 0), compare=False, repr=False)
    starred: bool = False
    may_miss: bool = False


@dataclass(frozen=True)
class Logical:
    op: str  # and | xor | or
    operands: tuple[Expr, ...]
    type: Type
    span: Span = field(default=(0, 0), compare=False, repr=False)
    starred: bool = False
    may_miss: bool = False


Expr = FieldRef | Lit | Call | Index | MapKey | Star | Compare | Not | Logical
