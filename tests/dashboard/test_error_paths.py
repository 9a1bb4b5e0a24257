"""The dashboard's 500 path, in process (a failure cannot be provoked from outside a healthy
server, so one page's helper is made to raise): the error page carries the security headers,
and the log names the exception's type and the path, never its message (which could quote form
input, and a form may hold a token)."""

from __future__ import annotations

import logging
import re
from pathlib import Path

import pytest
from fastapi.testclient import TestClient

import mtlsgate.dashboard.events_pages as events_pages
from mtlsgate.api.app import create_app
from mtlsgate.cli.main import _open
from mtlsgate.dashboard.web import SECURITY_HEADERS
from tests.harness import run_cli

SECRET = "SECRET-FORM-INPUT-0f3a"


def test_internal_error_page_has_security_headers_and_quiet_log(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    data = tmp_path / "data"
    token = __import__("json").loads(
        run_cli("init", "--data-dir", str(data), "--zone", "example.com").stdout
    )["api_token"]
    _, store, keystore = _open(data, None)
    try:
        app = create_app(store, keystore)

        def boom(*args: object, **kwargs: object) -> None:
            raise ValueError(SECRET)

        monkeypatch.setattr(events_pages, "chart", boom)
        with TestClient(app, raise_server_exceptions=False) as c:
            r = c.get("/dash/sign-in")
            match = re.search(r'name="csrf_token" value="([^"]+)"', r.text)
            assert match
            r = c.post(
                "/dash/sign-in",
                data={"csrf_token": match.group(1), "api_token": token},
                follow_redirects=False,
            )
            assert r.status_code == 303, r.text
            caplog.clear()
            with caplog.at_level(logging.DEBUG):
                r = c.get("/dash/mtls-events")
        assert r.status_code == 500
        assert r.headers["content-type"].startswith("text/html")
        assert "Internal error" in r.text and SECRET not in r.text
        for name, value in SECURITY_HEADERS.items():
            assert r.headers.get(name) == value, name
        logged = "\n".join(
            rec.getMessage() + (str(rec.exc_info) if rec.exc_info else "") for rec in caplog.records
        )
        assert "ValueError" in logged and "/dash/mtls-events" in logged, logged
        assert SECRET not in logged and "Traceback" not in caplog.text, logged
        assert not any(rec.exc_info for rec in caplog.records)
    finally:
        store.dispose()
