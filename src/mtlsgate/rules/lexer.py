"""A cursor over expression text with the language's lexical rules.

The parser asks for the token it expects next, because what a token means depends on the
left-hand side's type (`10.0.0.1` is an IP after `ip.src eq`, never a field name).
"""

from __future__ import annotations

import re

from mtlsgate.rules.errors import RulesError

_IDENT = re.compile(r"[A-Za-z0-9_]+(?:\.[A-Za-z0-9_]+)*")
_WORD_CHAR = re.compile(r"[A-Za-z0-9_]")
_INT = re.compile(r"-?(?:0[xX][0-9A-Fa-f]+|[0-9]+)")
_IPISH = re.compile(r"[0-9A-Fa-f:.]+(?:/[0-9]+)?")
_LIST = re.compile(r"\$[a-z0-9_.]+")

# Cloudflare's engine skips only these between tokens: a TAB is an error there, and here.
WHITESPACE = " \r\n"

# The language's Int is a signed 64-bit integer, as in Cloudflare's engine.
INT_MIN = -(2**63)
INT_MAX = 2**63 - 1


def wildcard_parts(pattern: str) -> list[str | None]:
    """A wildcard pattern as literal runs and None for each `*`, with Cloudflare's rules: `\\*`
    is a literal star, `\\\\` a literal backslash, any other backslash is an error, and two
    stars in a row are an error. Raises ValueError with the reason."""
    parts: list[str | None] = []
    run: list[str] = []
    i = 0
    while i < len(pattern):
        ch = pattern[i]
        if ch == "\\":
            nxt = pattern[i + 1 : i + 2]
            if nxt not in ("*", "\\"):
                raise ValueError(
                    "invalid wildcard: a backslash must be followed by * or \\ "
                    "(write \\\\ for a backslash)"
                )
            run.append(nxt)
            i += 2
            continue
        if ch == "*":
            if run:
                parts.append("".join(run))
                run = []
            if parts and parts[-1] is None:
                raise ValueError("a wildcard pattern must not contain **")
            parts.append(None)
        else:
            run.append(ch)
        i += 1
    if run:
        parts.append("".join(run))
    return parts


class Cursor:
    def __init__(self, text: str) -> None:
        self.text = text
        self.pos = 0

    def error(self, reason: str, start: int | None = None, end: int | None = None) -> RulesError:
        s = self.pos if start is None else start
        return RulesError(reason, self.text, s, end)

    def skip_ws(self) -> None:
        while self.pos < len(self.text) and self.text[self.pos] in WHITESPACE:
            self.pos += 1

    def at_end(self) -> bool:
        self.skip_ws()
        return self.pos >= len(self.text)

    def peek(self, n: int = 1) -> str:
        self.skip_ws()
        return self.text[self.pos : self.pos + n]

    def take(self, literal: str) -> bool:
        """Consume `literal` (a symbol) if it is next."""
        self.skip_ws()
        if self.text.startswith(literal, self.pos):
            self.pos += len(literal)
            return True
        return False

    def take_word(self, word: str) -> bool:
        """Consume a lowercase keyword if it is next as a whole word."""
        self.skip_ws()
        end = self.pos + len(word)
        if self.text.startswith(word, self.pos) and not (
            end < len(self.text) and _WORD_CHAR.match(self.text[end])
        ):
            self.pos = end
            return True
        return False

    def expect(self, literal: str) -> None:
        if not self.take(literal):
            raise self.error(f'expected literal "{literal}"')

    def identifier(self) -> tuple[str, int] | None:
        self.skip_ws()
        m = _IDENT.match(self.text, self.pos)
        if m is None:
            return None
        self.pos = m.end()
        return m.group(0), m.start()

    def list_name(self) -> tuple[str, int] | None:
        self.skip_ws()
        m = _LIST.match(self.text, self.pos)
        if m is None:
            return None
        self.pos = m.end()
        return m.group(0), m.start()

    def integer(self) -> int | None:
        self.skip_ws()
        m = _INT.match(self.text, self.pos)
        if m is None or (m.end() < len(self.text) and _WORD_CHAR.match(self.text[m.end()])):
            return None
        raw = m.group(0)
        self.pos = m.end()
        digits = raw.lstrip("-")
        sign = -1 if raw.startswith("-") else 1
        if digits[:2] in ("0x", "0X"):
            value = sign * int(digits[2:], 16)
        elif len(digits) > 1 and digits.startswith("0"):
            try:
                value = sign * int(digits, 8)
            except ValueError:
                raise self.error("invalid octal integer", m.start(), m.end()) from None
        else:
            value = sign * int(digits)
        if not INT_MIN <= value <= INT_MAX:
            raise self.error(
                "integer out of range (the limit is a signed 64-bit integer)", m.start(), m.end()
            )
        return value

    def ipish(self) -> tuple[str, int] | None:
        """The text of an IP literal, CIDR or range (`a..b`), validated by the caller."""
        self.skip_ws()
        m = _IPISH.match(self.text, self.pos)
        if m is None:
            return None
        self.pos = m.end()
        return m.group(0), m.start()

    def string(self, *, regex: bool = False) -> tuple[str, bool] | None:
        """A quoted or raw string literal: (value, was_raw); None if none starts here."""
        self.skip_ws()
        t, p = self.text, self.pos
        if t.startswith("r", p) and p + 1 < len(t) and t[p + 1] in '"#':
            return self._raw_string(), True
        if not t.startswith('"', p):
            return None
        return (self._regex_string() if regex else self._quoted_string()), False

    def _raw_string(self) -> str:
        start = self.pos
        p = self.pos + 1
        hashes = 0
        while p < len(self.text) and self.text[p] == "#":
            hashes += 1
            p += 1
        if hashes > 255 or p >= len(self.text) or self.text[p] != '"':
            raise self.error('invalid raw string: expected r"..." or r#"..."#', start)
        closing = '"' + "#" * hashes
        end = self.text.find(closing, p + 1)
        if end == -1:
            raise self.error("could not find an ending quote", start, len(self.text))
        self.pos = end + len(closing)
        return self.text[p + 1 : end]

    def _quoted_string(self) -> str:
        start = self.pos
        out = bytearray()
        p = self.pos + 1
        t = self.text
        while True:
            if p >= len(t):
                raise self.error("could not find an ending quote", start, len(t))
            c = t[p]
            if c == '"':
                break
            if c == "\\":
                nxt = t[p + 1 : p + 2]
                if nxt in ('"', "\\"):
                    out += nxt.encode()
                    p += 2
                    continue
                if nxt == "x" and re.fullmatch(r"[0-9A-Fa-f]{2}", t[p + 2 : p + 4]):
                    out.append(int(t[p + 2 : p + 4], 16))
                    p += 4
                    continue
                if re.fullmatch(r"[0-7]{3}", t[p + 1 : p + 4]):
                    value = int(t[p + 1 : p + 4], 8)
                    if value > 255:
                        raise self.error("octal escape out of range", p, p + 4)
                    out.append(value)
                    p += 4
                    continue
                raise self.error('expected ", xHH or OOO after \\', p, p + 2)
            out += c.encode()
            p += 1
        self.pos = p + 1
        return out.decode("utf-8", errors="surrogateescape")

    def _regex_string(self) -> str:
        """The right-hand side of `matches`: backslashes reach the regex engine verbatim, except
        that `\\"` outside a character class is a quote; a quote inside `[...]` is literal."""
        start = self.pos
        out = []
        p = self.pos + 1
        t = self.text
        in_class = False
        while True:
            if p >= len(t):
                raise self.error("could not find an ending quote", start, len(t))
            c = t[p]
            if c == "\\" and p + 1 < len(t):
                if t[p + 1] == '"' and not in_class:
                    out.append('"')
                else:
                    out.append(t[p : p + 2])
                p += 2
                continue
            if c == '"' and not in_class:
                break
            if c == "[" and not in_class:
                in_class = True
            elif c == "]" and in_class:
                in_class = False
            out.append(c)
            p += 1
        self.pos = p + 1
        return "".join(out)
