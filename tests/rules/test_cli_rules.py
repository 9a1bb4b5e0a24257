"""`mtlsgate rules check` / `mtlsgate rules eval`: exit codes, output, light imports, speed."""

from __future__ import annotations

import json
import subprocess
import sys
import time
from typing import Any

import pytest

from mtlsgate.cli.main import main

HEAVY = ("sqlalchemy", "fastapi", "alembic", "uvicorn", "starlette", "pydantic", "psycopg")


def run(args: list[str], capsys: pytest.CaptureFixture[str]) -> tuple[int, str, str]:
    try:
        main(args)
        code = 0
    except SystemExit as exc:
        code = int(exc.code or 0)
    out, err = capsys.readouterr()
    return code, out, err


def test_check_valid_exits_0(capsys: pytest.CaptureFixture[str]) -> None:
    code, _out, err = run(["rules", "check", 'http.host eq "a" and ssl'], capsys)
    assert code == 0 and err == ""


def test_check_invalid_exits_1_with_caret_on_stderr(capsys: pytest.CaptureFixture[str]) -> None:
    code, out, err = run(["rules", "check", "http.host eq 1"], capsys)
    assert code == 1
    assert out == ""
    assert err == (
        "Filter parsing error (1:14):\nhttp.host eq 1\n"
        "             ^ expected a string literal in double quotes\n"
    )


def test_check_unavailable_field(capsys: pytest.CaptureFixture[str]) -> None:
    code, _out, err = run(["rules", "check", 'ip.src.country eq "US"'], capsys)
    assert code == 1 and "geolocation" in err and "^^^^" in err


def test_check_bad_regex_prints_only_the_diagnostic(capfd: pytest.CaptureFixture[str]) -> None:
    try:
        main(["rules", "check", 'http.host matches "("'])
    except SystemExit as exc:
        assert exc.code == 1
    err = capfd.readouterr().err
    assert err.startswith("Filter parsing error (1:19):")
    assert "re2.cc" not in err  # no RE2 log lines


EVAL_CASES: list[tuple[str, list[str], str]] = [
    ("ssl", ["ssl=true"], "true"),
    ("ssl", ["ssl=false"], "false"),
    ("ssl", [], "false"),  # unset fields take defaults
    ('http.host eq ""', [], "true"),
    ("cf.edge.server_port eq 443", ["cf.edge.server_port=443"], "true"),
    ("ip.src in {10.0.0.0/8}", ["ip.src=10.1.2.3"], "true"),
    ("ip.src in {2001:db8::/32}", ["ip.src=2001:db8::5"], "true"),
    ("ip.src eq 0.0.0.0", [], "true"),
    ('http.host eq "a=b c"', ["http.host=a=b c"], "true"),  # split on the first =
    ('http.host eq "[1]"', ["http.host=[1]"], "true"),  # plain strings are not JSON
    ('any(http.request.headers.names[*] eq "x")', ['http.request.headers.names=["a","x"]'], "true"),
    ('http.request.headers["x-a"][0] eq "1"', ['http.request.headers={"x-a":["1"]}'], "true"),
    ('http.request.headers["x-a"][0] ne "1"', ["http.request.headers={}"], "false"),
    (
        '(http.host in {"api.example.com" "mtls.example.org"} '
        "and not cf.tls_client_auth.cert_verified)",
        ["http.host=api.example.com", "cf.tls_client_auth.cert_verified=false"],
        "true",
    ),
    (
        '(http.host in {"api.example.com"} and not cf.tls_client_auth.cert_verified)',
        ["http.host=api.example.com", "cf.tls_client_auth.cert_verified=true"],
        "false",
    ),
    ('raw.http.host eq "a"', ["raw.http.host=a"], "true"),
]


@pytest.mark.parametrize(("expr", "fields", "expected"), EVAL_CASES)
def test_eval_prints_true_or_false(
    expr: str, fields: list[str], expected: str, capsys: pytest.CaptureFixture[str]
) -> None:
    args = ["rules", "eval", expr]
    for f in fields:
        args += ["--field", f]
    code, out, err = run(args, capsys)
    assert (code, out, err) == (0, expected + "\n", "")


@pytest.mark.parametrize(
    ("field", "needle"),
    [
        ("ssl=yes", "expected true or false"),
        ("cf.edge.server_port=0x10", "decimal integer"),
        ("ip.src=1.2.3", "IP address"),
        ("http.request.headers.names=a,b", "JSON"),
        ("http.request.headers.names=[1]", "does not have type"),
        ("nosuch.field=1", "unknown field"),
        ("ssl", "NAME=VALUE"),
    ],
)
def test_eval_rejects_bad_values(
    field: str, needle: str, capsys: pytest.CaptureFixture[str]
) -> None:
    code, _out, err = run(["rules", "eval", "ssl", "--field", field], capsys)
    assert code == 2
    assert needle in err


def test_eval_invalid_expression_exits_1(capsys: pytest.CaptureFixture[str]) -> None:
    code, out, err = run(["rules", "eval", "ssl and"], capsys)
    assert code == 1 and out == "" and "^ unrecognised input" in err


_PROBE = """
import json, sys, time
t = time.perf_counter()
from mtlsgate.cli.main import main
args = json.loads(sys.argv[1])
try:
    main(args)
except SystemExit as exc:
    code = exc.code
heavy = sorted(m for m in sys.modules if m.split(".")[0] in {heavy!r})
print(json.dumps({{"code": code, "heavy": heavy, "seconds": time.perf_counter() - t}}),
      file=sys.stderr)
"""


def _probe(args: list[str]) -> tuple[dict[str, Any], str]:
    proc = subprocess.run(
        [sys.executable, "-c", _PROBE.format(heavy=HEAVY), json.dumps(args)],
        capture_output=True,
        text=True,
        timeout=60,
    )
    report = json.loads(proc.stderr.strip().splitlines()[-1])
    return report, proc.stdout


@pytest.mark.parametrize(
    "args",
    [
        ["rules", "check", 'http.host eq "a"'],
        ["rules", "check", "http.host eq"],
        ["rules", "eval", 'http.host eq "a"', "--field", "http.host=a"],
    ],
)
def test_rules_commands_import_only_the_rules_package(args: list[str]) -> None:
    report, stdout = _probe(args)
    assert report["heavy"] == [], report
    assert report["seconds"] < 2.0, report  # generous: a DoS guard, not a benchmark
    if args[1] == "eval":
        assert stdout == "true\n"


def test_rules_check_answers_quickly_end_to_end() -> None:
    start = time.perf_counter()
    proc = subprocess.run(
        [sys.executable, "-m", "mtlsgate.cli.main", "rules", "check", "ssl"],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert proc.returncode == 0, proc.stderr
    assert time.perf_counter() - start < 5.0
