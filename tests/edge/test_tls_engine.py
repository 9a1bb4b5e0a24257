"""The TLS engine's choice of path: the fast path at the tested versions, the public API as the
fallback when the fast path is not allowed, not usable or fails its self-test.

Both paths run the whole edge suite (the `edge` fixture is parametrised); here the selection
logic and the self-test themselves, in this process.
"""

from __future__ import annotations

import logging

import pytest

from mtlsgate.edge.runtime import tls_engine
from mtlsgate.edge.runtime.tls_selftest import run_self_test


def test_the_fast_path_is_chosen_at_the_pinned_versions() -> None:
    engine = tls_engine.select_engine(choice="auto")
    assert engine.fast and engine.name == "fast"


def test_both_paths_pass_the_self_test() -> None:
    assert run_self_test(tls_engine.select_engine(choice="fast")) is None
    assert run_self_test(tls_engine.select_engine(choice="public")) is None


def test_public_is_used_when_asked() -> None:
    engine = tls_engine.select_engine(choice="public")
    assert not engine.fast and engine.name == "public"


def test_a_failing_self_test_falls_back_and_says_why(caplog: pytest.LogCaptureFixture) -> None:
    with caplog.at_level(logging.WARNING, logger="mtlsgate.edge"):
        engine = tls_engine.select_engine(lambda _e: "self-test (trusted client): boom")
    assert not engine.fast
    assert "using pyOpenSSL's public API" in caplog.text and "boom" in caplog.text


def test_a_crashing_self_test_falls_back() -> None:
    def crash(_engine: tls_engine.Engine) -> str | None:
        raise AttributeError("_into_ssl")

    assert not tls_engine.select_engine(crash).fast


def test_fast_required_but_unusable_is_an_error() -> None:
    with pytest.raises(RuntimeError, match="fast TLS path was required"):
        tls_engine.select_engine(lambda _e: "broken", choice="fast")


def test_other_library_versions_fall_back(
    monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    # The fast path reads pyOpenSSL's private attributes: at any version other than the one it
    # was tested with, the public API is used (the pins in pyproject.toml prevent this).
    monkeypatch.setitem(tls_engine.TESTED_VERSIONS, "pyopenssl", "0.0.1")
    with caplog.at_level(logging.WARNING, logger="mtlsgate.edge"):
        engine = tls_engine.select_engine()
    assert not engine.fast
    assert "differ from the tested" in caplog.text


def test_an_unknown_choice_is_refused() -> None:
    with pytest.raises(ValueError, match="MTLSGATE_EDGE_TLS"):
        tls_engine.select_engine(choice="turbo")


def test_pins_match_the_tested_versions() -> None:
    import tomllib
    from pathlib import Path

    project = tomllib.loads((Path(__file__).resolve().parents[2] / "pyproject.toml").read_text())
    deps = {d.split("==")[0].lower(): d.split("==")[1] for d in project["project"]["dependencies"]
            if "==" in d}  # fmt: skip
    assert deps.get("pyopenssl") == tls_engine.TESTED_VERSIONS["pyopenssl"]
    assert deps.get("cryptography") == tls_engine.TESTED_VERSIONS["cryptography"]
