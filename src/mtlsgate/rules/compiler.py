"""Typed AST → one Python function, generated as source and compiled once.

The generated code is what a person would write by hand for the same rule: field reads are
`f["name"]` on the facts mapping (so a rule reads only the fields it uses, and facts computed on
demand are computed only then), sets are frozensets, regexes and wildcards are RE2 programs
compiled at rule-compile time, and missing values are guarded only where they can occur.
"""

from __future__ import annotations

import ipaddress
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

import re2

from mtlsgate.rules import ast
from mtlsgate.rules.functions import FUNCTIONS, MISSING
from mtlsgate.rules.lexer import wildcard_parts
from mtlsgate.rules.parser import parse, regex_options
from mtlsgate.rules.scheme import BOOL, IP, Scheme, Type

_COMPARE = {"eq": "==", "ne": "!=", "lt": "<", "le": "<=", "gt": ">", "ge": ">="}


@dataclass(frozen=True)
class CompiledExpression:
    text: str
    tree: ast.Expr
    fields: frozenset[str]  # the facts keys it reads
    source: str
    fn: Callable[[Mapping[str, Any]], Any]

    def __call__(self, facts: Mapping[str, Any]) -> Any:
        return self.fn(facts)


def compile_expression(
    text: str, scheme: Scheme | None = None, *, expect: Type = BOOL
) -> CompiledExpression:
    """Parse, type-check and compile; raises RulesError with the caret diagnostic."""
    if scheme is None:
        from mtlsgate.rules.fields_cloudflare import SCHEME

        scheme = SCHEME
    tree = parse(text, scheme, expect=expect)
    gen = _CodeGen()
    body = gen.bool_expr(tree) if expect == BOOL else gen.expr(tree)
    source = f"def _rule(f):\n    return {body}\n"
    namespace: dict[str, Any] = {"MISSING": MISSING, **gen.consts}
    exec(compile(source, "<rule>", "exec"), namespace)
    return CompiledExpression(text, tree, frozenset(gen.fields), source, namespace["_rule"])


def _index(a: Any, i: int) -> Any:
    if a is MISSING or i >= len(a):
        return MISSING
    return a[i]


def _key(m: Any, k: str) -> Any:
    return MISSING if m is MISSING else m.get(k, MISSING)


def _each(a: Any) -> Any:
    return () if a is MISSING else a


def _wildcard_matcher(pattern: str, *, case_sensitive: bool) -> Callable[[Any], bool]:
    """Cloudflare matches wildcards on bytes, and `wildcard` folds ASCII letters only: the
    pattern becomes an RE2 program over Latin-1 (one char per byte) with `[aA]` classes."""
    out = []
    for part in wildcard_parts(pattern):
        if part is None:
            out.append(".*")
            continue
        for byte in part.encode("utf-8", "surrogateescape"):
            ch = chr(byte)
            if not case_sensitive and ch.isascii() and ch.isalpha():
                out.append(f"[{ch.lower()}{ch.upper()}]")
            else:
                out.append(re2.escape(ch))
    options = regex_options()
    options.encoding = re2.Options.Encoding.LATIN1
    options.dot_nl = True
    fullmatch = re2.compile("".join(out).encode("latin-1"), options=options).fullmatch

    def match(value: Any) -> bool:
        return fullmatch(value.encode("utf-8", "surrogateescape")) is not None

    return match


def _regex_searcher(pattern: str) -> Callable[[Any], bool]:
    search = re2.compile(pattern, options=regex_options()).search

    def match(value: Any) -> bool:
        try:
            return search(value) is not None
        except UnicodeEncodeError:
            # Bytes that were not UTF-8 (surrogateescape) match nothing but `.`-like classes.
            clean = value.encode("utf-8", "surrogateescape").decode("utf-8", "replace")
            return search(clean) is not None

    return match


def _set_matcher(items: tuple[object, ...], t: Type) -> tuple[str, Any]:
    """('in', frozenset) for plain sets; ('call', predicate) when ranges or CIDRs are present."""
    exact = frozenset(i for i in items if not isinstance(i, (ast.Range, ipaddress._BaseNetwork)))
    ranges = tuple((r.lo, r.hi) for r in items if isinstance(r, ast.Range))
    nets = tuple(n for n in items if isinstance(n, ipaddress._BaseNetwork))
    if not ranges and not nets:
        return "in", exact
    if t == IP:
        ip_ranges = tuple((lo, hi, lo.version) for lo, hi in ranges)  # type: ignore[attr-defined]

        def ip_match(v: Any) -> bool:
            if v in exact:
                return True
            ver = v.version
            for n in nets:
                if n.version == ver and v in n:
                    return True
            return any(rv == ver and lo <= v <= hi for lo, hi, rv in ip_ranges)

        return "call", ip_match

    def int_match(v: Any) -> bool:
        return v in exact or any(lo <= v <= hi for lo, hi in ranges)

    return "call", int_match


class _CodeGen:
    def __init__(self) -> None:
        self.consts: dict[str, Any] = {"_index": _index, "_key": _key, "_each": _each}
        self.fields: set[str] = set()
        self._n = 0
        self._star_vars: dict[int, str] = {}

    def const(self, value: Any) -> str:
        name = f"_k{self._n}"
        self._n += 1
        self.consts[name] = value
        return name

    def temp(self) -> str:
        self._n += 1
        return f"_t{self._n}"

    def literal(self, v: object) -> str:
        if isinstance(v, (str, int)) and not isinstance(v, bool):
            return repr(v)
        return self.const(v)

    def bool_expr(self, e: ast.Expr) -> str:
        code = self.expr(e)
        return f"({code} is True)" if e.may_miss else code

    def expr(self, e: ast.Expr) -> str:
        if isinstance(e, ast.FieldRef):
            self.fields.add(e.key)
            return f"f[{e.key!r}]"
        if isinstance(e, ast.Lit):
            return self.literal(e.value)
        if isinstance(e, ast.Index):
            return f"_index({self.expr(e.base)}, {e.index})"
        if isinstance(e, ast.MapKey):
            return f"_key({self.expr(e.base)}, {e.key!r})"
        if isinstance(e, ast.Star):
            return self._star_vars[id(e)]
        if isinstance(e, ast.Call):
            return self.call(e)
        if isinstance(e, ast.Compare):
            return self.compare(e)
        if isinstance(e, ast.Not):
            return f"(not {self.bool_expr(e.operand)})"
        if isinstance(e, ast.Logical):
            parts = [self.bool_expr(o) for o in e.operands]
            joiner = {"and": " and ", "or": " or ", "xor": " ^ "}[e.op]
            return "(" + joiner.join(parts) + ")"
        raise TypeError(f"cannot compile {e!r}")

    def call(self, e: ast.Call) -> str:
        fn = FUNCTIONS[e.name]
        args = list(e.args)
        if args and args[0].starred and fn.star == "consume":
            star = _find_star(args[0])
            var = f"_e{self._n}"
            self._n += 1
            self._star_vars[id(star)] = var
            source = self.expr(star.base)
            if star.base.may_miss:
                source = f"_each({source})"
            if e.name in ("any", "all"):
                return f"{e.name}({self.bool_expr(args[0])} for {var} in {source})"
            first = f"[{self.expr(args[0])} for {var} in {source}]"
            rest = [self.expr(a) for a in args[1:]]
            return f"{self.const(fn.impl)}({', '.join([first, *rest])})"
        codes = [self.expr(a) for a in args]
        guarded = any(a.may_miss for a in args)
        # The common string tests as direct method calls: as fast as hand-written code.
        if not guarded and e.name in ("starts_with", "ends_with"):
            method = "startswith" if e.name == "starts_with" else "endswith"
            return f"{codes[0]}.{method}({codes[1]})"
        if not guarded and e.name in ("any", "all"):
            return f"{e.name}({codes[0]})"
        return f"{self.const(fn.impl)}({', '.join(codes)})"

    def compare(self, e: ast.Compare) -> str:
        lhs = self.expr(e.lhs)
        guard = None
        if e.lhs.may_miss:
            guard = self.temp()
            lhs, guard_expr = guard, lhs
        test = self._test(e, lhs)
        if guard is not None:
            return f"(({guard} := {guard_expr}) is not MISSING and {test})"
        return f"({test})"

    def _test(self, e: ast.Compare, lhs: str) -> str:
        op, rhs = e.op, e.rhs
        if isinstance(rhs, ast.SetLit):
            kind, matcher = _set_matcher(rhs.items, rhs.type)
            name = self.const(matcher)
            return f"{lhs} in {name}" if kind == "in" else f"{name}({lhs})"
        value = rhs.value
        if op in _COMPARE:
            return f"{lhs} {_COMPARE[op]} {self.literal(value)}"
        if op == "contains":
            return f"{self.literal(value)} in {lhs}"
        if op == "matches":
            return f"{self.const(_regex_searcher(str(value)))}({lhs})"
        if op in ("wildcard", "strict_wildcard"):
            matcher = _wildcard_matcher(str(value), case_sensitive=op == "strict_wildcard")
            return f"{self.const(matcher)}({lhs})"
        if op == "bitwise_and":
            return f"({lhs} & {self.literal(value)}) != 0"
        raise TypeError(f"unknown operator {op}")


def _find_star(e: ast.Expr) -> ast.Star:
    if isinstance(e, ast.Star):
        return e
    children: tuple[ast.Expr, ...] = ()
    if isinstance(e, (ast.Index, ast.MapKey)):
        children = (e.base,)
    elif isinstance(e, ast.Call):
        children = e.args[:1]
    elif isinstance(e, ast.Compare):
        children = (e.lhs,)
    for child in children:
        if child.starred:
            return _find_star(child)
    raise AssertionError("starred expression without [*]")
