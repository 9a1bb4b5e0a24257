"""Test helper: make real certificates and keys with the `openssl` command-line tool.

The certificates come from the real `openssl` CLI (not from cryptography's builders) so the tests
see the same bytes an operator's tooling would produce. Every helper writes into a directory the
caller owns (pytest's ``tmp_path``) and returns the PEM text plus the file paths.

Each call uses a private, minimal OpenSSL config so results do not depend on the distribution's
``openssl.cnf`` (which, for example, adds its own default extensions to ``req -x509``).

Typical use::

    root = openssl_root(tmp_path)
    inter = openssl_intermediate(tmp_path, root)
    leaf = openssl_leaf(tmp_path, inter)
    bundle = inter.cert_pem + root.cert_pem
"""

from __future__ import annotations

import itertools
import os
import subprocess
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Literal

KeyKind = Literal["rsa", "ec", "ed25519", "ed448", "dsa"]

_CA_EXTENSIONS = """\
basicConstraints = critical,CA:TRUE
keyUsage = critical,keyCertSign,cRLSign
subjectKeyIdentifier = hash
"""
_LEAF_EXTENSIONS = """\
basicConstraints = critical,CA:FALSE
keyUsage = critical,digitalSignature,keyEncipherment
extendedKeyUsage = clientAuth
subjectKeyIdentifier = hash
"""
_ISSUED_EXTRA = "authorityKeyIdentifier = keyid,issuer\n"

# Distinct file names per call, so one tmp dir can hold many certificates.
_counter = itertools.count(1)


@dataclass(frozen=True)
class CertFiles:
    """A certificate and its key, as PEM text and as files on disk."""

    cert_pem: str
    key_pem: str
    cert_path: Path
    key_path: Path


def openssl(*args: str | Path, cwd: Path | None = None, config: Path | None = None) -> str:
    """Run ``openssl args...`` and return stdout; raise with stderr shown if it fails."""
    env = dict(os.environ)
    if config is not None:
        env["OPENSSL_CONF"] = str(config)
    result = subprocess.run(
        ["openssl", *map(str, args)],
        cwd=cwd,
        env=env,
        capture_output=True,
        text=True,
        check=False,
    )
    if result.returncode != 0:
        raise RuntimeError(f"openssl {' '.join(map(str, args))} failed:\n{result.stderr}")
    return result.stdout


def _workdir(tmp: Path, name: str) -> Path:
    # One subdirectory per generated object keeps the files of different certs apart.
    path = tmp / f"{next(_counter):03d}-{name.replace(' ', '_')}"
    path.mkdir(parents=True)
    return path


def _config(work: Path, extensions: str | None) -> Path:
    """A minimal config with an [ext] section (if given) and an `openssl ca` setup."""
    (work / "index.txt").touch()
    text = f"""\
[req]
distinguished_name = dn
prompt = no
[dn]
CN = placeholder
[ca]
default_ca = ca_dir
[ca_dir]
dir = {work}
database = {work}/index.txt
new_certs_dir = {work}
serial = {work}/serial
default_md = sha256
policy = policy_any
unique_subject = no
email_in_dn = no
copy_extensions = none
[policy_any]
commonName = supplied
"""
    if extensions is not None:
        text += "[ext]\n" + extensions
    path = work / "openssl.cnf"
    path.write_text(text)
    return path


def openssl_key(
    work: Path, kind: KeyKind = "rsa", *, bits: int = 2048, curve: str = "prime256v1"
) -> Path:
    """Generate an unencrypted PKCS#8 private key in ``work``; return its path."""
    key = work / "key.pem"
    if kind == "rsa":
        openssl(
            "genpkey",
            "-algorithm",
            "RSA",
            "-pkeyopt",
            f"rsa_keygen_bits:{bits}",
            "-out",
            key,
        )
    elif kind == "ec":
        openssl(
            "genpkey",
            "-algorithm",
            "EC",
            "-pkeyopt",
            f"ec_paramgen_curve:{curve}",
            "-out",
            key,
        )
    elif kind == "dsa":
        params = work / "dsaparam.pem"
        openssl(
            "genpkey",
            "-genparam",
            "-algorithm",
            "DSA",
            "-pkeyopt",
            f"dsa_paramgen_bits:{bits}",
            "-out",
            params,
        )
        openssl("genpkey", "-paramfile", params, "-out", key)
    else:
        openssl("genpkey", "-algorithm", kind.upper(), "-out", key)
    return key


def _sign_args(kind: KeyKind, digest: str, pss: bool) -> list[str]:
    # Ed25519/Ed448 have a fixed hash; openssl refuses a digest option for them.
    if kind in ("ed25519", "ed448"):
        return []
    args = [f"-{digest}"]
    if pss:
        args += ["-sigopt", "rsa_padding_mode:pss", "-sigopt", "rsa_pss_saltlen:digest"]
    return args


def _result(cert: Path, key: Path) -> CertFiles:
    return CertFiles(
        cert_pem=cert.read_text(), key_pem=key.read_text(), cert_path=cert, key_path=key
    )


def openssl_root(
    tmp: Path,
    *,
    kind: KeyKind = "rsa",
    digest: str = "sha256",
    bits: int = 2048,
    curve: str = "prime256v1",
    days: int = 3650,
    cn: str = "Test Root CA",
    subject: str | None = None,
    pss: bool = False,
) -> CertFiles:
    """A self-signed CA certificate (Basic Constraints CA:TRUE) made with ``openssl req -x509``.

    ``digest="sha1"`` / ``"md5"`` make weak signatures; ``pss=True`` signs with RSA-PSS;
    ``kind="ed25519"`` makes an Ed25519-signed CA. ``subject`` (OpenSSL ``-subj`` syntax,
    e.g. ``"/C=US/O=Example/CN=Root"``) overrides the default ``/CN={cn}``.
    """
    work = _workdir(tmp, cn)
    config = _config(work, _CA_EXTENSIONS)
    key = openssl_key(work, kind, bits=bits, curve=curve)
    cert = work / "cert.pem"
    openssl(
        "req",
        "-x509",
        "-new",
        "-key",
        key,
        "-subj",
        subject or f"/CN={cn}",
        "-days",
        str(days),
        "-extensions",
        "ext",
        *_sign_args(kind, digest, pss),
        "-out",
        cert,
        config=config,
    )
    return _result(cert, key)


def openssl_csr(
    tmp: Path, *, kind: KeyKind = "rsa", cn: str = "Test CSR", bits: int = 2048
) -> CertFiles:
    """A certificate signing request; ``cert_pem`` holds the CSR PEM, ``cert_path`` its file."""
    work = _workdir(tmp, cn)
    config = _config(work, None)
    key = openssl_key(work, kind, bits=bits)
    csr = work / "req.csr"
    openssl(
        "req",
        "-new",
        "-key",
        key,
        "-subj",
        f"/CN={cn}",
        *_sign_args(kind, "sha256", False),
        "-out",
        csr,
        config=config,
    )
    return _result(csr, key)


def _issue(
    tmp: Path,
    issuer: CertFiles,
    *,
    extensions: str | None,
    kind: KeyKind,
    digest: str,
    bits: int,
    days: int,
    cn: str,
) -> CertFiles:
    csr = openssl_csr(tmp, kind=kind, cn=cn, bits=bits)
    work = csr.cert_path.parent
    config = _config(work, extensions)
    cert = work / "cert.pem"
    ext_args: list[str | Path] = (
        [] if extensions is None else ["-extfile", config, "-extensions", "ext"]
    )
    openssl(
        "x509",
        "-req",
        "-in",
        csr.cert_path,
        "-CA",
        issuer.cert_path,
        "-CAkey",
        issuer.key_path,
        "-CAcreateserial",
        "-days",
        str(days),
        f"-{digest}",
        *ext_args,
        "-out",
        cert,
        config=config,
    )
    return _result(cert, csr.key_path)


def openssl_intermediate(
    tmp: Path,
    issuer: CertFiles,
    *,
    kind: KeyKind = "rsa",
    digest: str = "sha256",
    bits: int = 2048,
    days: int = 1825,
    cn: str = "Test Intermediate CA",
) -> CertFiles:
    """A CA certificate (CA:TRUE) signed by ``issuer``."""
    return _issue(
        tmp,
        issuer,
        extensions=_CA_EXTENSIONS + _ISSUED_EXTRA,
        kind=kind,
        digest=digest,
        bits=bits,
        days=days,
        cn=cn,
    )


def openssl_leaf(
    tmp: Path,
    issuer: CertFiles,
    *,
    kind: KeyKind = "rsa",
    digest: str = "sha256",
    bits: int = 2048,
    days: int = 365,
    cn: str = "Test Client",
) -> CertFiles:
    """An end-entity client certificate (CA:FALSE, clientAuth) signed by ``issuer``."""
    return _issue(
        tmp,
        issuer,
        extensions=_LEAF_EXTENSIONS + _ISSUED_EXTRA,
        kind=kind,
        digest=digest,
        bits=bits,
        days=days,
        cn=cn,
    )


def openssl_v1_cert(tmp: Path, *, cn: str = "Test V1 Cert", days: int = 3650) -> CertFiles:
    """A self-signed X.509 v1 certificate: no extensions at all, so no Basic Constraints.

    ``openssl x509 -req`` without ``-extfile`` produces a v1 certificate.
    """
    csr = openssl_csr(tmp, cn=cn)
    work = csr.cert_path.parent
    cert = work / "cert.pem"
    openssl(
        "x509",
        "-req",
        "-in",
        csr.cert_path,
        "-signkey",
        csr.key_path,
        "-days",
        str(days),
        "-sha256",
        "-out",
        cert,
        config=_config(work, None),
    )
    return _result(cert, csr.key_path)


def _asn1_time(moment: datetime) -> str:
    # `openssl ca -startdate/-enddate` take GeneralizedTime (YYYYMMDDHHMMSSZ) in UTC.
    return moment.astimezone(UTC).strftime("%Y%m%d%H%M%SZ")


def openssl_dated_ca(
    tmp: Path,
    *,
    not_before: datetime,
    not_after: datetime,
    cn: str = "Test Dated CA",
    kind: KeyKind = "rsa",
) -> CertFiles:
    """A self-signed CA certificate with exact validity dates (e.g. already expired).

    Uses ``openssl ca -selfsign -startdate -enddate`` because ``-not_before``/``-not_after``
    on ``req``/``x509`` only exist from OpenSSL 3.4 and 3.0 is still common.
    """
    csr = openssl_csr(tmp, kind=kind, cn=cn)
    work = csr.cert_path.parent
    config = _config(work, _CA_EXTENSIONS)
    (work / "serial").write_text(f"{next(_counter) + 0x1000:X}\n")
    cert = work / "cert.pem"
    openssl(
        "ca",
        "-batch",
        "-selfsign",
        "-config",
        config,
        "-keyfile",
        csr.key_path,
        "-in",
        csr.cert_path,
        "-startdate",
        _asn1_time(not_before),
        "-enddate",
        _asn1_time(not_after),
        "-extensions",
        "ext",
        "-notext",
        "-out",
        cert,
        config=config,
    )
    return _result(cert, csr.key_path)


def openssl_encrypted_key(key: CertFiles, *, legacy: bool = False, password: str = "secret") -> str:
    """``key``'s private key encrypted with a password, as PEM.

    Default: PKCS#8 (``ENCRYPTED PRIVATE KEY``). ``legacy=True``: traditional OpenSSL format
    with ``Proc-Type: 4,ENCRYPTED`` headers (RSA keys only).
    """
    if legacy:
        return openssl(
            "rsa",
            "-in",
            key.key_path,
            "-aes256",
            "-traditional",
            "-passout",
            f"pass:{password}",
        )
    return openssl(
        "pkcs8",
        "-topk8",
        "-in",
        key.key_path,
        "-v2",
        "aes-256-cbc",
        "-passout",
        f"pass:{password}",
    )


def openssl_traditional_key(key: CertFiles) -> str:
    """``key``'s private key in traditional format (``RSA PRIVATE KEY``/``EC PRIVATE KEY``)."""
    return openssl("pkey", "-in", key.key_path, "-traditional")
