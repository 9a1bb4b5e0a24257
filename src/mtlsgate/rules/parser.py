"""Text → typed AST. Parsing and type checking are one pass, as in Cloudflare's engine: the
left-hand side's type decides which operators and which literal forms may follow it."""

from __future__ import annotations

import ipaddress
import re

import re2

from mtlsgate.errors import QUOTE_LIMIT, quote, shorten
from mtlsgate.rules import ast
from mtlsgate.rules.errors import RulesError
from mtlsgate.rules.functions import FUNCTIONS, MAY_MISS, SignatureError
from mtlsgate.rules.lexer import Cursor, wildcard_parts
from mtlsgate.rules.scheme import BOOL, INT, IP, STRING, Scheme, Type, array

MAX_LENGTH = 4096
MAX_DEPTH = 64

# A lone surrogate cannot come from UTF-8 text (Cloudflare's API takes UTF-8 JSON).
_SURROGATE = re.compile("[\ud800-\udfff]")

# Bounds of the literal arguments that must be in range (cidr's prefix lengths).
_LITERAL_RANGES: dict[str, dict[int, tuple[int, int]]] = {
    "cidr": {1: (0, 32), 2: (0, 128)},
    "cidr6": {1: (0, 128)},
}


def regex_options() -> re2.Options:
    """RE2 options for `matches`: errors come back as exceptions, not as lines on stderr."""
    options = re2.Options()
    options.log_errors = False
    return options


OPERATORS_BY_TYPE: dict[str, frozenset[str]] = {
    "String": frozenset(
        {
            "eq",
            "ne",
            "lt",
            "le",
            "gt",
            "ge",
            "contains",
            "matches",
            "wildcard",
            "strict_wildcard",
            "in",
        }
    ),
    "Int": frozenset({"eq", "ne", "lt", "le", "gt", "ge", "in", "bitwise_and"}),
    "IP": frozenset({"eq", "ne", "in"}),
}

_WORD_OPS = (
    ("eq", "eq"),
    ("ne", "ne"),
    ("lt", "lt"),
    ("le", "le"),
    ("gt", "gt"),
    ("ge", "ge"),
    ("contains", "contains"),
    ("matches", "matches"),
    ("wildcard", "wildcard"),
    ("in", "in"),
    ("bitwise_and", "bitwise_and"),
)
_SYMBOL_OPS = (
    ("==", "eq"),
    ("!=", "ne"),
    ("<=", "le"),
    (">=", "ge"),
    ("<", "lt"),
    (">", "gt"),
    ("~", "matches"),
)


def parse(text: str, scheme: Scheme, *, expect: Type = BOOL) -> ast.Expr:
    return _Parser(text, scheme).parse(expect)


class _Parser:
    def __init__(self, text: str, scheme: Scheme) -> None:
        self.c = Cursor(text)
        self.text = text
        self.scheme = scheme
        self.depth = 0
        self.in_args = 0

    # --- structure -------------------------------------------------------------------------

    def parse(self, expect: Type) -> ast.Expr:
        if len(self.text) > MAX_LENGTH:
            raise self.c.error(
                f"expression is {len(self.text)} characters long; the limit is {MAX_LENGTH}",
                MAX_LENGTH,
                len(self.text),
            )
        bad = _SURROGATE.search(self.text)
        if bad is not None:
            raise self.c.error("the expression is not valid Unicode text", bad.start())
        if self.c.at_end():
            raise self.c.error("empty expression", 0)
        e = self.or_expr()
        if not self.c.at_end():
            raise self.unrecognised()
        if expect == BOOL:
            self.require_bool(e)
        elif e.type != expect or e.starred:
            raise self.c.error(
                f"expected an expression of type {expect}, but got {e.type}", *e.span
            )
        return e

    def unrecognised(self) -> RulesError:
        pos = self.c.pos
        if self.text[pos : pos + 1] == "\t":
            return self.c.error("a tab is not allowed between tokens: use spaces", pos)
        return self.c.error("unrecognised input", pos, len(self.text))

    def enter(self, start: int) -> None:
        self.depth += 1
        if self.depth > MAX_DEPTH:
            raise self.c.error(f"maximum nesting depth exceeded (limit: {MAX_DEPTH})", start)

    def require_bool(self, e: ast.Expr) -> None:
        if e.starred:
            raise self.c.error(
                "this gives one value per element of the [*] array: wrap it in any() or all()",
                *e.span,
            )
        if e.type != BOOL:
            raise self.c.error(
                f"expected a Boolean expression, but got {e.type}: compare it with an operator "
                "such as eq or in",
                *e.span,
            )

    def logical(self, op: str, next_level: str, words: tuple[str, str]) -> ast.Expr:
        start = self.c.pos
        parse_next = getattr(self, next_level)
        operands = [parse_next()]
        while self.c.take_word(words[0]) or self.c.take(words[1]):
            operands.append(parse_next())
        if len(operands) == 1:
            return operands[0]  # type: ignore[no-any-return]
        for o in operands:
            self.require_bool(o)
        return ast.Logical(op, tuple(operands), BOOL, (start, self.c.pos))

    def or_expr(self) -> ast.Expr:
        return self.logical("or", "xor_expr", ("or", "||"))

    def xor_expr(self) -> ast.Expr:
        return self.logical("xor", "and_expr", ("xor", "^^"))

    def and_expr(self) -> ast.Expr:
        return self.logical("and", "not_expr", ("and", "&&"))

    def not_expr(self) -> ast.Expr:
        self.c.skip_ws()
        start = self.c.pos
        if self.c.take_word("not") or (
            self.c.peek() == "!" and self.c.peek(2) != "!=" and self.c.take("!")
        ):
            self.enter(start)
            operand = self.not_expr()
            self.depth -= 1
            self.require_bool(operand)
            return ast.Not(operand, BOOL, (start, self.c.pos))
        return self.simple()

    def simple(self) -> ast.Expr:
        self.c.skip_ws()
        start = self.c.pos
        if self.c.take("("):
            self.enter(start)
            e = self.or_expr()
            self.c.expect(")")
            self.depth -= 1
            return e
        return self.comparison()

    # --- comparisons -----------------------------------------------------------------------

    def comparison(self) -> ast.Expr:
        self.c.skip_ws()
        start = self.c.pos
        lhs = self.value()
        if lhs.type == BOOL:
            op_start = self.c.pos
            if self.operator() is not None:
                raise self.c.error(
                    "a Boolean is tested on its own: write the field (or `not` and the field) "
                    "without a comparison",
                    op_start,
                    self.c.pos,
                )
            return lhs
        self.c.skip_ws()
        op_start = self.c.pos
        op = self.operator()
        if op is None:
            return lhs
        allowed = OPERATORS_BY_TYPE.get(lhs.type.kind, frozenset())
        if op not in allowed:
            hint = ""
            if lhs.type.is_container:
                hint = ': index it ([0], ["key"]) or use any(...[*] ...)'
            raise self.c.error(
                f"cannot perform this operation on type {lhs.type}{hint}", op_start, self.c.pos
            )
        rhs = self.rhs(op, lhs.type)
        return ast.Compare(op, lhs, rhs, BOOL, (start, self.c.pos), starred=lhs.starred)

    def operator(self) -> str | None:
        c = self.c
        if c.take_word("strict"):
            if not c.take_word("wildcard"):
                raise c.error('expected "wildcard" after "strict"')
            return "strict_wildcard"
        for word, op in _WORD_OPS:
            if c.take_word(word):
                return op
        for sym, op in _SYMBOL_OPS:
            if c.take(sym):
                return op
        if c.peek() == "&" and c.peek(2) != "&&":
            c.take("&")
            return "bitwise_and"
        return None

    def rhs(self, op: str, t: Type) -> ast.Lit | ast.SetLit:
        c = self.c
        c.skip_ws()
        start = c.pos
        if op == "in":
            if c.peek() == "$":
                name = c.list_name()
                end = c.pos if name else start + 1
                raise c.error(
                    'lists ($name) are not supported yet: use an inline set such as {"a" "b"}',
                    start,
                    end,
                )
            if not c.take("{"):
                raise c.error('expected literal "{"')
            items: list[object] = []
            while not c.take("}"):
                if c.at_end():
                    raise c.error('expected literal "}"')
                items.append(self.set_item(t))
            if not items:
                raise c.error("a set needs at least one value", start, c.pos)
            return ast.SetLit(tuple(items), t, (start, c.pos))
        if op == "matches":
            s = c.string(regex=True)
            if s is None:
                raise c.error("expected a string literal (the regular expression)")
            try:
                re2.compile(s[0], options=regex_options())
            except re2.error as exc:
                detail = exc.args[0] if exc.args else ""
                if isinstance(detail, bytes):
                    detail = detail.decode("utf-8", "replace")
                # (RE2's reason quotes the rest of the pattern from the fault on.)
                detail = shorten(detail, 2 * QUOTE_LIMIT)
                raise c.error(f"invalid regular expression: {detail}", start, c.pos) from None
            return ast.Lit(s[0], STRING, (start, c.pos), raw=s[1])
        if op in ("wildcard", "strict_wildcard"):
            s = c.string()
            if s is None:
                raise c.error("expected a string literal (the wildcard pattern)")
            try:
                wildcard_parts(s[0])
            except ValueError as exc:
                raise c.error(str(exc), start, c.pos) from None
            return ast.Lit(s[0], STRING, (start, c.pos), raw=s[1])
        if op == "bitwise_and":
            return self.int_literal()
        return self.literal(t)

    def literal(self, t: Type) -> ast.Lit:
        c = self.c
        c.skip_ws()
        start = c.pos
        if t == STRING:
            s = c.string()
            if s is None:
                raise c.error("expected a string literal in double quotes")
            return ast.Lit(s[0], STRING, (start, c.pos), raw=s[1])
        if t == INT:
            return self.int_literal()
        if t == IP:
            tok = c.ipish()
            if tok is None:
                raise c.error("expected an IP address")
            text, at = tok
            if "/" in text or ".." in text:
                raise c.error(
                    "a CIDR or range is only allowed in a set, e.g. ip.src in {10.0.0.0/8}",
                    at,
                    c.pos,
                )
            return ast.Lit(self.ip(text, at), IP, (start, c.pos))
        raise c.error(f"cannot perform this operation on type {t}", start)

    def int_literal(self) -> ast.Lit:
        c = self.c
        c.skip_ws()
        start = c.pos
        value = c.integer()
        if value is None:
            raise c.error("expected an integer")
        return ast.Lit(value, INT, (start, c.pos))

    def ip(self, text: str, at: int) -> ast.IPValue:
        try:
            return ipaddress.ip_address(text)
        except ValueError:
            raise self.c.error(f"invalid IP address {quote(text)}", at, at + len(text)) from None

    def set_item(self, t: Type) -> object:
        c = self.c
        c.skip_ws()
        start = c.pos
        if t == STRING:
            return self.literal(STRING).value
        if t == INT:
            lo = self.int_literal().value
            if c.take(".."):
                hi = self.int_literal().value
                if hi < lo:  # type: ignore[operator]
                    raise c.error("a range must go from low to high", start, c.pos)
                return ast.Range(lo, hi)
            return lo
        if t == IP:
            tok = c.ipish()
            if tok is None:
                raise c.error("expected an IP address, CIDR or range")
            text, at = tok
            if ".." in text:
                a, _, b = text.partition("..")
                lo_ip, hi_ip = self.ip(a, at), self.ip(b, at + len(a) + 2)
                if lo_ip.version != hi_ip.version or lo_ip > hi_ip:  # type: ignore[operator]
                    raise c.error("an IP range must go from low to high in one family", at, c.pos)
                return ast.Range(lo_ip, hi_ip)
            if "/" in text:
                try:
                    return ipaddress.ip_network(text, strict=False)
                except ValueError:
                    raise c.error(f"invalid CIDR {quote(text)}", at, c.pos) from None
            return self.ip(text, at)
        raise c.error(f"cannot use a set with type {t}", start)

    # --- values ----------------------------------------------------------------------------

    def value(self) -> ast.Expr:
        c = self.c
        c.skip_ws()
        start = c.pos
        ident = c.identifier()
        if ident is None:
            if c.peek() in ('"',) or c.peek(2) in ('r"', "r#"):
                raise c.error(
                    "expected a field or function; a literal can only follow an operator", start
                )
            raise self.unrecognised()
        name, at = ident
        node: ast.Expr
        if c.text.startswith("(", c.pos):
            node = self.call(name, at)
        elif name in ("true", "false"):
            # Cloudflare's rule for every request is the expression `true`.
            return ast.Lit(name == "true", BOOL, (at, c.pos))
        else:
            fld = self.scheme.get(name)
            if fld is None:
                reason = self.scheme.unavailable_reason(name)
                raise c.error(
                    f"{name}: {reason}" if reason else "unknown identifier", at, at + len(name)
                )
            node = ast.FieldRef(fld.name, fld.key, fld.type, (at, c.pos))
        while c.peek() == "[":
            node = self.postfix(node, start)
        return node

    def postfix(self, base: ast.Expr, start: int) -> ast.Expr:
        c = self.c
        c.take("[")
        c.skip_ws()
        at = c.pos
        if c.take("*"):
            c.expect("]")
            if base.type.kind != "Array":
                raise c.error(f"[*] needs an Array, but this is {base.type}", at, c.pos)
            if base.starred:
                raise c.error("only one [*] is allowed in an argument", at, c.pos)
            if self.in_args == 0:
                raise c.error("[*] can only be used in the first argument of a function", at, c.pos)
            assert base.type.elem is not None
            return ast.Star(base, base.type.elem, (start, c.pos))
        s = c.string()
        if s is not None:
            c.expect("]")
            if base.type.kind != "Map":
                raise c.error(f'a ["key"] lookup needs a Map, but this is {base.type}', at, c.pos)
            assert base.type.elem is not None
            return ast.MapKey(base, s[0], base.type.elem, (start, c.pos), starred=base.starred)
        index = c.integer()
        if index is None or index < 0:
            raise c.error('expected an index (0, 1, ...), [*] or a ["key"]', at)
        c.expect("]")
        if base.type.kind != "Array":
            raise c.error(f"an [index] needs an Array, but this is {base.type}", at, c.pos)
        assert base.type.elem is not None
        return ast.Index(base, index, base.type.elem, (start, c.pos), starred=base.starred)

    def call(self, name: str, at: int) -> ast.Call:
        c = self.c
        fn = FUNCTIONS.get(name)
        if fn is None:
            raise c.error(f"unknown function {shorten(name)}", at, at + len(name))
        self.enter(at)
        c.expect("(")
        args: list[ast.Expr] = []
        if not c.take(")"):
            while True:
                args.append(self.argument())
                if c.take(","):
                    continue
                c.expect(")")
                break
        self.depth -= 1
        span = (at, c.pos)
        for i, a in enumerate(args[1:], start=1):
            if a.starred:
                raise c.error("[*] can only be used in the first argument of a function", *a.span)
            if i in fn.literal_args and not isinstance(a, ast.Lit):
                raise c.error(f"argument {i + 1} of {name} must be a literal", *a.span)
            bounds = _LITERAL_RANGES.get(name, {}).get(i)
            if (
                bounds is not None
                and isinstance(a, ast.Lit)
                and isinstance(a.value, int)
                and not bounds[0] <= a.value <= bounds[1]
            ):
                raise c.error(
                    f"argument {i + 1} of {name} must be between {bounds[0]} and {bounds[1]}",
                    *a.span,
                )
        types = [a.type for a in args]
        star = bool(args) and args[0].starred
        if star and fn.star == "consume":
            types[0] = array(types[0])
        try:
            result = fn.check(types)
        except SignatureError as exc:
            where = args[exc.arg].span if exc.arg is not None else span
            raise c.error(exc.message, *where) from None
        may_miss = name in MAY_MISS or any(a.may_miss for a in args)
        return ast.Call(
            name,
            tuple(args),
            result,
            span,
            starred=star and fn.star == "map",
            may_miss=may_miss and not (star and fn.star == "consume" and name in ("any", "all")),
        )

    def argument(self) -> ast.Expr:
        c = self.c
        c.skip_ws()
        start = c.pos
        s = c.string()
        if s is not None:
            return ast.Lit(s[0], STRING, (start, c.pos), raw=s[1])
        if c.peek().isdigit() or (c.peek() == "-" and c.peek(2)[1:].isdigit()):
            return self.int_literal()
        self.in_args += 1
        try:
            return self.or_expr()
        finally:
            self.in_args -= 1
