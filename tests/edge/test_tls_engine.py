"""The TLS engine's choice of path: the fast path at the tested versions, the public API as the
fallback when the fast path is not allowed, not usable or fails its self-test.

Both paths run the whole edge suite (the `edge` fixture is parametrised); here the selection
logic and the self-test themselves, in this process.
"""

from __future__ import annotations

import logging
from datetime import UTC, datetime, timedelta
from typing import Any

import OpenSSL._util
import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID
from OpenSSL import SSL

from mtlsgate.edge import tls
from mtlsgate.edge.runtime import tls_engine, tls_selftest
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


# --- the server's chain of a leaf-only identity (edge/tls.py _complete_chain) -------------------


def _cert(
    cn: str, key: Any, issuer: x509.Certificate | None, issuer_key: Any, ca: bool, days: float = 1
) -> x509.Certificate:
    """make_certificate with a chosen end of validity (negative: already expired)."""
    now = datetime.now(UTC)
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, cn)])
    return (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(issuer.subject if issuer is not None else name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - timedelta(days=30))
        .not_valid_after(now + timedelta(days=days))
        .add_extension(x509.BasicConstraints(ca=ca, path_length=None), critical=True)
        .sign(issuer_key if issuer_key is not None else key, hashes.SHA256())
    )


def _served_chain(engine: tls_engine.Engine, leaf: x509.Certificate, key: Any,
                  anchors: list[x509.Certificate]) -> list[bytes]:  # fmt: skip
    """The certificates a client receives from a context for `leaf` alone, trusting `anchors`."""
    pem = serialization.Encoding.PEM
    key_pem = key.private_bytes(
        pem, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
    ).decode()
    context = tls.build_context(
        tls.ServerIdentity(leaf.public_bytes(pem).decode(), key_pem),
        trust_anchors=anchors,
        request_client_cert=True,
    )
    assert OpenSSL._util.lib.ERR_peek_error() == 0  # nothing left for a later SSL_get_error
    engine.prepare_context(context, True)
    client = tls_selftest._client(None, key)
    problem, verdict = tls_selftest._exchange(engine, context, client)
    assert problem == "" and not verdict.presented
    chain = client.get_peer_cert_chain(as_cryptography=True) or []
    return [c.public_bytes(serialization.Encoding.DER) for c in chain]


@pytest.mark.parametrize("path", ["fast", "public"])
def test_a_leaf_only_identity_serves_the_chain_openssl_would_build(
    path: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    # OpenSSL completes a leaf-only server chain from the context's store (the client trust
    # anchors) on every handshake; build_context does it once. Clients must see the same
    # certificates either way, including where build_context leaves it to OpenSSL.
    engine = tls_engine.select_engine(choice=path)
    ca_key, other_key, key = (ec.generate_private_key(ec.SECP256R1()) for _ in range(3))
    ca = _cert("private CA", ca_key, None, None, ca=True)
    same_name = _cert("private CA", other_key, None, None, ca=True)  # re-keyed: bad signature
    expired_ca = _cert("old CA", ca_key, None, None, ca=True, days=-1)
    stranger = _cert("another CA", other_key, None, None, ca=True)
    cases = {
        "issued by an anchor": (_cert("edge", key, ca, ca_key, False), [ca, stranger]),
        "issuer not trusted": (_cert("edge", key, stranger, other_key, False), [ca]),
        "self-signed": (_cert("edge", key, None, None, False), [ca]),
        "anchor of that name, other key": (_cert("edge", key, ca, ca_key, False), [same_name]),
        "two anchors of that name": (_cert("edge", key, ca, ca_key, False), [ca, same_name]),
        "expired anchor": (_cert("edge", key, expired_ca, ca_key, False), [expired_ca]),
    }
    completed = []
    add = SSL.Context.add_extra_chain_cert

    def spy(context: SSL.Context, cert: x509.Certificate) -> None:
        completed.append(cert)
        add(context, cert)

    monkeypatch.setattr(SSL.Context, "add_extra_chain_cert", spy)
    built = {label: _served_chain(engine, c[0], key, c[1]) for label, c in cases.items()}
    assert completed == [ca]  # built once only where it is plain; elsewhere OpenSSL as before
    monkeypatch.undo()
    monkeypatch.setattr(tls, "_complete_chain", lambda *_a: None)  # OpenSSL's per handshake
    for label, (leaf, anchors) in cases.items():
        assert built[label] == _served_chain(engine, leaf, key, anchors), label
    der = serialization.Encoding.DER
    assert built["issued by an anchor"] == [
        cases["issued by an anchor"][0].public_bytes(der),
        ca.public_bytes(der),
    ]
    assert built["issuer not trusted"] == [cases["issuer not trusted"][0].public_bytes(der)]
