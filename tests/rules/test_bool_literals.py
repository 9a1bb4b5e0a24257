"""`true` and `false` are expressions of their own (Cloudflare's "every request" rule is `true`)."""

import pytest

from mtlsgate.rules import RulesError, compile_expression
from mtlsgate.rules.fields_cloudflare import SCHEME
from mtlsgate.rules.parser import parse
from mtlsgate.rules.printer import to_text


@pytest.mark.parametrize(
    ("expr", "ssl", "expected"),
    [
        ("true", False, True),
        ("false", True, False),
        ("not true", True, False),
        ("false or ssl", True, True),
        ("true and not ssl", True, False),
        ("(true xor ssl)", True, False),
    ],
)
def test_bool_literals(expr: str, ssl: bool, expected: bool) -> None:
    compiled = compile_expression(expr)
    assert compiled.fn({"ssl": ssl}) is expected
    assert parse(to_text(compiled.tree), SCHEME) == compiled.tree


def test_bool_literal_is_not_comparable() -> None:
    with pytest.raises(RulesError) as info:
        compile_expression("true eq 1")
    assert "^" in info.value.render()
