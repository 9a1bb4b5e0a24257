"""The explain tool in Chromium: paste a chain made with the `openssl` CLI, choose a hostname,
see the verdict — the same one POST /zones/{zone_id}/mtls/explain gives."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from playwright.sync_api import Page, expect

from tests.certs import openssl_leaf, openssl_root
from tests.dashboard.conftest import Shots, sign_in
from tests.harness import Gateway

HOST = "api.example.com"
RULE = f'(http.host in {{"{HOST}"}} and not cf.tls_client_auth.cert_verified)'


def _api_explain(gw: Gateway, certificates: str) -> dict[str, Any]:
    with gw.http() as c:
        r = c.post(
            f"/zones/{gw.zones['example.com']}/mtls/explain",
            json={"hostname": HOST, "certificates": certificates},
        )
        assert r.status_code == 200, r.text
        result: dict[str, Any] = r.json()["result"]
        return result


def test_explain_page(page: Page, gw: Gateway, shot: Shots, tmp_path: Path) -> None:
    ca = openssl_root(tmp_path, kind="ec", cn="Explain CA")
    good = openssl_leaf(tmp_path, ca, cn="device-1")
    zone = gw.zones["example.com"]
    with gw.http() as c:
        r = c.post(
            f"/zones/{zone}/dns_records",
            json={"type": "A", "name": HOST, "content": "127.0.0.1", "proxied": True},
        )
        assert r.status_code == 200, r.text
        r = c.post(
            f"/accounts/{gw.account_id}/mtls_certificates",
            json={"ca": True, "name": "explain-ca", "certificates": ca.cert_pem},
        )
        assert r.status_code == 200, r.text
        r = c.put(
            f"/zones/{zone}/certificate_authorities/hostname_associations",
            json={"hostnames": [HOST], "mtls_certificate_id": r.json()["result"]["id"]},
        )
        assert r.status_code == 200, r.text
        r = c.put(
            f"/zones/{zone}/rulesets/phases/http_request_firewall_custom/entrypoint",
            json={"rules": [{"expression": RULE, "action": "block"}]},
        )
        assert r.status_code == 200, r.text

    sign_in(page, gw, gw.token)
    page.get_by_role("link", name="Explain").click()
    page.get_by_label("Hostname").fill(HOST)
    page.get_by_label("Client certificate chain (PEM)").fill(good.cert_pem)
    page.get_by_role("button", name="Explain").click()
    verdict = page.get_by_role("region", name="Verdict")
    expect(verdict).to_contain_text("Forwarded to the origin")
    expect(verdict).to_contain_text("explain-ca (uploaded)")
    shot("explain-ok")
    api = _api_explain(gw, good.cert_pem)
    assert api["decision"]["outcome"] == "origin" and api["client_auth"]["status"] == "ok"

    # No certificate: blocked by the seed's rule, as the API says.
    page.get_by_label("Client certificate chain (PEM)").fill("")
    page.get_by_role("button", name="Explain").click()
    expect(verdict).to_contain_text("Blocked: the edge answers 403")
    expect(verdict).to_contain_text("absent")
    shot("explain-absent")
    api = _api_explain(gw, "")
    assert api["decision"]["outcome"] == "block" and api["decision"]["status"] == 403

    # A private key pasted by mistake: refused next to the field, never echoed back.
    page.get_by_label("Client certificate chain (PEM)").fill(good.key_pem)
    page.get_by_role("button", name="Explain").click()
    error = page.locator("#certificates-error")
    expect(error).to_be_visible()
    expect(page.get_by_label("Client certificate chain (PEM)")).to_have_value("")
    expect(error).to_contain_text("PRIVATE KEY block")
    assert good.key_pem.splitlines()[1] not in page.content()  # the key material itself
    shot("explain-key-refused")
