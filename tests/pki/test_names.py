"""Tests for mtlsgate.pki.names: every rendering is compared with what the openssl CLI prints."""

from __future__ import annotations

import itertools
from pathlib import Path

import pytest
from cryptography import x509

from mtlsgate.pki import names
from tests.certs import openssl

_counter = itertools.count()


@pytest.fixture(scope="module")
def key(tmp_path_factory: pytest.TempPathFactory) -> Path:
    path = tmp_path_factory.mktemp("names-key") / "key.pem"
    openssl("genpkey", "-algorithm", "EC", "-pkeyopt", "ec_paramgen_curve:prime256v1", "-out", path)
    return path


def make_cert(
    tmp: Path,
    key: Path,
    *,
    subj: str | None = None,
    dn_lines: str | None = None,
    string_mask: str = "utf8only",
    multivalue: bool = False,
) -> Path:
    """A self-signed certificate whose subject comes from ``-subj`` or from config lines."""
    work = tmp / f"cert{next(_counter)}"
    work.mkdir()
    config = work / "openssl.cnf"
    # A private config (not the distribution's) so only the name differs between certificates;
    # an oid_section names 1.2.3.4 for `req` only, so the certificate carries an unknown OID.
    config.write_text(
        "oid_section = oids\n[oids]\nmyAttr = 1.2.3.4\n"
        f"[req]\ndistinguished_name = dn\nprompt = no\nstring_mask = {string_mask}\n"
        f"[dn]\n{dn_lines or 'CN = placeholder'}\n"
    )
    cert = work / "cert.pem"
    args: list[str | Path] = ["req", "-x509", "-new", "-key", key, "-days", "2", "-out", cert]
    if subj is not None:
        args += ["-subj", subj]
    args.append("-utf8")  # argv is UTF-8; without it openssl reads each byte as Latin-1
    if multivalue:
        args.append("-multivalue-rdn")
    openssl(*args, config=config)
    return cert


def openssl_subject(cert: Path, nameopt: str) -> str:
    out = openssl("x509", "-in", cert, "-noout", "-subject", "-nameopt", nameopt)
    assert out.startswith("subject=") and out.endswith("\n")
    return out[len("subject=") : -1]


def load(cert: Path) -> x509.Certificate:
    return x509.load_pem_x509_certificate(cert.read_bytes())


def subject_der(cert: Path) -> bytes:
    return names.name_der_from_tbs(load(cert).tbs_certificate_bytes)[1]


def overrides() -> dict[x509.ObjectIdentifier, str]:
    return {x509.ObjectIdentifier(oid): short for oid, short in names.SHORT_NAMES.items()}


def assert_matches_openssl(cert: Path) -> None:
    der = subject_der(cert)
    assert names.rfc2253(der) == openssl_subject(cert, "RFC2253")
    assert names.legacy(der) == openssl_subject(cert, "compat")


# Names given to `openssl req -subj` (backslash escapes the next character there).
SUBJECTS = [
    "/C=US/ST=Texas/L=Austin/O=Access/OU=Access Admins/CN=James Royal",
    "/C=US/ST=Texas/L=Austin/O=Access Testing/OU=TX/CN=Access Testing CA"
    "/emailAddress=ca@example.com",
    '/CN=Acme\\, Inc./O=a\\+b/OU=x;y<z>"q"\\\\w',
    "/CN=#hash/O= lead and trail /OU=#/L= /ST=x=y\\/z",
    "/CN=Jürgen Groß/O=東京/OU=Ελλάδα",
    "/DC=com/DC=example/UID=jdoe/serialNumber=12345/title=Boss/street=1 Main St"
    "/postalCode=78701/GN=James/SN=Royal/description=desc",
    "/CN=ctl" + "\x01\x1f\x7f" + "end",
    "/CN=" + "!\"#$%&'()*\\+,-.\\/0123456789:;<=>?@",
    "/CN=" + "ABCDEFGHIJKLMNOPQRSTUVWXYZ[\\\\]^_`abcdefghijklmnopqrstuvwxyz{|}~",
]


@pytest.mark.parametrize("subj", SUBJECTS)
def test_renderings_match_openssl(tmp_path: Path, key: Path, subj: str) -> None:
    cert = make_cert(tmp_path, key, subj=subj)
    assert_matches_openssl(cert)
    name = load(cert).subject
    # A Name and its DER render the same.
    assert names.rfc2253(name) == names.rfc2253(subject_der(cert))
    assert names.legacy(name) == names.legacy(subject_der(cert))
    # rfc4514 is cryptography's rendering with OpenSSL's attribute names.
    assert names.rfc4514(name) == name.rfc4514_string(overrides())


def test_reference_examples(tmp_path: Path, key: Path) -> None:
    cert = make_cert(tmp_path, key, subj=SUBJECTS[0])
    name = load(cert).subject
    expected = "CN=James Royal,OU=Access Admins,O=Access,L=Austin,ST=Texas,C=US"
    assert names.rfc2253(name) == expected
    assert names.rfc4514(name) == expected
    assert names.legacy(name) == "/C=US/ST=Texas/L=Austin/O=Access/OU=Access Admins/CN=James Royal"


def test_email_address_uses_openssl_name_everywhere(tmp_path: Path, key: Path) -> None:
    cert = make_cert(tmp_path, key, subj=SUBJECTS[1])
    name = load(cert).subject
    # cryptography alone would print 1.2.840.113549.1.9.1=...; OpenSSL prints emailAddress.
    assert name.rfc4514_string().startswith("1.2.840.113549.1.9.1=ca@example.com,")
    assert names.rfc4514(name).startswith("emailAddress=ca@example.com,CN=Access Testing CA,")
    assert names.rfc4514(name) == names.rfc2253(name) == openssl_subject(cert, "RFC2253")
    assert names.legacy(name).endswith("/CN=Access Testing CA/emailAddress=ca@example.com")


def test_ascii_names_render_identically_in_rfc4514_and_rfc2253(tmp_path: Path, key: Path) -> None:
    for subj in SUBJECTS[:3] + SUBJECTS[5:6]:
        cert = make_cert(tmp_path, key, subj=subj)
        assert names.rfc4514(load(cert).subject) == openssl_subject(cert, "RFC2253")


def test_utf8_differs_between_rfc4514_and_rfc2253(tmp_path: Path, key: Path) -> None:
    cert = make_cert(tmp_path, key, subj="/O=Groß/CN=Jürgen")
    name = load(cert).subject
    assert (
        names.rfc2253(name) == "CN=J\\C3\\BCrgen,O=Gro\\C3\\9F" == openssl_subject(cert, "RFC2253")
    )
    assert names.rfc4514(name) == "CN=Jürgen,O=Groß"
    assert names.legacy(name) == "/O=Gro\\xC3\\x9F/CN=J\\xC3\\xBCrgen"


def test_lone_hash_is_escaped_only_by_rfc4514(tmp_path: Path, key: Path) -> None:
    cert = make_cert(tmp_path, key, subj="/CN=#/O= ")
    name = load(cert).subject
    assert names.rfc2253(name) == "O=\\ ,CN=#" == openssl_subject(cert, "RFC2253")
    assert names.rfc4514(name) == "O=\\ ,CN=\\#"


def test_multi_valued_rdn(tmp_path: Path, key: Path) -> None:
    cert = make_cert(
        tmp_path, key, subj="/O=Acme, Inc./OU=Admins+OU=Ops+CN=James/C=US", multivalue=True
    )
    assert_matches_openssl(cert)
    name = load(cert).subject
    # OpenSSL lists a multi-valued RDN's members in reverse DER order; cryptography does not.
    # (DER sorts the SET, hence Ops before CN before Admins.)
    assert names.rfc2253(name) == "C=US,OU=Admins+CN=James+OU=Ops,O=Acme\\, Inc."
    assert names.rfc4514(name) == "C=US,OU=Ops+CN=James+OU=Admins,O=Acme\\, Inc."
    assert names.legacy(name) == "/O=Acme, Inc./OU=Ops+CN=James+OU=Admins/C=US"


def test_unknown_oid_is_dumped_as_der_by_rfc2253(tmp_path: Path, key: Path) -> None:
    cert = make_cert(tmp_path, key, dn_lines="CN = x\nmyAttr = foo")
    assert_matches_openssl(cert)
    name = load(cert).subject
    assert names.rfc2253(name) == "1.2.3.4=#0C03666F6F,CN=x"
    assert names.rfc4514(name) == "1.2.3.4=foo,CN=x" == name.rfc4514_string()
    assert names.legacy(name) == "/CN=x/1.2.3.4=foo"


def test_config_built_name_with_empty_and_padded_values(tmp_path: Path, key: Path) -> None:
    cert = make_cert(
        tmp_path,
        key,
        dn_lines='C = US\nO = Acme\nOU = A\n+OU = B\ntitle = ""\ndescription = " pad "',
    )
    assert_matches_openssl(cert)


def test_teletex_and_bmp_strings(tmp_path: Path, key: Path) -> None:
    # string_mask=default picks T61String for Latin-1 text and BMPString beyond it: the raw
    # bytes differ from UTF-8, and cryptography cannot even decode the T61String.
    cert = make_cert(tmp_path, key, subj="/CN=Jürgen/O=漢字/OU=plain", string_mask="default")
    assert_matches_openssl(cert)
    der = subject_der(cert)
    assert names.rfc2253(der) == "OU=plain,O=\\E6\\BC\\A2\\E5\\AD\\97,CN=J\\C3\\BCrgen"
    assert names.rfc4514(der) == "OU=plain,O=漢字,CN=Jürgen"
    with pytest.raises(ValueError):
        _ = load(cert).subject


def test_empty_name(tmp_path: Path, key: Path) -> None:
    cert = make_cert(tmp_path, key, subj="/")
    der = subject_der(cert)
    assert names.rfc2253(der) == names.rfc4514(der) == names.legacy(der) == ""
    assert openssl_subject(cert, "compat") == ""


def test_name_from_cryptography_builder() -> None:
    # Names that never came from a certificate work too.
    name = x509.Name(
        [
            x509.NameAttribute(x509.NameOID.COUNTRY_NAME, "US"),
            x509.NameAttribute(x509.NameOID.COMMON_NAME, "a,b"),
        ]
    )
    assert names.rfc2253(name) == "CN=a\\,b,C=US"
    assert names.legacy(name) == "/C=US/CN=a,b"


def test_malformed_der_is_refused() -> None:
    for der in (b"", b"\x31\x00", b"\x30\x05\x31\x03"):
        with pytest.raises(ValueError):
            names.rfc2253(der)


def test_short_names_match_the_openssl_library() -> None:
    util = pytest.importorskip("OpenSSL._util")
    lib, ffi = util.lib, util.ffi
    for oid, short in names.SHORT_NAMES.items():
        nid = lib.OBJ_txt2nid(oid.encode())
        assert nid != 0, oid
        assert ffi.string(lib.OBJ_nid2sn(nid)).decode() == short, oid
