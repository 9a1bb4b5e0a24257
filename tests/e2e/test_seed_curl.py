"""The seed document's API steps ("Bring your own CA for mTLS"), run with the real `curl` through
`bash -c`, exactly as a user would paste them; only `https://api.cloudflare.com` is replaced by
the gateway's `http://127.0.0.1:PORT`.

The seed shows the three hostname-association commands; its other API steps (upload, replace with
`mtls_certificate_id`, remove, delete) name endpoints without a command, so those are written in
the same style (`--request`, `--header`, `--json`). The `certificates` string is produced the way
Cloudflare's docs suggest: `awk 'NF {sub(/\\r/, ""); printf "%s\\\\n",$0;}' ca.pem`, pasted into
the JSON body.
"""

from __future__ import annotations

import json
import os
import re
import subprocess
import uuid
from pathlib import Path
from typing import Any

from tests.certs import CertFiles, openssl, openssl_root
from tests.harness import Gateway

# A copy of the seed document (shared/seed/), kept with the tests so a clean clone has it.
SEED = Path(__file__).resolve().parent.parent / "data" / "seed_byoca.txt"
CLOUDFLARE = "https://api.cloudflare.com"

# --- the seed's commands, verbatim (the scraped seed shows `\ ` where the docs break lines) ------

SEED_LIST_MANAGED = (
    'curl "https://api.cloudflare.com/client/v4/zones/$ZONE_ID/certificate_authorities/'
    'hostname_associations" \\\n'
    "  --request GET \\\n"
    '  --header "Authorization: Bearer $CLOUDFLARE_API_TOKEN"'
)
SEED_REPLACE_MANAGED = (
    'curl "https://api.cloudflare.com/client/v4/zones/$ZONE_ID/certificate_authorities/'
    'hostname_associations" \\\n'
    "  --request PUT \\\n"
    '  --header "Authorization: Bearer $CLOUDFLARE_API_TOKEN" \\\n'
    '  --json \'{ "hostnames": [ "<UPDATED_HOSTNAME_ASSOCIATIONS>" ] }\''
)
SEED_LIST_FOR_CA = (
    'curl "https://api.cloudflare.com/client/v4/zones/$ZONE_ID/certificate_authorities/'
    'hostname_associations?mtls_certificate_id=ID_FROM_STEP_2" \\\n'
    "  --request GET \\\n"
    '  --header "Authorization: Bearer $CLOUDFLARE_API_TOKEN"'
)
# The removal body exactly as the seed writes it (it shows only the members, not the braces).
SEED_REMOVAL_MEMBERS = '"hostnames": [], "mtls_certificate_id": "<CERTIFICATE_ID>"'

# --- the seed's other API steps, as commands in the same style -----------------------------------

UPLOAD = (
    'curl "https://api.cloudflare.com/client/v4/accounts/$ACCOUNT_ID/mtls_certificates" \\\n'
    "  --request POST \\\n"
    '  --header "Authorization: Bearer $CLOUDFLARE_API_TOKEN" \\\n'
    "  --json '{\n"
    '    "ca": true,\n'
    '    "certificates": "<CERTIFICATES>",\n'
    '    "name": "<NAME>"\n'
    "  }'"
)
REPLACE_FOR_CA = (
    'curl "https://api.cloudflare.com/client/v4/zones/$ZONE_ID/certificate_authorities/'
    'hostname_associations" \\\n'
    "  --request PUT \\\n"
    '  --header "Authorization: Bearer $CLOUDFLARE_API_TOKEN" \\\n'
    "  --json '{ <BODY> }'"
)
DELETE = (
    'curl "https://api.cloudflare.com/client/v4/accounts/$ACCOUNT_ID/mtls_certificates/'
    '<CERTIFICATE_ID>" \\\n'
    "  --request DELETE \\\n"
    '  --header "Authorization: Bearer $CLOUDFLARE_API_TOKEN"'
)
AWK_ONE_LINE = 'awk \'NF {sub(/\\r/, ""); printf "%s\\\\n",$0;}\' ca.pem'


def flattened(command: str) -> str:
    """The command as the scraped seed shows it: each `\\` + line break + indent becomes `\\ `."""
    return re.sub(r"\\\n\s*", r"\\ ", command)


def test_seed_commands_are_verbatim() -> None:
    text = SEED.read_text()
    for command in (SEED_LIST_MANAGED, SEED_REPLACE_MANAGED, SEED_LIST_FOR_CA):
        assert flattened(command) in text
    assert SEED_REMOVAL_MEMBERS in text


# --- running them ---------------------------------------------------------------------------------


def _env(gateway: Gateway, cwd: Path) -> dict[str, str]:
    env = {
        k: v
        for k, v in os.environ.items()
        if k.lower() not in ("http_proxy", "https_proxy", "all_proxy")
    }
    env.update(
        ZONE_ID=gateway.zones["example.com"],
        ACCOUNT_ID=gateway.account_id,
        CLOUDFLARE_API_TOKEN=gateway.token,
        CURL_HOME=str(cwd),  # no ~/.curlrc of the machine running the tests
        NO_PROXY="127.0.0.1,localhost",
    )
    return env


def run_curl(gateway: Gateway, command: str, cwd: Path) -> Any:
    """Run `command` with bash against the gateway; return the JSON curl printed."""
    assert CLOUDFLARE in command
    local = command.replace(CLOUDFLARE, f"http://127.0.0.1:{gateway.port}")
    proc = subprocess.run(
        ["bash", "-c", local],
        capture_output=True,
        text=True,
        cwd=cwd,
        env=_env(gateway, cwd),
        timeout=60,
        check=False,
    )
    assert proc.returncode == 0, f"curl failed ({proc.returncode}):\n{proc.stderr}"
    try:
        return json.loads(proc.stdout)
    except json.JSONDecodeError:
        raise AssertionError(f"curl printed no JSON:\n{proc.stdout}\n{proc.stderr}") from None


def awk_certificates(cert_file: Path) -> str:
    """What Cloudflare's awk one-liner prints for `cert_file`: PEM lines joined by `\\n`."""
    proc = subprocess.run(
        ["bash", "-c", AWK_ONE_LINE],
        capture_output=True,
        text=True,
        cwd=cert_file.parent,
        check=True,
    )
    assert "\n" not in proc.stdout and "\r" not in proc.stdout
    assert proc.stdout.startswith("-----BEGIN CERTIFICATE-----\\n")
    return proc.stdout


def openssl_serial(cert: CertFiles) -> str:
    out = openssl("x509", "-in", cert.cert_path, "-noout", "-serial").strip()
    return str(int(out.removeprefix("serial="), 16))


def openssl_issuer(cert: CertFiles) -> str:
    out = openssl("x509", "-in", cert.cert_path, "-noout", "-issuer", "-nameopt", "RFC2253")
    return out.strip().removeprefix("issuer=")


def pem_body(pem: str) -> str:
    return "".join(
        line.strip() for line in pem.strip().splitlines() if not line.startswith("-----")
    )


def write_ca(tmp_path: Path, cert: CertFiles, name: str, *, crlf: bool = False) -> Path:
    folder = tmp_path / name
    folder.mkdir()
    path = folder / "ca.pem"
    text = cert.cert_pem.replace("\n", "\r\n") if crlf else cert.cert_pem
    path.write_bytes(text.encode("ascii"))
    return path


def assert_ok(body: Any) -> Any:
    assert body["success"] is True, body
    assert body["errors"] == []
    return body["result"]


def assert_failed(body: Any, code: int | None = None) -> dict[str, Any]:
    assert body["success"] is False, body
    assert body["result"] is None
    assert body["errors"], body
    if code is not None:
        assert body["errors"][0]["code"] == code, body
    error: dict[str, Any] = body["errors"][0]
    return error


# --- the flows ------------------------------------------------------------------------------------


def test_seed_managed_ca_hostname_associations(gateway: Gateway, tmp_path: Path) -> None:
    """The seed's "remove the association from the Cloudflare-managed certificate" steps."""
    # List (managed CA): nothing yet.
    assert assert_ok(run_curl(gateway, SEED_LIST_MANAGED, tmp_path)) == {"hostnames": []}

    # Replace with a filled-in list.
    fill = '"mtls.example.com", "api.example.com", "www.example.com"'
    put = SEED_REPLACE_MANAGED.replace('"<UPDATED_HOSTNAME_ASSOCIATIONS>"', fill)
    result = assert_ok(run_curl(gateway, put, tmp_path))
    assert result["hostnames"] == ["api.example.com", "mtls.example.com", "www.example.com"]
    assert "mtls_certificate_id" not in result

    listed = assert_ok(run_curl(gateway, SEED_LIST_MANAGED, tmp_path))
    assert listed["hostnames"] == ["api.example.com", "mtls.example.com", "www.example.com"]

    # "Copy the hostnames array returned by the API and update it, removing the hostname that
    # should no longer use the Cloudflare-managed CA."
    kept = [h for h in listed["hostnames"] if h != "mtls.example.com"]
    put = SEED_REPLACE_MANAGED.replace(
        '"<UPDATED_HOSTNAME_ASSOCIATIONS>"', ", ".join(json.dumps(h) for h in kept)
    )
    assert assert_ok(run_curl(gateway, put, tmp_path))["hostnames"] == kept
    assert assert_ok(run_curl(gateway, SEED_LIST_MANAGED, tmp_path))["hostnames"] == kept

    # The placeholder left in by mistake is refused, and changes nothing.
    refused = run_curl(gateway, SEED_REPLACE_MANAGED, tmp_path)
    assert_failed(refused)
    assert assert_ok(run_curl(gateway, SEED_LIST_MANAGED, tmp_path))["hostnames"] == kept


def test_seed_byoca_upload_associate_remove_delete(gateway: Gateway, tmp_path: Path) -> None:
    """The seed's BYOCA steps end to end: upload, associate, confirm, remove, delete."""
    root = openssl_root(tmp_path, subject="/C=US/O=Example Inc./CN=Seed BYOCA Root")
    ca_file = write_ca(tmp_path, root, "rsa")

    # 1-2. Upload the CA, `certificates` pasted from the awk one-liner; note the id.
    upload = UPLOAD.replace("<CERTIFICATES>", awk_certificates(ca_file)).replace(
        "<NAME>", "seed-byoca"
    )
    uploaded = run_curl(gateway, upload, tmp_path)
    cert = assert_ok(uploaded)
    assert uploaded["messages"] == []
    cert_id = cert["id"]
    assert str(uuid.UUID(cert_id)) == cert_id
    assert cert["ca"] is True
    assert cert["name"] == "seed-byoca"
    assert cert["serial_number"] == openssl_serial(root)
    assert cert["issuer"] == openssl_issuer(root) == "CN=Seed BYOCA Root,O=Example Inc.,C=US"
    assert cert["signature"] == "SHA256WithRSA"
    assert re.fullmatch(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\dZ", cert["expires_on"])
    assert re.fullmatch(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{6}Z", cert["uploaded_on"])
    # The stored PEM has real line breaks, not the `\n` escapes of the request.
    assert "\\n" not in cert["certificates"]
    assert cert["certificates"].startswith("-----BEGIN CERTIFICATE-----\n")
    assert pem_body(cert["certificates"]) == pem_body(root.cert_pem)

    # 3. Replace Hostname Associations with the certificate id.
    associate = REPLACE_FOR_CA.replace(
        "<BODY>",
        f'"hostnames": ["mtls.example.com", "api.example.com"], "mtls_certificate_id": "{cert_id}"',
    )
    result = assert_ok(run_curl(gateway, associate, tmp_path))
    assert result["hostnames"] == ["api.example.com", "mtls.example.com"]
    assert result.get("mtls_certificate_id", cert_id) == cert_id

    # 4. (Optional) GET to confirm, with the id from step 2.
    confirm = SEED_LIST_FOR_CA.replace("ID_FROM_STEP_2", cert_id)
    result = assert_ok(run_curl(gateway, confirm, tmp_path))
    assert result["hostnames"] == ["api.example.com", "mtls.example.com"]
    assert result.get("mtls_certificate_id", cert_id) == cert_id
    # ...while the managed CA's list (no id) is a separate, still empty, set.
    assert assert_ok(run_curl(gateway, SEED_LIST_MANAGED, tmp_path))["hostnames"] == []

    # Deleting first is refused: "you must first remove any hostname associations".
    delete = DELETE.replace("<CERTIFICATE_ID>", cert_id)
    error = assert_failed(run_curl(gateway, delete, tmp_path), code=1491)
    assert "mtls.example.com" in error["message"]
    assert assert_ok(run_curl(gateway, confirm, tmp_path))["hostnames"] == [
        "api.example.com",
        "mtls.example.com",
    ]

    # Removal: the seed's body with the certificate id filled in.
    remove = REPLACE_FOR_CA.replace(
        "<BODY>", SEED_REMOVAL_MEMBERS.replace("<CERTIFICATE_ID>", cert_id)
    )
    assert assert_ok(run_curl(gateway, remove, tmp_path))["hostnames"] == []
    assert assert_ok(run_curl(gateway, confirm, tmp_path))["hostnames"] == []

    # Delete mTLS certificate.
    deleted = assert_ok(run_curl(gateway, delete, tmp_path))
    assert deleted["id"] == cert_id
    assert deleted["serial_number"] == cert["serial_number"]

    # Gone: deleting again is a 404-class error, and the id no longer names a CA.
    assert_failed(run_curl(gateway, delete, tmp_path), code=1404)
    assert_failed(run_curl(gateway, confirm, tmp_path))


def test_seed_upload_pasted_forms(gateway: Gateway, tmp_path: Path) -> None:
    """A CRLF `.pem` (Windows) through the awk one-liner, and PEM whose `\\n` escapes were
    escaped once more (the JSON then holds backslash-backslash-n): both upload the same
    certificate."""
    ec_root = openssl_root(tmp_path, kind="ec", subject="/O=Seed EC/CN=Seed EC Root")
    crlf_file = write_ca(tmp_path, ec_root, "ec", crlf=True)
    pasted = awk_certificates(crlf_file)

    upload = UPLOAD.replace("<CERTIFICATES>", pasted).replace("<NAME>", "from-crlf")
    first = assert_ok(run_curl(gateway, upload, tmp_path))
    assert first["signature"] == "ECDSAWithSHA256"
    assert first["serial_number"] == openssl_serial(ec_root)
    assert first["issuer"] == openssl_issuer(ec_root)
    assert pem_body(first["certificates"]) == pem_body(ec_root.cert_pem)

    # json.dumps(...)[1:-1] escapes the backslashes: the JSON text holds `\\n`.
    double = json.dumps(pasted)[1:-1]
    assert "\\\\n" in double
    upload = UPLOAD.replace("<CERTIFICATES>", double).replace("<NAME>", "double-escaped")
    second_body = run_curl(gateway, upload, tmp_path)
    second = assert_ok(second_body)
    assert second["id"] != first["id"]
    assert second["certificates"] == first["certificates"]
    assert second["serial_number"] == first["serial_number"]
    # Same certificate twice: a duplicate warning naming the first upload.
    duplicates = [m for m in second_body["messages"] if m["code"] == 1455]
    assert len(duplicates) == 1
    assert first["id"] in duplicates[0]["message"]
