"""The edge-configuration endpoints driven through the official `cloudflare` Python SDK, against
a real `mtlsgate serve` on SQLite and on PostgreSQL: DNS records, the ssl zone setting, custom
certificates, Managed Transforms and Access certificate settings. Every change must advance the
config version the edge watches; reads must not."""

from __future__ import annotations

import re
from datetime import UTC, datetime, timedelta
from typing import Any

import cloudflare
import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec, ed25519, rsa
from cryptography.x509.oid import NameOID

from tests.e2e.test_rulesets_sdk import Bumps, d
from tests.harness import Gateway

HEX32 = re.compile(r"^[0-9a-f]{32}$")
RFC3339_MICRO = re.compile(r"^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{6}Z$")


# --- certificates for the custom-certificate tests ----------------------------------------------
def _key(kind: str) -> Any:
    if kind == "rsa":
        return rsa.generate_private_key(public_exponent=65537, key_size=2048)
    if kind == "ed25519":
        return ed25519.Ed25519PrivateKey.generate()
    return ec.generate_private_key(ec.SECP256R1())


def pem_key(key: Any) -> str:
    raw: bytes = key.private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.PKCS8,
        serialization.NoEncryption(),
    )
    return raw.decode()


def pem_cert(cert: x509.Certificate) -> str:
    return cert.public_bytes(serialization.Encoding.PEM).decode()


class TestCA:
    """A small ECDSA CA issuing server certificates."""

    __test__ = False

    def __init__(self, cn: str = "Edge Test CA") -> None:
        self.key = ec.generate_private_key(ec.SECP256R1())
        self.name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, cn)])
        now = datetime.now(UTC)
        self.cert = (
            x509.CertificateBuilder()
            .subject_name(self.name)
            .issuer_name(self.name)
            .public_key(self.key.public_key())
            .serial_number(x509.random_serial_number())
            .not_valid_before(now - timedelta(days=1))
            .not_valid_after(now + timedelta(days=3650))
            .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
            .sign(self.key, hashes.SHA256())
        )

    def issue(
        self,
        hosts: list[str],
        *,
        kind: str = "ec",
        cn: str | None = None,
        not_after: datetime | None = None,
    ) -> tuple[str, str, str]:
        """(leaf PEM, leaf+CA chain PEM, key PEM)."""
        key = _key(kind)
        now = datetime.now(UTC)
        subject = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, cn or hosts[0])])
        builder = (
            x509.CertificateBuilder()
            .subject_name(subject)
            .issuer_name(self.name)
            .public_key(key.public_key())
            .serial_number(x509.random_serial_number())
            .not_valid_before(now - timedelta(days=2))
            .not_valid_after(not_after or now + timedelta(days=90))
        )
        if hosts:
            builder = builder.add_extension(
                x509.SubjectAlternativeName([x509.DNSName(h) for h in hosts]), critical=False
            )
        leaf = builder.sign(self.key, hashes.SHA256())
        return pem_cert(leaf), pem_cert(leaf) + pem_cert(self.cert), pem_key(key)


# --- DNS records ----------------------------------------------------------------------------------
def test_sdk_dns_records_crud_filters_and_pages(gateway: Gateway) -> None:
    client = gateway.sdk()
    zone = gateway.zone_id
    bumps = Bumps(gateway)

    api = d(
        client.dns.records.create(
            zone_id=zone,
            name="api.example.com",
            type="A",
            content="127.0.0.1",
            proxied=True,
            ttl=1,
            comment="the API",
            tags=["team:edge", "env:test"],
        )
    )
    bumps.check()
    assert HEX32.match(api["id"])
    assert api["zone_id"] == zone
    assert api["zone_name"] == "example.com"
    assert api["name"] == "api.example.com"
    assert (api["type"], api["content"], api["proxied"], api["ttl"]) == ("A", "127.0.0.1", True, 1)
    assert api["proxiable"] is True
    assert api["comment"] == "the API"
    assert api["tags"] == ["team:edge", "env:test"]
    assert api["meta"] == {}
    assert RFC3339_MICRO.match(api["created_on"]) and RFC3339_MICRO.match(api["modified_on"])

    v6 = d(
        client.dns.records.create(
            zone_id=zone, name="API.Example.com.", type="AAAA", content="fd00::0:1", ttl=300
        )
    )
    bumps.check()
    assert v6["name"] == "api.example.com"
    assert v6["content"] == "fd00::1"
    assert v6["proxied"] is False
    apex = d(client.dns.records.create(zone_id=zone, name="@", type="A", content="10.0.0.5", ttl=1))
    assert apex["name"] == "example.com"
    www = d(
        client.dns.records.create(
            zone_id=zone, name="www", type="CNAME", content="Example.com", ttl=1, proxied=True
        )
    )
    bumps.check()
    assert (www["name"], www["content"]) == ("www.example.com", "example.com")

    # An identical record, and a CNAME next to another record, are refused; nothing changes.
    with pytest.raises(cloudflare.BadRequestError) as exc:
        client.dns.records.create(
            zone_id=zone, name="api.example.com", type="A", content="127.0.0.1", ttl=1
        )
    assert "identical record already exists" in str(exc.value)
    with pytest.raises(cloudflare.BadRequestError) as exc:
        client.dns.records.create(
            zone_id=zone, name="api.example.com", type="CNAME", content="x.example.net", ttl=1
        )
    assert "CNAME" in str(exc.value)
    with pytest.raises(cloudflare.BadRequestError) as exc:
        client.dns.records.create(
            zone_id=zone, name="api.example.com", type="MX", content="mx.example.com", ttl=1
        )
    assert "mtlsgate serves only A, AAAA and CNAME records" in str(exc.value)
    bumps.unchanged()

    assert d(client.dns.records.get(api["id"], zone_id=zone)) == api

    # Filters: the SDK sends name.exact / content.exact with dots, type and proxied plainly.
    names = {r.id for r in client.dns.records.list(zone_id=zone, name={"exact": "api.example.com"})}
    assert names == {api["id"], v6["id"]}
    assert [r.id for r in client.dns.records.list(zone_id=zone, type="AAAA")] == [v6["id"]]
    proxied = {r.id for r in client.dns.records.list(zone_id=zone, proxied=True)}
    assert proxied == {api["id"], www["id"]}
    assert [r.id for r in client.dns.records.list(zone_id=zone, content={"exact": "10.0.0.5"})] == [
        apex["id"]
    ]
    assert list(client.dns.records.list(zone_id=zone, type="CNAME", proxied=False)) == []

    # Page-number pagination: the iterator pages until it gets [].
    every = [r.id for r in client.dns.records.list(zone_id=zone, per_page=1)]
    assert sorted(every) == sorted([api["id"], v6["id"], apex["id"], www["id"]])
    page = client.dns.records.list(zone_id=zone, per_page=3, page=2)
    assert len(page.result) == 1
    assert client.dns.records.list(zone_id=zone, per_page=3, page=9).result == []

    # PUT replaces the whole record; PATCH changes what it is given.
    replaced = d(
        client.dns.records.update(
            api["id"],
            zone_id=zone,
            name="api.example.com",
            type="A",
            content="127.0.0.2",
            ttl=120,
            proxied=True,
        )
    )
    bumps.check()
    assert (replaced["content"], replaced["ttl"], replaced["comment"]) == ("127.0.0.2", 120, None)
    assert replaced["created_on"] == api["created_on"]
    assert replaced["modified_on"] > api["modified_on"]
    edited = d(
        client.dns.records.edit(
            api["id"], zone_id=zone, name="api.example.com", type="A", ttl=120, comment="again"
        )
    )
    bumps.check()
    assert (edited["content"], edited["comment"], edited["proxied"]) == (
        "127.0.0.2",
        "again",
        True,
    )

    deleted = client.dns.records.delete(www["id"], zone_id=zone)
    bumps.check()
    assert deleted is not None and deleted.id == www["id"]
    with pytest.raises(cloudflare.NotFoundError):
        client.dns.records.get(www["id"], zone_id=zone)
    with pytest.raises(cloudflare.NotFoundError):
        client.dns.records.delete(www["id"], zone_id=zone)
    bumps.unchanged()

    # Another zone's records are not visible through this zone.
    other = gateway.zones["other.org"]
    assert list(client.dns.records.list(zone_id=other)) == []
    with pytest.raises(cloudflare.NotFoundError):
        client.dns.records.get(api["id"], zone_id=other)


# --- zone settings --------------------------------------------------------------------------------
def test_sdk_ssl_setting(gateway: Gateway) -> None:
    client = gateway.sdk()
    zone = gateway.zone_id
    bumps = Bumps(gateway)

    default = d(client.zones.settings.get(setting_id="ssl", zone_id=zone))
    assert default == {"id": "ssl", "value": "flexible", "editable": True, "modified_on": None}
    bumps.unchanged()

    strict = d(client.zones.settings.edit(setting_id="ssl", zone_id=zone, value="strict"))
    bumps.check()
    assert (strict["id"], strict["value"], strict["editable"]) == ("ssl", "strict", True)
    assert RFC3339_MICRO.match(strict["modified_on"])
    assert d(client.zones.settings.get(setting_id="ssl", zone_id=zone)) == strict
    # The same value again is not a change.
    assert d(client.zones.settings.edit(setting_id="ssl", zone_id=zone, value="strict")) == strict
    bumps.unchanged()

    with pytest.raises(cloudflare.BadRequestError) as exc:
        client.zones.settings.edit(setting_id="ssl", zone_id=zone, value="on")
    assert "off, flexible, full, strict" in str(exc.value)
    with pytest.raises(cloudflare.NotFoundError):
        client.zones.settings.get(setting_id="always_use_https", zone_id=zone)
    bumps.unchanged()

    # The other zone still has the default.
    other = d(client.zones.settings.get(setting_id="ssl", zone_id=gateway.zones["other.org"]))
    assert other["value"] == "flexible"


# --- custom certificates --------------------------------------------------------------------------
def test_sdk_custom_certificates(gateway: Gateway) -> None:
    client = gateway.sdk()
    zone = gateway.zone_id
    bumps = Bumps(gateway)
    ca = TestCA()

    _, chain, key = ca.issue(["api.example.com", "*.example.com", "www.other.org"], kind="rsa")
    created_raw = client.custom_certificates.with_raw_response.create(
        zone_id=zone, certificate=chain, private_key=key, bundle_method="force"
    )
    bumps.check()
    body = created_raw.http_response.json()
    created = body["result"]
    # The SAN outside the zone is kept in `hosts`, with a message saying it is not served.
    assert any("www.other.org" in m["message"] for m in body["messages"])
    assert HEX32.match(created["id"])
    assert created["zone_id"] == zone
    assert created["hosts"] == ["api.example.com", "*.example.com", "www.other.org"]
    assert created["issuer"] == "CN=Edge Test CA"
    assert created["signature"] == "ECDSAWithSHA256"
    assert created["status"] == "active"
    assert created["priority"] == 0
    assert created["bundle_method"] == "force"
    assert "private_key" not in created
    assert RFC3339_MICRO.match(created["uploaded_on"])
    assert re.match(r"^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\dZ$", created["expires_on"])

    # Ed25519 and EC keys work as well; a certificate without SANs is named by its CN.
    _, chain2, key2 = ca.issue([], kind="ed25519", cn="edge.example.com")
    second = d(
        client.custom_certificates.create(zone_id=zone, certificate=chain2, private_key=key2)
    )
    bumps.check()
    assert second["hosts"] == ["edge.example.com"]
    assert second["bundle_method"] == "ubiquitous"

    listed = [d(c) for c in client.custom_certificates.list(zone_id=zone)]
    assert [c["id"] for c in listed] == [created["id"], second["id"]]
    assert [c.id for c in client.custom_certificates.list(zone_id=zone, per_page=1)] == [
        created["id"],
        second["id"],
    ]
    assert d(client.custom_certificates.get(created["id"], zone_id=zone)) == listed[0]

    # Replace the certificate and key together (e.g. a renewal).
    _, renewed, renewed_key = ca.issue(["api.example.com"], kind="ec")
    edited = d(
        client.custom_certificates.edit(
            created["id"], zone_id=zone, certificate=renewed, private_key=renewed_key
        )
    )
    bumps.check()
    assert edited["id"] == created["id"]
    assert edited["hosts"] == ["api.example.com"]
    assert edited["uploaded_on"] == created["uploaded_on"]
    assert edited["modified_on"] > created["modified_on"]
    assert edited["bundle_method"] == "force"

    # A key that is not the certificate's is refused, and the stored one is kept.
    _, _, stranger_key = ca.issue(["api.example.com"])
    with pytest.raises(cloudflare.BadRequestError) as exc:
        client.custom_certificates.edit(created["id"], zone_id=zone, private_key=stranger_key)
    assert "does not match" in str(exc.value)
    bumps.unchanged()
    assert d(client.custom_certificates.get(created["id"], zone_id=zone)) == edited

    deleted = client.custom_certificates.delete(second["id"], zone_id=zone)
    bumps.check()
    assert deleted is not None and deleted.id == second["id"]
    with pytest.raises(cloudflare.NotFoundError):
        client.custom_certificates.get(second["id"], zone_id=zone)
    assert [c.id for c in client.custom_certificates.list(zone_id=zone)] == [created["id"]]


# --- Managed Transforms ---------------------------------------------------------------------------
def test_sdk_managed_transforms(gateway: Gateway) -> None:
    client = gateway.sdk()
    zone = gateway.zone_id
    bumps = Bumps(gateway)

    initial = d(client.managed_transforms.list(zone_id=zone))
    request_ids = [h["id"] for h in initial["managed_request_headers"]]
    assert "add_client_certificate_headers" in request_ids
    assert "remove_visitor_ip_headers" in request_ids
    assert [h["id"] for h in initial["managed_response_headers"]] == [
        "remove_x-powered-by_header",
        "add_security_headers",
    ]
    assert not any(h["enabled"] for h in initial["managed_request_headers"])
    bumps.unchanged()

    edited = d(
        client.managed_transforms.edit(
            zone_id=zone,
            managed_request_headers=[
                {"id": "add_client_certificate_headers", "enabled": True},
                {"id": "add_true_client_ip_headers", "enabled": True},
            ],
            managed_response_headers=[],
        )
    )
    bumps.check()
    by_id = {h["id"]: h for h in edited["managed_request_headers"]}
    assert by_id["add_client_certificate_headers"]["enabled"] is True
    assert by_id["add_true_client_ip_headers"]["enabled"] is True
    # The disabled partner of an enabled conflicting transform reports the conflict.
    assert by_id["remove_visitor_ip_headers"]["has_conflict"] is True
    assert by_id["remove_visitor_ip_headers"]["conflicts_with"] == ["add_true_client_ip_headers"]
    assert d(client.managed_transforms.list(zone_id=zone)) == edited

    with pytest.raises(cloudflare.BadRequestError) as exc:
        client.managed_transforms.edit(
            zone_id=zone,
            managed_request_headers=[{"id": "remove_visitor_ip_headers", "enabled": True}],
            managed_response_headers=[],
        )
    assert "conflicts with" in str(exc.value)
    bumps.unchanged()
    # Switching both in one request is fine.
    swapped = d(
        client.managed_transforms.edit(
            zone_id=zone,
            managed_request_headers=[
                {"id": "remove_visitor_ip_headers", "enabled": True},
                {"id": "add_true_client_ip_headers", "enabled": False},
            ],
            managed_response_headers=[{"id": "add_security_headers", "enabled": True}],
        )
    )
    bumps.check()
    on = {h["id"] for h in swapped["managed_request_headers"] if h["enabled"]}
    assert on == {"add_client_certificate_headers", "remove_visitor_ip_headers"}

    client.managed_transforms.delete(zone_id=zone)
    bumps.check()
    after = d(client.managed_transforms.list(zone_id=zone))
    assert not any(h["enabled"] for h in after["managed_request_headers"])
    assert not any(h["enabled"] for h in after["managed_response_headers"])


# --- Access certificate settings ------------------------------------------------------------------
def test_sdk_access_certificate_settings(gateway: Gateway) -> None:
    client = gateway.sdk()
    zone = gateway.zone_id
    bumps = Bumps(gateway)
    settings = client.zero_trust.access.certificates.settings

    assert list(settings.get(zone_id=zone)) == []
    raw = settings.with_raw_response.update(
        zone_id=zone,
        settings=[
            {
                "hostname": "Admin.Example.com",
                "china_network": False,
                "client_certificate_forwarding": True,
            },
            {
                "hostname": "api.example.com",
                "china_network": False,
                "client_certificate_forwarding": False,
            },
        ],
    )
    assert raw.http_response.status_code == 202
    bumps.check()
    stored = [d(s) for s in settings.get(zone_id=zone)]
    assert stored == [
        {
            "hostname": "admin.example.com",
            "china_network": False,
            "client_certificate_forwarding": True,
        },
        {
            "hostname": "api.example.com",
            "china_network": False,
            "client_certificate_forwarding": False,
        },
    ]
    assert [d(s) for s in raw.parse()] == stored

    with pytest.raises(cloudflare.BadRequestError) as exc:
        settings.update(
            zone_id=zone,
            settings=[
                {
                    "hostname": "api.example.com",
                    "china_network": True,
                    "client_certificate_forwarding": True,
                }
            ],
        )
    assert "no China network" in str(exc.value)
    with pytest.raises(cloudflare.BadRequestError):
        settings.update(
            zone_id=zone,
            settings=[
                {
                    "hostname": "api.other.org",
                    "china_network": False,
                    "client_certificate_forwarding": True,
                }
            ],
        )
    bumps.unchanged()

    # PUT replaces the list.
    assert [d(s) for s in settings.update(zone_id=zone, settings=[])] == []
    bumps.check()
    assert list(settings.get(zone_id=zone)) == []
