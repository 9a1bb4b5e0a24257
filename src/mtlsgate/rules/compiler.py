"""Typed AST → one Python function, generated as source and compiled once.

The generated code is what a person would write by hand for the same rule: field reads are
`f["name"]` on the facts mapping (so a rule reads only the fields it uses, and facts computed on
demand are computed only then), sets are frozensets, regexes and wildcards are RE2 programs
compiled at rule-compile time, and missing values are guarded only where they can occur.
"""

from __future__ import annotations

import ipaddress
import itertools
from bisect import bisect_right
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import re2

from mtlsgate.rules import ast
from mtlsgate.rules.functions import FUNCTIONS, MISSING
from mtlsgate.rules.lexer import wildcard_parts
from mtlsgate.rules.parser import parse, regex_options
from mtlsgate.rules.scheme import BOOL, IP, Scheme, Type

_COMPARE = {"eq": "==", "ne": "!=", "lt": "<", "le": "<=", "gt": ">", "ge": ">="}


# Names in generated code are unique in the process, so the bodies of several compiled
# expressions can be joined into one function (compile_first_match) without renaming.
_names = itertools.count()


@dataclass(frozen=True)
class CompiledExpression:
    """A compiled rule. Hot paths call `.fn` (or a compile_first_match function) directly:
    going through `__call__` costs a Python-level call, as much as a simple rule itself."""

    text: str
    tree: ast.Expr
    fields: frozenset[str]  # the facts keys it reads
    source: str
    fn: Callable[[Mapping[str, Any]], Any]
    body: str = field(repr=False, default="")
    consts: Mapping[str, Any] = field(repr=False, default_factory=dict)

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
    return CompiledExpression(
        text, tree, frozenset(gen.fields), source, namespace["_rule"], body, dict(gen.consts)
    )


def compile_first_match(rules: Sequence[CompiledExpression]) -> Callable[[Mapping[str, Any]], int]:
    """One function that returns the index of the first rule that matches, or -1: a ruleset
    evaluated as straight-line code, with no call per rule."""
    lines = ["def _first(f):"]
    namespace: dict[str, Any] = {"MISSING": MISSING}
    for i, rule in enumerate(rules):
        namespace.update(rule.consts)
        lines.append(f"    if {rule.body}:\n        return {i}")
    lines.append("    return -1")
    exec(compile("\n".join(lines) + "\n", "<ruleset>", "exec"), namespace)
    fn: Callable[[Mapping[str, Any]], int] = namespace["_first"]
    return fn


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


def _ip_intervals(items: tuple[object, ...], version: int) -> tuple[list[int], list[int]]:
    """Addresses, CIDRs and ranges of one IP family as merged [start, end] integer intervals."""
    spans: list[tuple[int, int]] = []
    for item in items:
        if isinstance(item, ast.Range):
            lo, hi = item.lo, item.hi
        elif isinstance(item, ipaddress._BaseNetwork):
            lo, hi = item.network_address, item.broadcast_address
        else:
            lo = hi = item
        if lo.version == version:  # type: ignore[attr-defined]
            spans.append((int(lo), int(hi)))  # type: ignore[call-overload]
    spans.sort()
    merged: list[list[int]] = []
    for lo, hi in spans:
        if merged and lo <= merged[-1][1] + 1:
            merged[-1][1] = max(merged[-1][1], hi)
        else:
            merged.append([lo, hi])
    return [m[0] for m in merged], [m[1] for m in merged]


def _ip_set_matcher(items: tuple[object, ...]) -> Callable[[Any], bool]:
    """Membership in a set of IPs, CIDRs and ranges: one binary search over merged intervals."""
    starts4, ends4 = _ip_intervals(items, 4)
    starts6, ends6 = _ip_intervals(items, 6)
    v4 = ipaddress.IPv4Address

    def match(v: Any) -> bool:
        x = int(v)
        if v.__class__ is v4:
            i = bisect_right(starts4, x) - 1
            return i >= 0 and x <= ends4[i]
        i = bisect_right(starts6, x) - 1
        return i >= 0 and x <= ends6[i]

    return match


class _CodeGen:
    def __init__(self) -> None:
        self.consts: dict[str, Any] = {"_index": _index, "_key": _key, "_each": _each}
        self.fields: set[str] = set()
        self._star_vars: dict[int, str] = {}

    def const(self, value: Any) -> str:
        name = f"_k{next(_names)}"
        self.consts[name] = value
        return name

    def temp(self) -> str:
        return f"_t{next(_names)}"

    def literal(self, v: object) -> str:
        if isinstance(v, (str, int)):  # bool is an int: True/False print as themselves
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
            var = f"_e{next(_names)}"
            self._star_vars[id(star)] = var
            source = self.expr(star.base)
            if star.base.may_miss:
                source = f"_each({source})"
            shortcut = self._any_shortcut(e, args[0], star, source)
            if shortcut is not None:
                return shortcut
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
        if not guarded and e.name in ("lower", "upper", "len") and args[0].type.kind != "Array":
            # ASCII, the usual case, through the built-in; the byte-exact rules otherwise.
            t = self.temp()
            fast = f"len({t})" if e.name == "len" else f"{t}.{e.name}()"
            return f"({fast} if ({t} := {codes[0]}).isascii() else {self.const(fn.impl)}({t}))"
        if not guarded and e.name == "len":
            return f"len({codes[0]})"
        return f"{self.const(fn.impl)}({', '.join(codes)})"

    def _any_shortcut(self, e: ast.Call, arg: ast.Expr, star: ast.Star, source: str) -> str | None:
        """`any(x[*] == "v")` is `"v" in x`; `any(x[*] in {...})` is a set intersection."""
        if e.name != "any" or not isinstance(arg, ast.Compare) or arg.lhs is not star:
            return None
        if arg.op == "eq" and isinstance(arg.rhs, ast.Lit):
            return f"({self.literal(arg.rhs.value)} in {source})"
        plain = isinstance(arg.rhs, ast.SetLit) and not any(
            isinstance(i, (ast.Range, ipaddress._BaseNetwork)) for i in arg.rhs.items
        )
        if arg.op == "in" and isinstance(arg.rhs, ast.SetLit) and plain:
            return f"(not {self.const(frozenset(arg.rhs.items))}.isdisjoint({source}))"
        return None

    def compare(self, e: ast.Compare) -> str:
        if isinstance(e.lhs, (ast.Index, ast.MapKey)):
            chain = self.access(e.lhs)
            if chain is not None:
                conds, value = chain
                return "(" + " and ".join([*conds, self._test(e, value)]) + ")"
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
            return self._in_set(rhs, lhs)
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

    def _in_set(self, rhs: ast.SetLit, lhs: str) -> str:
        if rhs.type == IP:
            if all(
                isinstance(i, (ipaddress.IPv4Address, ipaddress.IPv6Address)) for i in rhs.items
            ):
                return f"{lhs} in {self.const(frozenset(rhs.items))}"
            return f"{self.const(_ip_set_matcher(rhs.items))}({lhs})"
        exact = frozenset(i for i in rhs.items if not isinstance(i, ast.Range))
        ranges = [i for i in rhs.items if isinstance(i, ast.Range)]
        if not ranges:
            return f"{lhs} in {self.const(exact)}"
        # Integer ranges inline, as one would write them: `v in {...} or 8000 <= v <= 8009`.
        name = lhs if lhs.isidentifier() else self.temp()
        parts = [f"{r.lo!r} <= {name} <= {r.hi!r}" for r in ranges]
        if exact:
            parts.insert(0, f"{name} in {self.const(exact)}")
        if name != lhs:
            parts[0] = parts[0].replace(name, f"({name} := {lhs})", 1)
        return "(" + " or ".join(parts) + ")"

    def access(self, e: ast.Expr) -> tuple[list[str], str] | None:
        """A chain of ["key"] and [i] over a value that is never missing, as inline guards:
        (conditions, value code), or None when the chain cannot be written that way."""
        if not isinstance(e, (ast.Index, ast.MapKey)):
            return ([], self.expr(e)) if not e.may_miss else None
        inner = self.access(e.base)
        if inner is None:
            return None
        conds, base = inner
        t = self.temp()
        if isinstance(e, ast.MapKey):
            conds.append(f"({t} := {base}.get({e.key!r})) is not None")
            return conds, t
        conds.append(f"len({t} := {base}) > {e.index}")
        return conds, f"{t}[{e.index}]"


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
