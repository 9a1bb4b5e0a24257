"""Tests for mtlsgate.pki.client_auth: each field is compared with what `openssl x509` prints."""

from __future__ import annotations

import itertools
import re
from dataclasses import dataclass
from pathlib import Path

import pytest
from cryptography import x509

from mtlsgate.pki import client_auth, names
from mtlsgate.pki.client_auth import (
    FIELD_NAMES,
    ClientCertFacts,
    Verdict,
    managed_headers,
    openssl_error_string,
)
from tests.certs import openssl

P = "cf.tls_client_auth."
_counter = itertools.count()

CA_EXT = (
    "basicConstraints = critical,CA:TRUE\nkeyUsage = critical,keyCertSign,cRLSign\n"
    "subjectKeyIdentifier = hash\n"
)
LEAF_EXT = (
    "basicConstraints = critical,CA:FALSE\nextendedKeyUsage = clientAuth\n"
    "subjectKeyIdentifier = hash\nauthorityKeyIdentifier = keyid,issuer\n"
)
ISSUED_CA_EXT = CA_EXT + "authorityKeyIdentifier = keyid,issuer\n"


@dataclass(frozen=True)
class Made:
    """A certificate made by the openssl CLI, with its key."""

    path: Path
    key: Path

    @property
    def cert(self) -> x509.Certificate:
        return x509.load_pem_x509_certificate(self.path.read_bytes())

    def x509(self, *args: str) -> str:
        return openssl("x509", "-in", self.path, "-noout", *args)


def make(
    tmp: Path,
    subj: str,
    *,
    issuer: Made | None = None,
    kind: str = "rsa",
    serial: str = "0x1234",
    ext: str | None = LEAF_EXT,
) -> Made:
    """Self-signed (``issuer=None``) or issued certificate; ``ext=None`` makes a v1 certificate."""
    work = tmp / f"c{next(_counter)}"
    work.mkdir()
    key = work / "key.pem"
    if kind == "rsa":
        openssl("genpkey", "-algorithm", "RSA", "-pkeyopt", "rsa_keygen_bits:2048", "-out", key)
    else:
        openssl("genpkey", "-algorithm", "EC", "-pkeyopt", "ec_paramgen_curve:P-256", "-out", key)
    config = work / "openssl.cnf"
    # Private config: the distribution's one would add its own extensions.
    config.write_text(
        "[req]\ndistinguished_name = dn\nprompt = no\n[dn]\nCN = x\n[ext]\n" + (ext or "")
    )
    cert = work / "cert.pem"
    csr = work / "req.csr"
    openssl("req", "-new", "-utf8", "-key", key, "-subj", subj, "-out", csr, config=config)
    sign: list[str | Path] = (
        ["-signkey", key] if issuer is None else ["-CA", issuer.path, "-CAkey", issuer.key]
    )
    ext_args: list[str | Path] = [] if ext is None else ["-extfile", config, "-extensions", "ext"]
    openssl(
        "x509", "-req", "-in", csr, *sign, "-set_serial", serial, "-days", "30",
        "-sha256", *ext_args, "-out", cert, config=config,
    )  # fmt: skip
    return Made(cert, key)


@pytest.fixture(scope="module")
def pki(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Made]:
    tmp = tmp_path_factory.mktemp("pki")
    root = make(
        tmp, "/C=US/O=Access Testing/CN=Access Root", ext=CA_EXT, serial="0x0A0B0C", kind="ec"
    )
    inter = make(
        tmp,
        "/C=US/ST=Texas/L=Austin/O=Access Testing/OU=TX/CN=Access Testing CA",
        issuer=root,
        ext=ISSUED_CA_EXT,
        serial="0x80aa0102030405060708090a0b0c0d0e0f1011",
    )
    leaf = make(
        tmp,
        "/C=US/ST=Texas/L=Austin/O=Access/OU=Access Admins/CN=James Royal"
        "/emailAddress=james@example.com",
        issuer=inter,
        serial="0x80aa55",
    )
    ec_leaf = make(tmp, "/O=Acme, Inc./CN=Jürgen Groß", issuer=inter, kind="ec", serial="1")
    v1 = make(tmp, "/CN=Old Device", issuer=inter, ext=None, serial="0x7f")
    sans = ",".join(f"DNS:host{i:04d}.clients.example.com" for i in range(400))
    huge = make(tmp, "/CN=Huge", issuer=inter, ext=LEAF_EXT + f"subjectAltName = {sans}\n")
    return {"root": root, "inter": inter, "leaf": leaf, "ec": ec_leaf, "v1": v1, "huge": huge}


# -- what the openssl CLI prints -------------------------------------------------------------------


def cli_value(made: Made, *options: str) -> str:
    """What ``openssl x509 -noout OPTIONS`` prints after ``name=``."""
    out = made.x509(*options)
    assert out.endswith("\n")
    return out[:-1].split("=", 1)[1]


def cli_dn(made: Made, which: str, nameopt: str) -> str:
    return cli_value(made, f"-{which}", "-nameopt", nameopt)


def cli_hex_ext(made: Made, ext: str) -> str:
    """The colon-separated hex of an SKI/AKI as ``openssl x509 -ext`` prints it, colons removed."""
    out = made.x509("-ext", ext)
    hexes = re.findall(r"^\s+(?:keyid:)?([0-9A-F]{2}(?::[0-9A-F]{2})+)\s*$", out, re.M)
    return hexes[0].replace(":", "") if hexes else ""


def fingerprint(made: Made, digest: str) -> str:
    return cli_value(made, "-fingerprint", f"-{digest}").replace(":", "").lower()


def der_b64(made: Made) -> str:
    """Base64 of the DER, as openssl wrote it into the PEM file."""
    pem = made.path.read_text()
    return "".join(line for line in pem.splitlines() if not line.startswith("-----"))


def expected_fields(made: Made, issuer: Made | None, verdict: Verdict) -> dict[str, object]:
    return {
        P + "cert_presented": verdict.presented,
        P + "cert_verified": verdict.verified,
        P + "cert_revoked": verdict.revoked,
        P + "cert_issuer_dn": cli_dn(made, "issuer", "RFC2253"),
        P + "cert_subject_dn": cli_dn(made, "subject", "RFC2253"),
        P + "cert_issuer_dn_rfc2253": cli_dn(made, "issuer", "RFC2253"),
        P + "cert_subject_dn_rfc2253": cli_dn(made, "subject", "RFC2253"),
        P + "cert_issuer_dn_legacy": cli_dn(made, "issuer", "compat"),
        P + "cert_subject_dn_legacy": cli_dn(made, "subject", "compat"),
        P + "cert_serial": cli_value(made, "-serial"),
        P + "cert_issuer_serial": "" if issuer is None else cli_value(issuer, "-serial"),
        P + "cert_fingerprint_sha256": fingerprint(made, "sha256"),
        P + "cert_fingerprint_sha1": fingerprint(made, "sha1"),
        P + "cert_not_before": cli_value(made, "-startdate"),
        P + "cert_not_after": cli_value(made, "-enddate"),
        P + "cert_ski": cli_hex_ext(made, "subjectKeyIdentifier"),
        P + "cert_issuer_ski": cli_hex_ext(made, "authorityKeyIdentifier"),
        P + "cert_rfc9440": f":{der_b64(made)}:",
        P + "cert_rfc9440_too_large": False,
    }


# -- field values ---------------------------------------------------------------------------


OK = Verdict(presented=True, verified=True)


def test_field_names_are_the_references() -> None:
    reference = Path("/work/shared/reference/cloudflare-api.md")
    if not reference.exists():
        pytest.skip("reference not available")
    text = reference.read_text().split("### 8.8", 1)[1].split("### 8.9", 1)[0]
    listed = re.findall(r"^\| `(cf\.tls_client_auth\.\w+)`", text, re.M)
    assert tuple(listed) == FIELD_NAMES
    assert len(FIELD_NAMES) == 21


@pytest.mark.parametrize("which", ["leaf", "ec", "v1"])
def test_every_field_matches_openssl(pki: dict[str, Made], which: str) -> None:
    made, inter, root = pki[which], pki["inter"], pki["root"]
    facts = ClientCertFacts(made.cert, [inter.cert, root.cert], OK)
    got = facts.as_dict()
    expected = expected_fields(made, inter, OK)
    # cert_*_dn equals the RFC 2253 form whenever the name is ASCII.
    if which == "ec":
        expected[P + "cert_subject_dn"] = "CN=Jürgen Groß,O=Acme\\, Inc."
    for field, value in expected.items():
        assert got[field] == value, field
    # The chain as sent, minus the self-signed root.
    assert got[P + "cert_chain_rfc9440"] == f":{der_b64(inter)}:"
    assert got[P + "cert_chain_rfc9440_too_large"] is False
    assert list(got) == list(FIELD_NAMES)


def test_specific_formats(pki: dict[str, Made]) -> None:
    leaf = ClientCertFacts(pki["leaf"].cert, [pki["inter"].cert], OK)
    # Top bit set: OpenSSL prints the magnitude, no leading 00.
    assert leaf.get(P + "cert_serial") == "80AA55"
    assert leaf.get(P + "cert_issuer_serial") == "80AA0102030405060708090A0B0C0D0E0F1011"
    assert leaf.get(P + "cert_subject_dn_legacy") == (
        "/C=US/ST=Texas/L=Austin/O=Access/OU=Access Admins/CN=James Royal"
        "/emailAddress=james@example.com"
    )
    assert leaf.get(P + "cert_issuer_dn") == (
        "CN=Access Testing CA,OU=TX,O=Access Testing,L=Austin,ST=Texas,C=US"
    )
    assert re.fullmatch(r"[0-9a-f]{64}", str(leaf.get(P + "cert_fingerprint_sha256")))
    assert re.fullmatch(r"[0-9A-F]{40}", str(leaf.get(P + "cert_ski")))
    # The leaf's AKI is the intermediate's SKI.
    inter = ClientCertFacts(pki["inter"].cert, [], OK)
    assert leaf.get(P + "cert_issuer_ski") == inter.get(P + "cert_ski")
    small = ClientCertFacts(pki["ec"].cert, [], OK)
    assert small.get(P + "cert_serial") == "01"
    assert small.get(P + "cert_issuer_serial") == ""  # issuer not among what was sent
    assert small.get(P + "cert_chain_rfc9440") == ""
    v1 = ClientCertFacts(pki["v1"].cert, [], OK)
    assert pki["v1"].cert.version == x509.Version.v1
    assert v1.get(P + "cert_ski") == v1.get(P + "cert_issuer_ski") == ""


def test_openssl_time_format() -> None:
    from datetime import UTC, datetime

    assert client_auth.openssl_time(datetime(2022, 3, 1, 3, 5, 0, tzinfo=UTC)) == (
        "Mar  1 03:05:00 2022 GMT"
    )
    assert client_auth.openssl_time(datetime(2022, 3, 21, 13, 35, tzinfo=UTC)) == (
        "Mar 21 13:35:00 2022 GMT"
    )


@pytest.mark.parametrize(
    ("serial", "text"), [(0, "00"), (1, "01"), (0x80AA, "80AA"), (0x7F, "7F"), (-5, "-05")]
)
def test_serial_format(serial: int, text: str) -> None:
    assert client_auth.openssl_serial(serial) == text


def test_chain_of_two_intermediates_keeps_client_order(
    tmp_path: Path, pki: dict[str, Made]
) -> None:
    sub = make(tmp_path, "/CN=Sub CA", issuer=pki["inter"], ext=ISSUED_CA_EXT, serial="0x42")
    leaf = make(tmp_path, "/CN=Deep Client", issuer=sub, kind="ec")
    facts = ClientCertFacts(leaf.cert, [sub.cert, pki["inter"].cert, pki["root"].cert], OK)
    assert facts.get(P + "cert_chain_rfc9440") == f":{der_b64(sub)}:, :{der_b64(pki['inter'])}:"
    assert facts.get(P + "cert_issuer_serial") == cli_value(sub, "-serial") == "42"


def test_too_large(pki: dict[str, Made], monkeypatch: pytest.MonkeyPatch) -> None:
    huge = pki["huge"]
    facts = ClientCertFacts(huge.cert, [huge.cert, huge.cert], OK)
    assert facts.get(P + "cert_rfc9440") == ""
    assert facts.get(P + "cert_rfc9440_too_large") is True
    assert facts.get(P + "cert_chain_rfc9440") == ""
    assert facts.get(P + "cert_chain_rfc9440_too_large") is True
    # Everything else is still there.
    assert facts.get(P + "cert_subject_dn") == "CN=Huge"
    # The limit applies to the rendered value: exactly at the limit is still sent.
    value = client_auth.rfc9440_item(huge.cert)
    assert len(value) > client_auth.RFC9440_LEAF_LIMIT
    monkeypatch.setattr(client_auth, "RFC9440_LEAF_LIMIT", len(value))
    at_limit = ClientCertFacts(huge.cert, [], OK)
    assert at_limit.get(P + "cert_rfc9440") == value
    assert at_limit.get(P + "cert_rfc9440_too_large") is False
    monkeypatch.setattr(client_auth, "RFC9440_CHAIN_LIMIT", 2 * len(value) + 2)
    chain = ClientCertFacts(huge.cert, [huge.cert, huge.cert], OK)
    assert chain.get(P + "cert_chain_rfc9440") == f"{value}, {value}"


def test_no_certificate_gives_defaults() -> None:
    for verdict in (Verdict(False, False), Verdict(True, True, revoked=True)):
        facts = ClientCertFacts(None, [], verdict)
        values = facts.as_dict()
        assert list(values) == list(FIELD_NAMES)
        for field, value in values.items():
            expected: object = False if field in client_auth._BOOLEAN_FIELDS else ""
            assert value == expected and type(value) is type(expected), field


def test_revoked_keeps_verified_as_given(pki: dict[str, Made]) -> None:
    facts = ClientCertFacts(pki["leaf"].cert, [], Verdict(True, True, revoked=True))
    assert facts.get(P + "cert_revoked") is True
    assert facts.get(P + "cert_verified") is True
    assert facts.get(P + "cert_presented") is True
    failed = ClientCertFacts(pki["leaf"].cert, [], Verdict.failed(20))
    assert failed.get(P + "cert_verified") is False
    assert failed.get(P + "cert_rfc9440") != ""  # populated even when invalid


def test_unknown_field_raises(pki: dict[str, Made]) -> None:
    facts = ClientCertFacts(pki["leaf"].cert, [], OK)
    with pytest.raises(KeyError):
        facts.get(P + "cert_filtered")


# -- laziness --------------------------------------------------------------------------------------


def test_each_field_is_computed_at_most_once(
    pki: dict[str, Made], monkeypatch: pytest.MonkeyPatch
) -> None:
    computed: list[str] = []

    class Counting(ClientCertFacts):
        def _compute(self, field: str) -> object:
            computed.append(field)
            return super()._compute(field)

    calls = {"rfc2253": 0, "rfc4514": 0, "legacy": 0}

    def counted(name: str) -> object:
        original = getattr(names, name)

        def wrapper(value: object) -> object:
            calls[name] += 1
            return original(value)

        return wrapper

    for name in calls:
        monkeypatch.setattr(names, name, counted(name))
    facts = Counting(pki["leaf"].cert, [pki["inter"].cert], OK)
    assert computed == []  # nothing is computed up front
    assert calls == {"rfc2253": 0, "rfc4514": 0, "legacy": 0}
    facts.get(P + "cert_serial")
    facts.get(P + "cert_serial")
    assert computed == [P + "cert_serial"]
    first = facts.as_dict()
    second = facts.as_dict()
    assert first == second
    assert sorted(computed) == sorted(FIELD_NAMES)
    # Two names (issuer, subject) per rendering, each rendered once.
    assert calls == {"rfc2253": 2, "rfc4514": 2, "legacy": 2}


def test_managed_headers(pki: dict[str, Made]) -> None:
    facts = ClientCertFacts(pki["leaf"].cert, [pki["inter"].cert], OK)
    headers = managed_headers(facts)
    names_sent = [name for name, _ in headers]
    assert names_sent == [name for name, _ in client_auth.MANAGED_HEADERS]
    values = dict(headers)
    assert values["cf-cert-presented"] == "true"
    assert values["cf-cert-revoked"] == "false"
    assert values["cf-cert-sha256"] == facts.get(P + "cert_fingerprint_sha256")
    assert values["cf-cert-sha1"] == facts.get(P + "cert_fingerprint_sha1")
    assert values["cf-cert-serial"] == "80AA55"
    # Empty strings are omitted.
    small = dict(managed_headers(ClientCertFacts(pki["v1"].cert, [], OK)))
    assert "cf-cert-ski" not in small and "cf-cert-issuer-serial" not in small
    absent = managed_headers(ClientCertFacts(None, [], Verdict(False, False)))
    assert absent == [
        ("cf-cert-revoked", "false"),
        ("cf-cert-verified", "false"),
        ("cf-cert-presented", "false"),
    ]


# -- verdict ---------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("verdict", "status"),
    [
        (Verdict(False, False), "absent"),
        (Verdict(True, True), "ok"),
        (Verdict(True, True, revoked=True), "revoked"),
        (Verdict(True, False, 10), "expired"),
        (Verdict(True, False, 9), "notyetvalid"),
        *[(Verdict(True, False, code), "untrusted") for code in (2, 3, 18, 19, 20, 21, 27)],
        (Verdict(True, False, 23), "revoked"),
        (Verdict(True, False, 26), "invalid"),
        (Verdict(True, False, 68), "invalid"),
        (Verdict(True, False, 0), "invalid"),
        (Verdict(True, False, 10, revoked=True), "expired"),
    ],
)
def test_status(verdict: Verdict, status: str) -> None:
    assert verdict.status == status


def test_failed_constructor() -> None:
    verdict = Verdict.failed(20, depth=0)
    assert verdict == Verdict(True, False, 20, 0, False, "unable to get local issuer certificate")


def test_error_strings_from_library_and_table(monkeypatch: pytest.MonkeyPatch) -> None:
    assert openssl_error_string(20) == "unable to get local issuer certificate"
    assert openssl_error_string(10) == "certificate has expired"
    library = {code: openssl_error_string(code) for code in client_auth._ERROR_STRINGS}
    monkeypatch.setattr(client_auth, "_error_string_source", lambda code: None)
    for code, text in library.items():
        # The fallback table says what the linked OpenSSL says.
        assert openssl_error_string(code) == text, code
    assert openssl_error_string(18) == "self-signed certificate"
    assert openssl_error_string(12345) == "unknown certificate verification error"
    assert openssl_error_string(-1) == "unknown certificate verification error"


def test_library_lookup_survives_odd_codes() -> None:
    assert client_auth._library_error_string(2**70) is None
    assert isinstance(client_auth._library_error_string(99999), str)


def test_cli_agrees_on_error_text(tmp_path: Path, pki: dict[str, Made]) -> None:
    # `openssl verify` without the root: the same wording the handshake callback records.
    out = openssl(
        "verify", "-CAfile", pki["inter"].path, "-partial_chain", pki["leaf"].path
    ).strip()
    assert out.endswith(": OK")
    try:
        openssl("verify", "-CAfile", pki["inter"].path, pki["leaf"].path)
    except RuntimeError as exc:
        assert "error 2 at 1 depth lookup: " + openssl_error_string(2) in str(exc)
    else:
        pytest.fail("verification without the root should fail")
