"""The seed's BYOCA flow through the dashboard in Chromium, checked through the API after each
change: upload a CA made with the `openssl` CLI, associate two hostnames, remove one with its
cross, the refused delete while a hostname remains, then the delete; and a bad upload."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from playwright.sync_api import Page, expect

from tests.certs import openssl_leaf, openssl_root
from tests.dashboard.conftest import Shots, dash_url, sign_in
from tests.harness import Gateway

CA_NAME = "Seed Corp Root"
SEED_CONDITION = "not cf.tls_client_auth.cert_verified"
PHASE = "http_request_firewall_custom"


def _cas_named(gw: Gateway, name: str) -> list[dict[str, Any]]:
    with gw.http() as c:
        r = c.get(f"/accounts/{gw.account_id}/mtls_certificates")
        assert r.status_code == 200, r.text
        return [x for x in r.json()["result"] if x["name"] == name]


def _all_cas(gw: Gateway) -> list[dict[str, Any]]:
    with gw.http() as c:
        r = c.get(f"/accounts/{gw.account_id}/mtls_certificates")
        assert r.status_code == 200, r.text
        return list(r.json()["result"])


def _hostnames(gw: Gateway, cert_id: str) -> list[str]:
    with gw.http() as c:
        r = c.get(
            f"/zones/{gw.zones['example.com']}/certificate_authorities/hostname_associations",
            params={"mtls_certificate_id": cert_id},
        )
        assert r.status_code == 200, r.text
        return sorted(r.json()["result"]["hostnames"])


def _open_actions(page: Page, item: str) -> None:
    page.get_by_role("button", name=f"Actions for {CA_NAME}").click()
    page.get_by_role("menuitem", name=item).click()


def test_byoca_seed_flow(page: Page, gw: Gateway, shot: Shots, tmp_path: Path) -> None:
    root = openssl_root(tmp_path, cn="Seed Corp Root CA")
    sign_in(page, gw, gw.token)
    shot("signed-in")
    # Two zones: the selector is there, with the first zone by name chosen.
    expect(page.get_by_label("Zone")).to_have_value(gw.zones["example.com"])

    page.get_by_role("link", name="Client Certificates").click()
    page.get_by_role("tab", name="BYOCA").click()
    expect(page.get_by_role("tab", name="BYOCA")).to_have_attribute("aria-selected", "true")
    shot("byoca-tab-empty")
    page.get_by_role("button", name="Add Certificate").click()

    ca_select = page.get_by_label("Certificate Authority")
    ca_select.select_option(label="Cloudflare-managed CA")
    # The BYOCA form is hidden, not off-screen: its controls are not in the accessibility tree.
    expect(page.get_by_label("CA certificate (PEM)")).to_be_hidden()
    expect(page.get_by_role("textbox", name="Name", exact=True)).to_have_count(0)
    expect(page.get_by_role("button", name="Continue")).to_have_count(0)
    tree = page.locator("main").aria_snapshot()
    assert "CA certificate (PEM)" not in tree and "Continue" not in tree, tree
    ca_select.select_option(label="Bring your own CA")
    page.get_by_label("CA certificate (PEM)").set_input_files(str(root.cert_path))
    page.get_by_label("Name", exact=True).fill(CA_NAME)
    shot("add-certificate")
    page.get_by_role("button", name="Continue").click()

    expect(page.get_by_role("heading", name="Associate Hostnames")).to_be_visible()
    [uploaded] = _cas_named(gw, CA_NAME)
    assert uploaded["ca"] is True
    assert uploaded["certificates"].strip() == root.cert_pem.strip()
    for host in ("api.example.com", "www.example.com"):
        page.get_by_label("Hostname", exact=True).fill(host)
        page.get_by_role("button", name="Add", exact=True).click()
        expect(page.get_by_role("button", name=f"Remove {host}")).to_be_visible()
    # Adding is not saving: nothing is associated until Save.
    assert _hostnames(gw, uploaded["id"]) == []
    shot("associate-hostnames")
    page.get_by_role("button", name="Save", exact=True).click()

    expect(page.get_by_role("tab", name="BYOCA")).to_have_attribute("aria-selected", "true")
    expect(page.get_by_role("status")).to_contain_text("Saved: 2 hostname(s)")
    row = page.get_by_role("listitem").filter(has_text=CA_NAME)
    expect(row).to_contain_text("api.example.com")
    expect(row).to_contain_text("www.example.com")
    shot("byoca-tab-with-ca")
    assert _hostnames(gw, uploaded["id"]) == ["api.example.com", "www.example.com"]

    # Create the mTLS rule from the BYOCA tab: both hostnames pre-filled, Deploy, then the API.
    page.get_by_role("button", name="Create mTLS rule").click()
    expect(page.get_by_role("heading", name="Create mTLS rule")).to_be_visible()
    for host in ("api.example.com", "www.example.com"):
        expect(page.get_by_role("checkbox", name=host)).to_be_checked()
    shot("create-mtls-rule-hosts")
    page.get_by_role("button", name="Continue").click()
    expected = f'(http.host in {{"api.example.com" "www.example.com"}} and {SEED_CONDITION})'
    expect(page.get_by_label("Expression")).to_have_value(expected)
    expect(page.get_by_label("Action")).to_have_value("block")
    shot("create-mtls-rule-editor")
    page.get_by_role("button", name="Deploy").click()
    expect(page.get_by_role("status")).to_contain_text("Deployed the rule")
    with gw.http() as c:
        r = c.get(f"/zones/{gw.zones['example.com']}/rulesets/phases/{PHASE}/entrypoint")
        assert r.status_code == 200, r.text
        [rule] = r.json()["result"]["rules"]
    assert rule["expression"] == expected
    assert rule["action"] == "block" and rule["enabled"] is True
    page.get_by_role("link", name="Client Certificates").click()
    page.get_by_role("tab", name="BYOCA").click()

    # The three dots: Edit hostnames opens Certificate Details; the cross removes one.
    _open_actions(page, "Edit hostnames")
    expect(page.get_by_role("heading", name="Certificate Details")).to_be_visible()
    shot("certificate-details")
    page.get_by_role("button", name="Remove www.example.com").click()
    expect(page.get_by_role("button", name="Remove www.example.com")).to_have_count(0)
    assert _hostnames(gw, uploaded["id"]) == ["api.example.com", "www.example.com"]
    page.get_by_role("button", name="Save", exact=True).click()
    expect(page.get_by_role("status")).to_contain_text("Saved: 1 hostname(s)")
    assert _hostnames(gw, uploaded["id"]) == ["api.example.com"]

    # Delete while a hostname remains: explained and refused.
    _open_actions(page, "Delete")
    alert = page.get_by_role("alert")
    expect(alert).to_contain_text("hostnames must be removed first")
    expect(alert).to_contain_text("api.example.com")
    expect(page.get_by_role("button", name="Delete")).to_have_count(0)
    shot("delete-refused")
    assert len(_cas_named(gw, CA_NAME)) == 1

    # Remove the last hostname, then delete.
    page.get_by_role("link", name="Edit hostnames").click()
    page.get_by_role("button", name="Remove api.example.com").click()
    page.get_by_role("button", name="Save", exact=True).click()
    assert _hostnames(gw, uploaded["id"]) == []
    _open_actions(page, "Delete")
    shot("delete-confirm")
    page.get_by_role("button", name="Delete").click()
    expect(page.get_by_role("status")).to_contain_text(f"The CA “{CA_NAME}” was deleted.")
    expect(page.get_by_role("button", name=f"Actions for {CA_NAME}")).to_have_count(0)
    shot("byoca-tab-after-delete")
    assert _cas_named(gw, CA_NAME) == []
    with gw.http() as c:
        r = c.get(f"/accounts/{gw.account_id}/mtls_certificates/{uploaded['id']}")
        assert r.status_code == 404


def test_bad_upload_shows_error_next_to_field(
    page: Page, gw: Gateway, shot: Shots, tmp_path: Path
) -> None:
    root = openssl_root(tmp_path, cn="Leaf Issuer")
    leaf = openssl_leaf(tmp_path, root, cn="not a ca")  # Basic Constraints CA:FALSE
    sign_in(page, gw, gw.token)
    page.goto(dash_url(gw, "/client-certificates/add?ca=byoca"))
    page.get_by_label("CA certificate (PEM)").set_input_files(str(leaf.cert_path))
    page.get_by_label("Name", exact=True).fill("Not a CA")
    page.get_by_role("button", name="Continue").click()

    field = page.get_by_label("CA certificate (PEM)")
    expect(field).to_have_attribute("aria-invalid", "true")
    error = page.locator("#ca_file-error")
    # The service's own words, next to the field, not a JSON dump.
    expect(error).to_contain_text("is not a CA")
    text = error.inner_text()
    assert "{" not in text and '"code"' not in text, text
    assert "ca_file-error" in (field.get_attribute("aria-describedby") or "")
    # Still on the form, the name kept; nothing uploaded.
    expect(page.get_by_label("Name", exact=True)).to_have_value("Not a CA")
    shot("bad-upload-not-a-ca")
    assert _cas_named(gw, "Not a CA") == []

    # A file that is not PEM at all.
    junk = tmp_path / "junk.pem"
    junk.write_text("hello, this is not a certificate\n")
    page.get_by_label("CA certificate (PEM)").set_input_files(str(junk))
    page.get_by_role("button", name="Continue").click()
    expect(page.locator("#ca_file-error")).to_be_visible()
    assert "{" not in page.locator("#ca_file-error").inner_text()
    shot("bad-upload-not-pem")
    assert _cas_named(gw, "Not a CA") == []

    # Names refuse C0 and C1 controls and bidi overrides (a name that reads as another one).
    for bad in ("Corp\u202egnp.exe", "Corp\u2066x\u2069", "Corp\x85Root", "Corp\x07"):
        page.get_by_label("CA certificate (PEM)").set_input_files(str(root.cert_path))
        page.get_by_label("Name", exact=True).fill(bad)
        page.get_by_role("button", name="Continue").click()
        expect(page.locator("#name-error")).to_contain_text("printable characters")
    assert [c for c in _all_cas(gw) if c["name"].startswith("Corp")] == []

    # At 320 px the form fits: no sideways scrolling (the file input used to widen its fieldset).
    page.set_viewport_size({"width": 320, "height": 700})
    page.goto(dash_url(gw, "/client-certificates/add?ca=byoca"))
    assert page.evaluate("document.documentElement.scrollWidth") <= 320
    shot("add-certificate-320px")
