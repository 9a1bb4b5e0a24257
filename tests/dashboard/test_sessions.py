"""Dashboard sign-in, sign-out, the session cookie, CSRF refusals, and a read-only token that sees
but cannot change — each checked in Chromium and, for what would change state, through the API."""

from __future__ import annotations

import json
import re
from pathlib import Path

import httpx
from playwright.sync_api import Page, expect

from tests.certs import openssl_csr, openssl_root
from tests.dashboard.conftest import Shots, dash_url, sign_in
from tests.harness import Gateway


def _managed_hosts(gw: Gateway) -> list[str]:
    with gw.http() as c:
        r = c.get(f"/zones/{gw.zones['example.com']}/certificate_authorities/hostname_associations")
        assert r.status_code == 200, r.text
        return sorted(r.json()["result"]["hostnames"])


def _csrf(page: Page) -> str:
    return _hidden(page, "csrf_token")


def _hidden(page: Page, name: str) -> str:
    value = page.locator(f"input[name={name}]").first.get_attribute("value")
    assert value
    return value


def test_sign_in_cookie_and_sign_out(page: Page, gw: Gateway, shot: Shots) -> None:
    page.goto(dash_url(gw))
    expect(page).to_have_url(re.compile(r"/dash/sign-in$"))
    shot("sign-in")
    # A wrong token: refused next to the field, no session.
    page.get_by_label("API token").fill("not-a-real-token")
    page.get_by_role("button", name="Sign in").click()
    expect(page.locator("#api_token-error")).to_contain_text("not valid")
    shot("sign-in-wrong-token")

    sign_in(page, gw, gw.token)
    [cookie] = [c for c in page.context.cookies() if c["name"] == "mtlsgate_session"]
    assert cookie["httpOnly"] is True
    assert cookie["sameSite"] == "Strict"
    assert cookie["secure"] is False  # plain HTTP here; Secure when served over TLS
    # The cookie holds a random id, never the token.
    assert gw.token not in cookie["value"]

    page.get_by_role("button", name="Sign out").click()
    expect(page.get_by_role("status")).to_contain_text("You have signed out.")
    expect(page.get_by_label("API token")).to_be_visible()
    shot("signed-out")
    # The old session id is dead on the server, not only forgotten by the browser.
    r = httpx.get(
        dash_url(gw, "/client-certificates"),
        cookies={"mtlsgate_session": cookie["value"]},
        follow_redirects=False,
    )
    assert r.status_code == 303 and r.headers["location"] == "/dash/sign-in"
    page.goto(dash_url(gw, "/client-certificates"))
    expect(page).to_have_url(re.compile(r"/dash/sign-in$"))


def test_csrf_refused(page: Page, gw: Gateway, shot: Shots) -> None:
    before = _managed_hosts(gw)
    # Sign-in itself is protected: a POST without the form's token is refused.
    r = page.request.post(dash_url(gw, "/sign-in"), form={"api_token": gw.token})
    assert r.status == 403 and "CSRF" in r.text()

    sign_in(page, gw, gw.token)
    page.goto(dash_url(gw, "/client-certificates/managed/hosts"))
    form = {"step": "hosts", "hostnames": "api.example.com", "action": "save"}
    # With the session cookie but without (or with a wrong) CSRF token: refused, nothing saved.
    for extra in ({}, {"csrf_token": "wrong"}):
        r = page.request.post(dash_url(gw, "/client-certificates/managed/hosts"), form=form | extra)
        assert r.status == 403, r.text()
        assert "CSRF" in r.text() and "Nothing was changed" in r.text()
    page.set_content(r.text())
    shot("csrf-refused")
    assert _managed_hosts(gw) == before
    # Sign-out needs it too: the session survives a forged sign-out.
    r = page.request.post(dash_url(gw, "/sign-out"), form={})
    assert r.status == 403
    # The same request with the page's token goes through the service and is saved.
    page.goto(dash_url(gw, "/client-certificates/managed/hosts"))
    r = page.request.post(
        dash_url(gw, "/client-certificates/managed/hosts"),
        form=form
        | {
            "csrf_token": _csrf(page),
            "form_zone": _hidden(page, "form_zone"),
            "loaded_digest": _hidden(page, "loaded_digest"),
        },
    )
    assert r.ok, r.text()
    assert _managed_hosts(gw) == sorted({*before, "api.example.com"})


def test_read_only_token_sees_but_cannot_change(
    page: Page, gw: Gateway, shot: Shots, tmp_path: Path
) -> None:
    root = openssl_root(tmp_path, cn="Read Only Test CA")
    zone = gw.zones["example.com"]
    csr = openssl_csr(tmp_path, kind="ec", cn="ro-device").cert_pem
    with gw.http() as c:
        r = c.post(
            f"/zones/{zone}/client_certificates",
            json={"csr": csr, "validity_days": 365},
        )
        assert r.status_code == 200, r.text
        managed_id = r.json()["result"]["id"]
        r = c.put(
            f"/zones/{zone}/rulesets/phases/http_request_firewall_custom/entrypoint",
            json={"rules": [{"expression": "ip.src eq 10.0.0.9", "action": "log",
                             "description": "ro rule"}]},
        )  # fmt: skip
        assert r.status_code == 200, r.text
        rules_before = r.json()["result"]["rules"]
        r = c.post(
            f"/accounts/{gw.account_id}/mtls_certificates",
            json={"ca": True, "certificates": root.cert_pem, "name": "RO CA"},
        )
        assert r.status_code == 200, r.text
        cert_id = r.json()["result"]["id"]
        r = c.put(
            f"/zones/{gw.zones['example.com']}/certificate_authorities/hostname_associations",
            json={"hostnames": ["ro.example.com"], "mtls_certificate_id": cert_id},
        )
        assert r.status_code == 200, r.text
    token = json.loads(
        gw.cli(
            "token",
            "create",
            "--permission",
            "Account: SSL and Certificates Read",
            "--permission",
            "SSL and Certificates Read",
            "--permission",
            "Zone WAF Read",
            "--name",
            "read only",
        ).stdout
    )["api_token"]

    page.set_viewport_size({"width": 380, "height": 800})  # a narrow window as well
    sign_in(page, gw, token)
    # The managed tab: the certificate and its status, no Add, Revoke, Restore or Edit.
    row = page.get_by_role("listitem").filter(has_text="ro-device")
    expect(row).to_contain_text("Active")
    main = page.locator("main")
    for name in ("Add Certificate", "Edit"):
        expect(main.get_by_role("button", name=name, exact=True)).to_have_count(0)
    for name in ("Revoke", "Restore"):
        expect(main.get_by_role("button", name=re.compile(f"^{name}"))).to_have_count(0)
    shot("read-only-managed-narrow")
    # Forged revoke (valid session, CSRF token and zone): refused, the certificate still active.
    r = page.request.post(
        dash_url(gw, f"/client-certificates/managed/{managed_id}/revoke"),
        form={"csrf_token": _csrf(page), "form_zone": zone},
        max_redirects=0,
    )
    assert r.status == 303
    page.goto(dash_url(gw, "/client-certificates?tab=managed"))
    expect(page.get_by_role("status")).to_contain_text("does not allow this")
    with gw.http() as c:
        r = c.get(f"/zones/{zone}/client_certificates/{managed_id}")
        assert r.json()["result"]["status"] == "active"

    # A forged Create: refused in words, and the page it returns still says what the token lacks.
    r = page.request.post(
        dash_url(gw, "/client-certificates/add"),
        form={
            "csrf_token": _csrf(page),
            "form_zone": zone,
            "certificate_authority": "managed",
            "key_source": "generate",
            "common_name": "forged-device",
            "key_type": "ec",
            "validity_days": "365",
        },
    )
    assert r.status == 400 and "does not allow this" in r.text(), re.findall(
        r'role="alert">([^<]+)', r.text()
    )
    assert "cannot issue certificates" in r.text() and "cannot upload CAs" in r.text()
    with gw.http() as c:
        r = c.get(f"/zones/{zone}/client_certificates", params={"status": "all"})
        assert [x["common_name"] for x in r.json()["result"]] == ["ro-device"]

    # Custom rules: listed, with no control that creates, edits, reorders or deletes.
    page.get_by_role("link", name="Custom rules").click()
    expect(page.get_by_role("listitem").filter(has_text="ro rule")).to_be_visible()
    for name in ("Create mTLS rule", "Create rule"):
        expect(main.get_by_role("button", name=name)).to_have_count(0)
    for verb in ("Edit", "Delete", "Disable", "Enable", "Move"):
        expect(main.get_by_role("button", name=re.compile(f"^{verb}"))).to_have_count(0)
    expect(page.get_by_text("can read but not change custom rules")).to_be_visible()
    shot("read-only-custom-rules-narrow")
    r = page.request.post(
        dash_url(gw, f"/custom-rules/{rules_before[0]['id']}/delete"),
        form={"csrf_token": _csrf(page), "form_zone": zone},
        max_redirects=0,
    )
    assert r.status == 303
    page.goto(dash_url(gw, "/custom-rules"))
    expect(page.get_by_role("status")).to_contain_text("does not allow this")
    with gw.http() as c:
        r = c.get(f"/zones/{zone}/rulesets/phases/http_request_firewall_custom/entrypoint")
        assert r.json()["result"]["rules"] == rules_before

    page.get_by_role("link", name="Client Certificates").click()
    page.get_by_role("tab", name="BYOCA").click()
    row = page.get_by_role("listitem").filter(has_text="RO CA")
    expect(row).to_contain_text("ro.example.com")
    expect(page.get_by_role("button", name="Add Certificate")).to_have_count(0)
    shot("read-only-byoca-narrow")
    menu_button = page.get_by_role("button", name="Actions for RO CA")
    menu_button.click()
    expect(page.get_by_role("menuitem", name="Edit hostnames")).to_be_visible()
    # Escape on the button closes the open menu, as from inside it.
    menu_button.focus()
    page.keyboard.press("Escape")
    expect(page.get_by_role("menuitem", name="Edit hostnames")).to_have_count(0)
    expect(menu_button).to_have_attribute("aria-expanded", "false")
    menu_button.click()
    expect(page.get_by_role("menuitem", name="Edit hostnames")).to_be_visible()
    expect(page.get_by_role("menuitem", name="Delete")).to_have_count(0)
    page.get_by_role("menuitem", name="Edit hostnames").click()
    expect(page.get_by_role("heading", name="Certificate Details")).to_be_visible()
    expect(page.get_by_role("list").filter(has_text="ro.example.com")).to_be_visible()
    expect(page.get_by_role("button", name="Remove ro.example.com")).to_have_count(0)
    expect(page.get_by_role("button", name="Save")).to_have_count(0)
    expect(page.get_by_text("can read but not change")).to_be_visible()
    shot("read-only-details-narrow")

    # Forging the form anyway (valid session and CSRF token): the service refuses, in words.
    action = f"/client-certificates/byoca/{cert_id}/hostnames"
    r = page.request.post(
        dash_url(gw, action),
        form={
            "csrf_token": _csrf(page),
            "form_zone": _hidden(page, "form_zone"),
            "loaded_digest": _hidden(page, "loaded_digest"),
            "step": "details",
            "action": "save",
        },
    )
    assert r.status == 400
    assert "does not allow this" in r.text() and "SSL and Certificates Write" in r.text()
    r = page.request.post(
        dash_url(gw, f"/client-certificates/byoca/{cert_id}/delete"),
        form={"csrf_token": _csrf(page)},
    )
    assert r.status == 403
    assert "does not allow this" in r.text()
    with gw.http() as c:
        r = c.get(
            f"/zones/{gw.zones['example.com']}/certificate_authorities/hostname_associations",
            params={"mtls_certificate_id": cert_id},
        )
        assert r.json()["result"]["hostnames"] == ["ro.example.com"]
        assert c.get(f"/accounts/{gw.account_id}/mtls_certificates/{cert_id}").status_code == 200


def test_cookies_are_secure_behind_tls(gw: Gateway) -> None:
    """Behind a TLS-terminating proxy on the same machine (X-Forwarded-Proto: https from
    127.0.0.1, which uvicorn trusts) both cookies carry Secure; never the token."""
    base = f"http://127.0.0.1:{gw.port}"
    with httpx.Client(base_url=base, headers={"x-forwarded-proto": "https"}) as c:
        r = c.get("/dash/sign-in")
        signin_cookie = r.headers["set-cookie"]
        assert "Secure" in signin_cookie and "HttpOnly" in signin_cookie
        match = re.search(r'name="csrf_token" value="([^"]+)"', r.text)
        assert match
        csrf = match.group(1)
        r = c.post(
            "/dash/sign-in",
            data={"csrf_token": csrf, "api_token": gw.token},
            headers={"cookie": f"mtlsgate_signin={csrf}"},
        )
        assert r.status_code == 303, r.text
        [session] = [v for v in r.headers.get_list("set-cookie") if "mtlsgate_session=" in v]
        assert "Secure" in session and "HttpOnly" in session
        assert "samesite=strict" in session.lower()
        assert gw.token not in session
    log = (gw.data_dir.parent / f"serve-{gw.port}.log").read_text()
    assert gw.token not in log


def test_upload_over_the_limit_gets_a_page(gw: Gateway) -> None:
    """Over 1 MiB under /dash: a page in plain words with the dashboard's security headers, not
    the API's JSON (which the API keeps)."""
    body = b"x" * (1024 * 1024 + 10)
    base = f"http://127.0.0.1:{gw.port}"
    for path in ("/dash/client-certificates/add", "/dash/sign-in"):
        r = httpx.post(base + path, content=body, headers={"content-type": "text/plain"})
        assert r.status_code == 413
        assert r.headers["content-type"].startswith("text/html"), r.text[:200]
        assert "The upload is too large" in r.text and "1 MiB" in r.text
        assert "nothing was saved" in r.text and '"code"' not in r.text
        assert "frame-ancestors 'none'" in r.headers["content-security-policy"]
        assert r.headers["x-frame-options"] == "DENY"
    r = httpx.post(f"{gw.base_url}/zones", content=body, headers={"authorization": "Bearer x"})
    assert r.status_code == 413 and r.json()["success"] is False
