"""Managed client certificates through the dashboard in Chromium: a key and CSR generated for
the user (the key shown once), the user's own CSR made with the `openssl` CLI, a bad CSR, then
revoke and restore — each checked through the API."""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

from playwright.sync_api import Page, expect

from tests.certs import openssl, openssl_csr
from tests.dashboard.conftest import Shots, dash_url, sign_in
from tests.harness import Gateway


def _certs(gw: Gateway) -> dict[str, dict[str, Any]]:
    """Common name -> the API's record of the zone's managed certificates."""
    with gw.http() as c:
        r = c.get(
            f"/zones/{gw.zones['example.com']}/client_certificates",
            params={"status": "all", "per_page": 50},
        )
        assert r.status_code == 200, r.text
        return {x["common_name"]: x for x in r.json()["result"]}


def _own_csr(tmp_path: Path) -> str:
    return openssl_csr(tmp_path, kind="ec", cn="laptop-7").cert_pem


def test_managed_issue_revoke_restore(page: Page, gw: Gateway, shot: Shots, tmp_path: Path) -> None:
    sign_in(page, gw, gw.token)
    page.get_by_role("button", name="Add Certificate").click()
    expect(page.get_by_label("Certificate Authority")).to_have_value("managed")
    # Generate the key and CSR here: the BYOCA and "own CSR" controls are not in the tree.
    expect(page.get_by_role("button", name="Continue")).to_have_count(0)
    expect(page.get_by_role("textbox", name="Certificate signing request (PEM)")).to_have_count(0)
    page.get_by_label("Common name").fill("device-42")
    page.get_by_label("Certificate Validity").select_option(label="1 year")
    shot("add-managed-generate")
    page.get_by_role("button", name="Create").click()

    expect(page.get_by_role("heading", name="Certificate issued")).to_be_visible()
    key_pem = page.get_by_label("Private key (PEM)").input_value()
    cert_pem = page.get_by_label("Certificate (PEM)").input_value()
    shot("issued-with-key")
    assert "BEGIN PRIVATE KEY" in key_pem
    # The key shown is the certificate's key (checked with the openssl CLI).
    (tmp_path / "k.pem").write_text(key_pem)
    (tmp_path / "c.pem").write_text(cert_pem)
    pub_from_key = openssl("pkey", "-in", tmp_path / "k.pem", "-pubout")
    pub_from_cert = openssl("x509", "-in", tmp_path / "c.pem", "-noout", "-pubkey")
    assert pub_from_key == pub_from_cert
    record = _certs(gw)["device-42"]
    assert record["status"] == "active" and record["validity_days"] == 365
    assert record["certificate"].strip() == cert_pem.strip()
    # Redirect after POST: a reload shows the certificate again, without the key (shown once),
    # and issues nothing.
    page.reload()
    expect(page.get_by_role("heading", name="Certificate issued")).to_be_visible()
    expect(page.get_by_label("Certificate (PEM)")).to_have_value(cert_pem)
    expect(page.get_by_label("Private key (PEM)")).to_have_count(0)
    expect(page.get_by_text("no longer available")).to_be_visible()
    assert list(_certs(gw)) == ["device-42"]

    # The user's own CSR, made with openssl; a bad one first.
    page.goto(dash_url(gw, "/client-certificates/add?ca=managed"))
    page.get_by_label("Private key and CSR").select_option(label="Use my private key and CSR")
    expect(page.get_by_role("textbox", name="Common name")).to_have_count(0)
    page.get_by_label("Certificate signing request (PEM)").fill("not a csr")
    page.get_by_role("button", name="Create").click()
    expect(page.locator("#csr-error")).to_contain_text("CERTIFICATE REQUEST")
    assert "{" not in page.locator("#csr-error").inner_text()
    shot("add-managed-bad-csr")
    # A damaged CSR (the PEM block cut short): plain words, not the ASN.1 parser's debug text.
    own_csr_pem = _own_csr(tmp_path)
    body = own_csr_pem.splitlines()[1:-1]
    cut = "\n".join(
        ["-----BEGIN CERTIFICATE REQUEST-----", body[0][:40], "-----END CERTIFICATE REQUEST-----"]
    )
    page.get_by_label("Certificate signing request (PEM)").fill(cut)
    page.get_by_role("button", name="Create").click()
    error_text = page.locator("#csr-error").inner_text()
    assert "not a readable PKCS#10 request" in error_text, error_text
    assert "truncated or damaged" in error_text
    assert "ParseError" not in error_text and "{" not in error_text, error_text
    page.get_by_label("Certificate signing request (PEM)").fill(own_csr_pem)
    page.get_by_role("button", name="Create").click()
    expect(page.get_by_role("heading", name="Certificate issued")).to_be_visible()
    expect(page.get_by_label("Private key (PEM)")).to_have_count(0)  # the key never left the user
    assert _certs(gw)["laptop-7"]["validity_days"] == 3650  # the default: 10 years

    # Revoke (with its confirmation), then restore.
    page.get_by_role("button", name="Done").click()
    page.get_by_role("button", name=re.compile(r"^Revoke device-42 \(serial")).click()
    expect(page.get_by_role("heading", name="Revoke certificate")).to_be_visible()
    shot("revoke-confirm")
    page.get_by_role("button", name="Revoke", exact=True).click()
    expect(page.get_by_role("status")).to_contain_text("was revoked")
    shot("managed-tab-revoked")
    assert _certs(gw)["device-42"]["status"] in ("pending_revocation", "revoked")
    assert _certs(gw)["laptop-7"]["status"] == "active"
    page.get_by_role("button", name=re.compile(r"^Restore device-42 \(serial")).click()
    expect(page.get_by_role("status")).to_contain_text("was restored")
    expect(page.get_by_role("button", name=re.compile(r"^Revoke device-42"))).to_be_visible()
    assert _certs(gw)["device-42"]["status"] in ("pending_reactivation", "active")
