"""Test helper: a minimal `openssl ca` directory that issues client certificates, revokes them
and publishes CRLs with `openssl ca -gencrl`, as an operator's own CA would."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path

from tests.certs import CertFiles, openssl


def asn1_time(moment: datetime) -> str:
    return moment.astimezone(UTC).strftime("%Y%m%d%H%M%SZ")


@dataclass
class OpensslCA:
    """A self-signed CA with an `openssl ca` database (index.txt, serial, crlnumber)."""

    dir: Path
    cert: CertFiles
    config: Path
    _issued: int = 0

    @classmethod
    def create(
        cls,
        tmp: Path,
        *,
        cn: str = "Devices CA",
        kind: str = "ec",
        crl_number: bool = True,
        cdp: str | None = None,
        key: Path | None = None,
    ) -> OpensslCA:
        """`key` reuses an existing private key (a CA with the same name and key as another)."""
        d = tmp
        d.mkdir(parents=True, exist_ok=True)
        (d / "index.txt").write_text("")
        (d / "serial").write_text("1000\n")
        if crl_number:
            (d / "crlnumber").write_text("01\n")
        ca_ext = (
            "basicConstraints=critical,CA:TRUE\nkeyUsage=critical,keyCertSign,cRLSign\n"
            "subjectKeyIdentifier=hash\n"
        )
        if cdp:
            ca_ext += f"crlDistributionPoints=URI:{cdp}\n"
        cnf = d / "ca.cnf"
        cnf.write_text(
            "[req]\ndistinguished_name=dn\nprompt=no\n[dn]\nCN=placeholder\n"
            "[ca]\ndefault_ca=d\n[d]\n"
            f"database={d / 'index.txt'}\nnew_certs_dir={d}\nserial={d / 'serial'}\n"
            + (f"crlnumber={d / 'crlnumber'}\n" if crl_number else "")
            + f"certificate={d / 'ca.pem'}\nprivate_key={d / 'ca.key'}\n"
            "default_md=sha256\ndefault_crl_days=7\npolicy=p\nunique_subject=no\n"
            "copy_extensions=none\n[p]\ncommonName=supplied\n"
            "[leaf]\nbasicConstraints=critical,CA:FALSE\n"
            "keyUsage=critical,digitalSignature,keyEncipherment\nextendedKeyUsage=clientAuth\n"
            "authorityKeyIdentifier=keyid,issuer\n"
            f"[ca_ext]\n{ca_ext}"
        )
        key_path = d / "ca.key"
        if key is not None:
            key_path.write_text(key.read_text())
        elif kind == "ec":
            openssl("genpkey", "-algorithm", "EC", "-pkeyopt", "ec_paramgen_curve:P-256",
                    "-out", key_path)  # fmt: skip
        else:
            openssl("genpkey", "-algorithm", "RSA", "-pkeyopt", "rsa_keygen_bits:2048",
                    "-out", key_path)  # fmt: skip
        openssl("req", "-x509", "-new", "-key", key_path, "-subj", f"/CN={cn}", "-days", "3650",
                "-extensions", "ca_ext", "-sha256", "-out", d / "ca.pem", config=cnf)  # fmt: skip
        cert = CertFiles((d / "ca.pem").read_text(), key_path.read_text(), d / "ca.pem", key_path)
        return cls(d, cert, cnf)

    def issue(self, cn: str) -> CertFiles:
        """A client certificate issued through the CA database (so it can be revoked)."""
        self._issued += 1
        work = self.dir / f"leaf-{self._issued}"
        work.mkdir()
        key, csr, cert = work / "client.key", work / "client.csr", work / "client.pem"
        openssl("req", "-new", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:P-256", "-nodes",
                "-keyout", key, "-out", csr, "-subj", f"/CN={cn}", config=self.config)  # fmt: skip
        openssl("ca", "-batch", "-config", self.config, "-in", csr, "-out", cert, "-days", "365",
                "-extensions", "leaf", "-notext")  # fmt: skip
        return CertFiles(cert.read_text(), key.read_text(), cert, key)

    def revoke(self, cert: CertFiles) -> None:
        openssl("ca", "-config", self.config, "-revoke", cert.cert_path,
                "-crl_reason", "keyCompromise")  # fmt: skip

    def gencrl(
        self,
        *,
        last_update: datetime | None = None,
        next_update: datetime | None = None,
        days: int = 7,
    ) -> str:
        """`openssl ca -gencrl`; the PEM text. Each call takes the next CRL number."""
        out = self.dir / "crl.pem"
        args: list[str | Path] = ["ca", "-gencrl", "-config", self.config, "-out", out]
        if last_update is not None:
            args += ["-crl_lastupdate", asn1_time(last_update)]
        if next_update is not None:
            args += ["-crl_nextupdate", asn1_time(next_update)]
        else:
            args += ["-crldays", str(days)]
        openssl(*args)
        return out.read_text()


def serial_of(cert: CertFiles) -> str:
    """Lowercase hex serial as `openssl x509 -noout -serial` prints it."""
    return openssl("x509", "-noout", "-serial", "-in", cert.cert_path).strip().split("=")[1].lower()


def fingerprint_of(cert: CertFiles) -> str:
    out = openssl("x509", "-noout", "-fingerprint", "-sha256", "-in", cert.cert_path).strip()
    return out.split("=")[1].replace(":", "").lower()


def pem_to_der(pem: str, tmp: Path) -> bytes:
    src, dst = tmp / "in.crl.pem", tmp / "out.crl.der"
    src.write_text(pem)
    openssl("crl", "-in", src, "-outform", "DER", "-out", dst)
    return dst.read_bytes()


class CrlServer:
    """A real HTTP server on 127.0.0.1 publishing files, with ETag / If-None-Match caching and a
    log of (path, status) per request, as a CA's CRL publication point would."""

    def __init__(self) -> None:
        import hashlib
        import threading
        from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

        self.files: dict[str, bytes] = {}
        self.requests: list[tuple[str, int]] = []
        server = self

        class Handler(BaseHTTPRequestHandler):
            def do_GET(self) -> None:
                body = server.files.get(self.path)
                if body is None:
                    status, body = 404, b"not found"
                    self.send_response(status)
                else:
                    etag = '"' + hashlib.sha256(body).hexdigest()[:16] + '"'
                    if self.headers.get("If-None-Match") == etag:
                        status = 304
                        self.send_response(304)
                        self.send_header("ETag", etag)
                        self.end_headers()
                        server.requests.append((self.path, status))
                        return
                    status = 200
                    self.send_response(200)
                    self.send_header("ETag", etag)
                    self.send_header("Content-Type", "application/pkix-crl")
                server.requests.append((self.path, status))
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            def log_message(self, format: str, *args: object) -> None:
                pass

        self.httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.port = int(self.httpd.server_address[1])
        self.thread = threading.Thread(target=self.httpd.serve_forever, daemon=True)
        self.thread.start()

    def url(self, path: str) -> str:
        return f"http://127.0.0.1:{self.port}{path}"

    def close(self) -> None:
        self.httpd.shutdown()
        self.httpd.server_close()
