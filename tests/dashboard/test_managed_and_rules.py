"""The Cloudflare-managed tab's Hosts section (Edit, the crosses, Save), the zone selector, and
Custom rules with "Create mTLS rule" — in Chromium, each change checked through the API."""

from __future__ import annotations

from pathlib import Path

from playwright.sync_api import Page, expect

from tests.certs import openssl_csr
from tests.dashboard.conftest import Shots, dash_url, sign_in
from tests.harness import Gateway

SEED_CONDITION = "not cf.tls_client_auth.cert_verified"


def _managed_hosts(gw: Gateway, zone: str = "example.com") -> list[str]:
    with gw.http() as c:
        r = c.get(f"/zones/{gw.zones[zone]}/certificate_authorities/hostname_associations")
        assert r.status_code == 200, r.text
        return sorted(r.json()["result"]["hostnames"])


def _custom_rules(gw: Gateway) -> list[dict[str, object]]:
    with gw.http() as c:
        r = c.get(
            f"/zones/{gw.zones['example.com']}/rulesets/phases/http_request_firewall_custom/entrypoint"
        )
        if r.status_code == 404:
            return []
        assert r.status_code == 200, r.text
        rules: list[dict[str, object]] = r.json()["result"]["rules"]
        return rules


def test_managed_hosts_edit_and_zone_switch(page: Page, gw: Gateway, shot: Shots) -> None:
    sign_in(page, gw, gw.token)
    expect(page.get_by_role("tab", name="Cloudflare-managed")).to_have_attribute(
        "aria-selected", "true"
    )
    hosts = page.get_by_role("region", name="Hosts")
    hosts.get_by_role("button", name="Edit").click()
    expect(page.get_by_role("heading", name="Edit Hosts")).to_be_visible()
    for host in ("mtls.example.com", "app.example.com"):
        page.get_by_label("Hostname", exact=True).fill(host)
        page.get_by_role("button", name="Add", exact=True).click()
    # A hostname of another zone: refused next to the field, in words.
    page.get_by_label("Hostname", exact=True).fill("api.other.org")
    page.get_by_role("button", name="Add", exact=True).click()
    expect(page.locator("#new_hostname-error")).to_contain_text("not in the zone example.com")
    expect(page.get_by_label("Hostname", exact=True)).to_have_attribute("aria-invalid", "true")
    shot("edit-hosts-error")
    page.get_by_label("Hostname", exact=True).fill("")
    page.get_by_role("button", name="Save", exact=True).click()
    expect(page.get_by_role("status")).to_contain_text("Saved: 2 hostname(s)")
    expect(page.get_by_role("region", name="Hosts")).to_contain_text("app.example.com")
    shot("managed-tab-hosts")
    assert _managed_hosts(gw) == ["app.example.com", "mtls.example.com"]

    page.get_by_role("region", name="Hosts").get_by_role("button", name="Edit").click()
    page.get_by_role("button", name="Remove app.example.com").click()
    page.get_by_role("button", name="Save", exact=True).click()
    expect(page.get_by_role("status")).to_contain_text("Saved: 1 hostname(s)")
    assert _managed_hosts(gw) == ["mtls.example.com"]

    # The zone selector: other.org has no hosts; example.com's are untouched.
    page.get_by_label("Zone").select_option(label="other.org")
    page.get_by_role("button", name="Switch zone").click()
    expect(page.get_by_label("Zone")).to_have_value(gw.zones["other.org"])
    expect(page.get_by_role("region", name="Hosts")).to_contain_text("No hostname of other.org")
    shot("managed-tab-other-zone")
    assert _managed_hosts(gw, "other.org") == []


def test_create_mtls_rule(page: Page, gw: Gateway, shot: Shots) -> None:
    with gw.http() as c:
        r = c.put(
            f"/zones/{gw.zones['example.com']}/certificate_authorities/hostname_associations",
            json={"hostnames": ["secure.example.com", "mtls.example.com"]},
        )
        assert r.status_code == 200, r.text
    sign_in(page, gw, gw.token)
    page.get_by_role("link", name="Custom rules", exact=True).click()
    expect(page.get_by_role("heading", name="Custom rules")).to_be_visible()
    shot("custom-rules-empty")
    page.get_by_role("button", name="Create mTLS rule").click()
    expect(page.get_by_label("secure.example.com")).to_be_checked()
    page.get_by_label("mtls.example.com").uncheck()
    shot("create-mtls-rule-hosts")
    page.get_by_role("button", name="Continue").click()

    expected = f'(http.host in {{"secure.example.com"}} and {SEED_CONDITION})'
    expect(page.get_by_label("Expression")).to_have_value(expected)
    expect(page.get_by_label("Action")).to_have_value("block")
    shot("create-mtls-rule-editor")
    page.get_by_role("button", name="Deploy").click()
    expect(page.get_by_role("status")).to_contain_text("Deployed the rule")
    expect(page.get_by_role("list", name="Rules, in the order they run")).to_contain_text(expected)
    shot("custom-rules-with-rule")
    [rule] = _custom_rules(gw)
    assert rule["expression"] == expected and rule["action"] == "block" and rule["enabled"] is True

    # A typo: the caret diagnostic appears as you type, and again after Deploy; nothing saved.
    page.get_by_role("button", name="Create rule", exact=True).click()
    page.get_by_label("Rule name").fill("typo")
    page.get_by_label("Expression").fill("not cf.tls_client_auth.cert_verifed")
    expect(page.locator("#expression-live")).to_contain_text("unknown identifier")
    expect(page.locator("#expression-live")).to_contain_text("^^^")
    shot("rule-editor-live-diagnostic")
    page.get_by_label("Expression").fill(SEED_CONDITION)
    expect(page.locator("#expression-live")).to_have_text("")
    page.get_by_label("Expression").fill("not cf.tls_client_auth.cert_verifed")
    page.get_by_role("button", name="Deploy").click()
    error = page.locator("#expression-error")
    expect(error).to_contain_text("unknown identifier")
    expect(error).to_contain_text("^^^")
    shot("rule-editor-error")
    assert len(_custom_rules(gw)) == 1

    # A second rule, then disable, reorder and edit it; each through the same service as the API.
    page.get_by_label("Rule name").fill("health log")
    page.get_by_label("Expression").fill('http.request.uri.path eq "/health"')
    page.get_by_label("Action").select_option(label="Log")
    page.get_by_role("button", name="Deploy").click()
    expect(page.get_by_role("status")).to_contain_text("Deployed the rule")
    assert [r["description"] for r in _custom_rules(gw)] == [rule["description"], "health log"]
    page.get_by_role("button", name="Disable rule health log").click()
    expect(page.get_by_role("button", name="Enable rule health log")).to_be_visible()
    assert _custom_rules(gw)[1]["enabled"] is False
    page.get_by_role("button", name="Move rule health log up").click()
    expect(page.get_by_role("status")).to_contain_text("moved up")
    assert [r["description"] for r in _custom_rules(gw)] == ["health log", rule["description"]]
    shot("custom-rules-two")
    page.get_by_role("button", name="Edit rule health log").click()
    expect(page.get_by_label("Expression")).to_have_value('http.request.uri.path eq "/health"')
    page.get_by_label("Expression").fill('http.request.uri.path eq "/healthz"')
    page.get_by_role("button", name="Save").click()
    expect(page.get_by_role("status")).to_contain_text("Saved the rule")
    edited = _custom_rules(gw)[0]
    assert edited["expression"] == 'http.request.uri.path eq "/healthz"'
    assert edited["enabled"] is False and edited["action"] == "log"

    # Delete both from the list.
    page.get_by_role("button", name=f"Delete rule {rule['description']}").click()
    expect(page.get_by_role("status")).to_contain_text("The rule was deleted.")
    page.get_by_role("button", name="Delete rule health log").click()
    expect(page.get_by_role("status")).to_contain_text("The rule was deleted.")
    assert _custom_rules(gw) == []


def _put_hosts(gw: Gateway, zone: str, hostnames: list[str]) -> None:
    with gw.http() as c:
        r = c.put(
            f"/zones/{gw.zones[zone]}/certificate_authorities/hostname_associations",
            json={"hostnames": hostnames},
        )
        assert r.status_code == 200, r.text


def test_zone_switched_in_another_tab_refuses_every_zone_form(
    page: Page, gw: Gateway, shot: Shots, tmp_path: Path
) -> None:
    """Forms opened for example.com, then the zone switched to other.org in another tab: Save,
    Deploy, Create and Revoke are refused in words and nothing is written to either zone."""
    _put_hosts(gw, "example.com", ["keep.example.com"])
    _put_hosts(gw, "other.org", ["prod.other.org", "pay.other.org"])
    csr = openssl_csr(tmp_path, kind="ec", cn="zone-device").cert_pem
    with gw.http() as c:
        r = c.post(
            f"/zones/{gw.zones['example.com']}/client_certificates",
            json={"csr": csr, "validity_days": 365},
        )
        assert r.status_code == 200, r.text
        cert_id = r.json()["result"]["id"]
    sign_in(page, gw, gw.token)
    context = page.context

    hosts = context.new_page()
    hosts.goto(dash_url(gw, "/client-certificates/managed/hosts"))
    hosts.get_by_role("button", name="Remove keep.example.com").click()
    expect(hosts.get_by_role("button", name="Remove keep.example.com")).to_have_count(0)
    rule = context.new_page()
    rule.goto(dash_url(gw, "/custom-rules/new"))
    rule.get_by_label("Rule name").fill("zone test")
    rule.get_by_label("Expression").fill('http.host eq "keep.example.com"')
    issue = context.new_page()
    issue.goto(dash_url(gw, "/client-certificates/add?ca=managed"))
    issue.get_by_label("Common name").fill("wrong-zone-device")
    revoke = context.new_page()
    revoke.goto(dash_url(gw, f"/client-certificates/managed/{cert_id}/revoke"))

    # Another tab switches the session to other.org.
    page.goto(dash_url(gw, "/client-certificates"))
    page.get_by_label("Zone", exact=True).select_option(label="other.org")
    page.get_by_role("button", name="Switch zone").click()
    expect(page.get_by_label("Zone", exact=True)).to_have_value(gw.zones["other.org"])

    for tab, button in (
        (hosts, "Save"),
        (rule, "Deploy"),
        (issue, "Create"),
        (revoke, "Revoke"),
    ):
        tab.get_by_role("button", name=button, exact=True).click()
        expect(tab.get_by_role("heading", name="The zone changed")).to_be_visible()
        expect(tab.get_by_role("alert")).to_contain_text(
            "The zone changed since this page was opened; nothing was saved"
        )
    shot("zone-changed-refused")
    assert _managed_hosts(gw, "example.com") == ["keep.example.com"]
    assert _managed_hosts(gw, "other.org") == ["pay.other.org", "prod.other.org"]
    assert _custom_rules(gw) == []
    with gw.http() as c:
        for zone in ("example.com", "other.org"):
            r = c.get(f"/zones/{gw.zones[zone]}/client_certificates", params={"status": "all"})
            names = [x["common_name"] for x in r.json()["result"]]
            assert names == (["zone-device"] if zone == "example.com" else []), names
        r = c.get(f"/zones/{gw.zones['example.com']}/client_certificates/{cert_id}")
        assert r.json()["result"]["status"] == "active"
        phase = "rulesets/phases/http_request_firewall_custom/entrypoint"
        r = c.get(f"/zones/{gw.zones['other.org']}/{phase}")
        assert r.status_code == 404
    for tab in (hosts, rule, issue, revoke):
        tab.close()


def test_save_refused_when_the_list_changed_since_loading(page: Page, gw: Gateway) -> None:
    _put_hosts(gw, "example.com", ["one.example.com"])
    sign_in(page, gw, gw.token)
    page.goto(dash_url(gw, "/client-certificates/managed/hosts"))
    page.get_by_label("Hostname", exact=True).fill("two.example.com")
    page.get_by_role("button", name="Add", exact=True).click()
    # Meanwhile, someone else changes the list through the API.
    _put_hosts(gw, "example.com", ["one.example.com", "three.example.com"])
    page.get_by_role("button", name="Save", exact=True).click()
    expect(page.locator("#hostnames-error")).to_contain_text(
        "changed elsewhere since this page was opened"
    )
    expect(page.locator("#hostnames-error")).to_contain_text("nothing was saved")
    assert _managed_hosts(gw) == ["one.example.com", "three.example.com"]
    # Opened again, the page carries the new list and saves.
    page.goto(dash_url(gw, "/client-certificates/managed/hosts"))
    page.get_by_role("button", name="Remove three.example.com").click()
    page.get_by_role("button", name="Save", exact=True).click()
    expect(page.get_by_role("status")).to_contain_text("Saved: 1 hostname(s)")
    assert _managed_hosts(gw) == ["one.example.com"]
    _put_hosts(gw, "example.com", [])


def test_renaming_a_skip_rule_keeps_its_action(page: Page, gw: Gateway) -> None:
    zone = gw.zones["example.com"]
    with gw.http() as c:
        r = c.put(
            f"/zones/{zone}/rulesets/phases/http_request_firewall_custom/entrypoint",
            json={"rules": [
                {"expression": "ip.src eq 10.0.0.1", "action": "skip",
                 "action_parameters": {"ruleset": "current"}, "description": "office skip"},
                {"expression": SEED_CONDITION, "action": "block", "description": "mtls"},
            ]},
        )  # fmt: skip
        assert r.status_code == 200, r.text
    sign_in(page, gw, gw.token)
    page.get_by_role("link", name="Custom rules", exact=True).click()
    page.get_by_role("button", name="Edit rule office skip").click()
    expect(page.get_by_label("Action")).to_have_value("skip")
    page.get_by_label("Rule name").fill("office skip (renamed)")
    page.get_by_role("button", name="Save").click()
    expect(page.get_by_role("status")).to_contain_text("Saved the rule")
    skip, mtls = _custom_rules(gw)
    assert skip["description"] == "office skip (renamed)"
    assert skip["action"] == "skip" and skip["action_parameters"] == {"ruleset": "current"}
    assert skip["expression"] == "ip.src eq 10.0.0.1"
    assert mtls["action"] == "block"
    # A rule whose action the user does change does change (and keeps the rest).
    page.get_by_role("button", name="Edit rule mtls").click()
    page.get_by_label("Action").select_option(label="Log")
    page.get_by_role("button", name="Save").click()
    expect(page.get_by_role("status")).to_contain_text("Saved the rule")
    assert _custom_rules(gw)[1]["action"] == "log"
    assert _custom_rules(gw)[0]["action"] == "skip"
    with gw.http() as c:
        r = c.put(
            f"/zones/{zone}/rulesets/phases/http_request_firewall_custom/entrypoint",
            json={"rules": []},
        )
        assert r.status_code == 200, r.text
