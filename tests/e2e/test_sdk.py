"""Every endpoint driven through the official `cloudflare` Python SDK (5.x), against a real
`mtlsgate serve` process on SQLite and on PostgreSQL.

Expected certificate facts (serial, issuer, validity) come from the `openssl` CLI, not from the
library the server uses, so the two are checked against each other.
"""

from __future__ import annotations

import uuid
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import cloudflare
import pytest

from tests.certs import CertFiles, openssl, openssl_root
from tests.harness import Gateway

WARN_DUPLICATE = 1455
CERTIFICATE_IN_USE = 1491


# --- openssl's view of a certificate ------------------------------------------------------------


def openssl_serial_decimal(cert: CertFiles) -> str:
    out = openssl("x509", "-in", cert.cert_path, "-noout", "-serial").strip()
    assert out.startswith("serial=")
    return str(int(out.removeprefix("serial="), 16))


def openssl_issuer_rfc4514(cert: CertFiles) -> str:
    # RFC 2253 output of openssl = RFC 4514 string (most specific RDN first, no spaces).
    out = openssl("x509", "-in", cert.cert_path, "-noout", "-issuer", "-nameopt", "RFC2253")
    return out.strip().removeprefix("issuer=")


def openssl_not_after(cert: CertFiles) -> datetime:
    out = openssl("x509", "-in", cert.cert_path, "-noout", "-enddate").strip()
    # e.g. "notAfter=Mar  1 12:00:00 2035 GMT"
    value = out.removeprefix("notAfter=").removesuffix(" GMT")
    return datetime.strptime(value, "%b %d %H:%M:%S %Y").replace(tzinfo=UTC)


def pem_body(pem: str) -> str:
    """The base64 of a PEM certificate, whatever its line layout."""
    return "".join(
        line.strip() for line in pem.strip().splitlines() if not line.startswith("-----")
    )


def check_reported(obj: Any, cert: CertFiles, *, name: str, signature: str) -> None:
    """The SDK-parsed certificate object describes `cert` exactly as openssl sees it."""
    assert str(uuid.UUID(obj.id)) == obj.id  # canonical 36-char UUID
    assert obj.name == name
    assert obj.ca is True
    assert obj.type == "custom"
    assert obj.serial_number == openssl_serial_decimal(cert)
    assert obj.issuer == openssl_issuer_rfc4514(cert)
    assert obj.signature == signature
    assert obj.expires_on == openssl_not_after(cert)
    assert obj.uploaded_on is not None
    assert obj.uploaded_on.tzinfo is not None
    assert abs(datetime.now(UTC) - obj.uploaded_on) < timedelta(minutes=5)
    assert pem_body(obj.certificates) == pem_body(cert.cert_pem)


# --- identity, accounts, zones --------------------------------------------------------------------


def test_sdk_token_accounts_and_zones(gateway: Gateway) -> None:
    client = gateway.sdk()

    verified = client.user.tokens.verify()
    assert verified is not None
    assert verified.status == "active"
    assert verified.id

    accounts = list(client.accounts.list())
    assert [a.id for a in accounts] == [gateway.account_id]
    account = client.accounts.get(account_id=gateway.account_id)
    assert account is not None
    assert account.id == gateway.account_id
    assert account.name == accounts[0].name

    zones = list(client.zones.list())
    assert {z.name: z.id for z in zones} == gateway.zones
    for zone in zones:
        assert zone.account.id == gateway.account_id
        assert zone.status == "active"

    only = list(client.zones.list(name="other.org"))
    assert [(z.name, z.id) for z in only] == [("other.org", gateway.zones["other.org"])]
    assert list(client.zones.list(name="missing.example")) == []

    zone = client.zones.get(zone_id=gateway.zones["example.com"])
    assert zone is not None
    assert zone.id == gateway.zones["example.com"]
    assert zone.name == "example.com"
    assert zone.account.id == gateway.account_id


def test_sdk_zone_pagination_walks_every_page_once(gateway: Gateway) -> None:
    client = gateway.sdk()

    # The SDK's V4PagePaginationArray asks for page+1 until a page comes back empty.
    paged = list(client.zones.list(per_page=1))
    assert sorted(z.name for z in paged) == ["example.com", "other.org"]
    assert len({z.id for z in paged}) == 2

    first = client.zones.list(per_page=1)
    assert len(first.result) == 1
    # iter_pages() also yields the final empty page that told the SDK to stop.
    pages = list(first.iter_pages())
    assert [len(p.result) for p in pages] == [1, 1, 0]
    assert [p.result_info.page for p in pages if p.result_info] == [1, 2, 3]

    with gateway.http() as http:
        past_end = http.get("/zones", params={"page": 99, "per_page": 1})
        assert past_end.status_code == 200
        body = past_end.json()
        assert body["success"] is True
        assert body["result"] == []
        assert body["result_info"]["page"] == 99
        assert body["result_info"]["count"] == 0
        assert body["result_info"]["total_count"] == 2

        accounts_past_end = http.get("/accounts", params={"page": 99})
        assert accounts_past_end.status_code == 200
        assert accounts_past_end.json()["result"] == []


# --- mTLS certificates and hostname associations ------------------------------------------------


def test_sdk_byoca_full_lifecycle(gateway: Gateway, tmp_path: Path) -> None:
    client = gateway.sdk()
    account_id = gateway.account_id
    example, other = gateway.zones["example.com"], gateway.zones["other.org"]

    rsa_root = openssl_root(tmp_path, subject="/C=US/O=Example Inc./CN=SDK RSA Root")
    ec_root = openssl_root(tmp_path, kind="ec", subject="/C=DE/O=Beispiel GmbH/CN=SDK EC Root")

    # Upload.
    rsa = client.mtls_certificates.create(
        account_id=account_id, ca=True, certificates=rsa_root.cert_pem, name="rsa-root"
    )
    assert rsa is not None
    check_reported(rsa, rsa_root, name="rsa-root", signature="SHA256WithRSA")
    assert rsa.issuer == "CN=SDK RSA Root,O=Example Inc.,C=US"
    assert rsa.updated_at is not None

    ec = client.mtls_certificates.create(
        account_id=account_id, ca=True, certificates=ec_root.cert_pem, name="ec-root"
    )
    assert ec is not None
    check_reported(ec, ec_root, name="ec-root", signature="ECDSAWithSHA256")
    assert ec.issuer == "CN=SDK EC Root,O=Beispiel GmbH,C=DE"
    assert ec.id != rsa.id

    # List and get.
    listed = {c.id: c for c in client.mtls_certificates.list(account_id=account_id)}
    assert set(listed) == {rsa.id, ec.id}
    check_reported(listed[rsa.id], rsa_root, name="rsa-root", signature="SHA256WithRSA")
    check_reported(listed[ec.id], ec_root, name="ec-root", signature="ECDSAWithSHA256")
    custom = list(client.mtls_certificates.list(account_id=account_id, type=["custom"]))
    assert {c.id for c in custom} == {rsa.id, ec.id}
    managed_only = client.mtls_certificates.list(account_id=account_id, type=["access_managed"])
    assert list(managed_only) == []

    got = client.mtls_certificates.get(rsa.id, account_id=account_id)
    assert got is not None
    check_reported(got, rsa_root, name="rsa-root", signature="SHA256WithRSA")
    assert got.uploaded_on == rsa.uploaded_on
    assert got.expires_on == rsa.expires_on
    got_ec = client.mtls_certificates.get(ec.id, account_id=account_id)
    assert got_ec is not None
    assert got_ec.serial_number == ec.serial_number

    # A fresh certificate has no associations.
    assert list(client.mtls_certificates.associations.get(rsa.id, account_id=account_id)) == []

    # Associate hostnames with the RSA CA in two zones.
    hosts = client.certificate_authorities.hostname_associations
    updated = hosts.update(
        zone_id=example,
        hostnames=["mtls.example.com", "API.Example.com", "*.devices.example.com"],
        mtls_certificate_id=rsa.id,
    )
    assert updated is not None
    assert updated.hostnames == ["*.devices.example.com", "api.example.com", "mtls.example.com"]
    updated_other = hosts.update(
        zone_id=other, hostnames=["secure.other.org"], mtls_certificate_id=rsa.id
    )
    assert updated_other is not None
    assert updated_other.hostnames == ["secure.other.org"]

    # Read them back: per CA, per zone; the managed CA's set is separate (still empty).
    back = hosts.get(zone_id=example, mtls_certificate_id=rsa.id)
    assert back is not None
    assert back.hostnames == ["*.devices.example.com", "api.example.com", "mtls.example.com"]
    back_other = hosts.get(zone_id=other, mtls_certificate_id=rsa.id)
    assert back_other is not None
    assert back_other.hostnames == ["secure.other.org"]
    ec_hosts = hosts.get(zone_id=example, mtls_certificate_id=ec.id)
    assert ec_hosts is not None
    assert ec_hosts.hostnames == []
    managed = hosts.get(zone_id=example)
    assert managed is not None
    assert managed.hostnames == []

    # The certificate's associations list every hostname of every zone.
    assocs = list(client.mtls_certificates.associations.get(rsa.id, account_id=account_id))
    assert len(assocs) == 4
    assert all(a.service == "hostname_client_auth" for a in assocs)
    assert all(a.status == "active" for a in assocs)
    assert sorted(a.to_dict()["hostname"] for a in assocs) == [
        "*.devices.example.com",
        "api.example.com",
        "mtls.example.com",
        "secure.other.org",
    ]

    # Replace semantics: the new list is the whole set.
    replaced = hosts.update(
        zone_id=example, hostnames=["mtls.example.com"], mtls_certificate_id=rsa.id
    )
    assert replaced is not None
    assert replaced.hostnames == ["mtls.example.com"]
    again = hosts.get(zone_id=example, mtls_certificate_id=rsa.id)
    assert again is not None
    assert again.hostnames == ["mtls.example.com"]

    # Delete is refused while associated, in any zone.
    with pytest.raises(cloudflare.ConflictError) as refused:
        client.mtls_certificates.delete(rsa.id, account_id=account_id)
    assert refused.value.status_code == 409
    error = refused.value.response.json()
    assert error["success"] is False
    assert error["errors"][0]["code"] == CERTIFICATE_IN_USE
    assert "mtls.example.com" in error["errors"][0]["message"]
    assert client.mtls_certificates.get(rsa.id, account_id=account_id) is not None

    cleared = hosts.update(zone_id=example, hostnames=[], mtls_certificate_id=rsa.id)
    assert cleared is not None
    assert cleared.hostnames == []
    with pytest.raises(cloudflare.ConflictError):
        client.mtls_certificates.delete(rsa.id, account_id=account_id)  # other.org still uses it
    assocs = list(client.mtls_certificates.associations.get(rsa.id, account_id=account_id))
    assert [a.to_dict()["hostname"] for a in assocs] == ["secure.other.org"]
    hosts.update(zone_id=other, hostnames=[], mtls_certificate_id=rsa.id)
    assert list(client.mtls_certificates.associations.get(rsa.id, account_id=account_id)) == []

    # Now delete succeeds and returns the deleted certificate.
    deleted = client.mtls_certificates.delete(rsa.id, account_id=account_id)
    assert deleted is not None
    assert deleted.id == rsa.id
    assert deleted.serial_number == rsa.serial_number

    with pytest.raises(cloudflare.NotFoundError) as gone:
        client.mtls_certificates.get(rsa.id, account_id=account_id)
    assert gone.value.status_code == 404
    with pytest.raises(cloudflare.NotFoundError):
        client.mtls_certificates.delete(rsa.id, account_id=account_id)
    with pytest.raises(cloudflare.NotFoundError):
        client.mtls_certificates.associations.get(rsa.id, account_id=account_id)
    with pytest.raises(cloudflare.APIStatusError) as unknown_ca:
        hosts.get(zone_id=example, mtls_certificate_id=rsa.id)
    assert unknown_ca.value.status_code in (400, 404)

    assert [c.id for c in client.mtls_certificates.list(account_id=account_id)] == [ec.id]
    deleted_ec = client.mtls_certificates.delete(ec.id, account_id=account_id)
    assert deleted_ec is not None
    assert deleted_ec.id == ec.id
    assert list(client.mtls_certificates.list(account_id=account_id)) == []


def test_sdk_certificate_id_without_dashes(gateway: Gateway, tmp_path: Path) -> None:
    """Newer schemas show 32-hex ids; both forms address the same certificate."""
    client = gateway.sdk()
    root = openssl_root(tmp_path, cn="Hex Id Root")
    cert = client.mtls_certificates.create(
        account_id=gateway.account_id, ca=True, certificates=root.cert_pem
    )
    assert cert is not None
    hex_id = uuid.UUID(cert.id).hex
    got = client.mtls_certificates.get(hex_id, account_id=gateway.account_id)
    assert got is not None
    assert got.id == cert.id
    hosts = client.certificate_authorities.hostname_associations
    hosts.update(zone_id=gateway.zone_id, hostnames=["hex.example.com"], mtls_certificate_id=hex_id)
    back = hosts.get(zone_id=gateway.zone_id, mtls_certificate_id=cert.id)
    assert back is not None
    assert back.hostnames == ["hex.example.com"]


def test_sdk_managed_ca_associations_round_trip(gateway: Gateway, tmp_path: Path) -> None:
    client = gateway.sdk()
    hosts = client.certificate_authorities.hostname_associations
    example = gateway.zones["example.com"]

    start = hosts.get(zone_id=example)
    assert start is not None
    assert start.hostnames == []

    put = hosts.update(zone_id=example, hostnames=["b.example.com", "a.example.com"])
    assert put is not None
    assert put.hostnames == ["a.example.com", "b.example.com"]
    got = hosts.get(zone_id=example)
    assert got is not None
    assert got.hostnames == ["a.example.com", "b.example.com"]
    other = hosts.get(zone_id=gateway.zones["other.org"])
    assert other is not None
    assert other.hostnames == []

    # The same hostname may also use an uploaded CA; the two sets stay independent.
    root = openssl_root(tmp_path, cn="Managed Side Root")
    byoca = client.mtls_certificates.create(
        account_id=gateway.account_id, ca=True, certificates=root.cert_pem, name="side"
    )
    assert byoca is not None
    hosts.update(zone_id=example, hostnames=["a.example.com"], mtls_certificate_id=byoca.id)
    managed = hosts.get(zone_id=example)
    assert managed is not None
    assert managed.hostnames == ["a.example.com", "b.example.com"]
    uploaded = hosts.get(zone_id=example, mtls_certificate_id=byoca.id)
    assert uploaded is not None
    assert uploaded.hostnames == ["a.example.com"]

    # Removing a hostname from the managed CA (the seed's flow) leaves the BYOCA one alone.
    put = hosts.update(zone_id=example, hostnames=["b.example.com"])
    assert put is not None
    assert put.hostnames == ["b.example.com"]
    managed = hosts.get(zone_id=example)
    assert managed is not None
    assert managed.hostnames == ["b.example.com"]
    uploaded = hosts.get(zone_id=example, mtls_certificate_id=byoca.id)
    assert uploaded is not None
    assert uploaded.hostnames == ["a.example.com"]

    # Managed CA associations never block deleting an uploaded CA.
    hosts.update(zone_id=example, hostnames=[], mtls_certificate_id=byoca.id)
    assert client.mtls_certificates.delete(byoca.id, account_id=gateway.account_id) is not None
    managed = hosts.get(zone_id=example)
    assert managed is not None
    assert managed.hostnames == ["b.example.com"]

    cleared = hosts.update(zone_id=example, hostnames=[])
    assert cleared is not None
    assert cleared.hostnames == []
    final = hosts.get(zone_id=example)
    assert final is not None
    assert final.hostnames == []


def test_sdk_duplicate_upload_warns(gateway: Gateway, tmp_path: Path) -> None:
    client = gateway.sdk()
    root = openssl_root(tmp_path, cn="Twice Uploaded Root")

    first_raw = client.mtls_certificates.with_raw_response.create(
        account_id=gateway.account_id, ca=True, certificates=root.cert_pem, name="first"
    )
    assert first_raw.status_code == 200
    first_body = first_raw.json()
    assert first_body["success"] is True
    assert first_body["messages"] == []
    first = first_raw.parse()
    assert first is not None
    assert first.id == first_body["result"]["id"]
    # Raw formats: whole-second validity, microsecond upload time, both with Z.
    assert first_body["result"]["expires_on"] == openssl_not_after(root).strftime(
        "%Y-%m-%dT%H:%M:%SZ"
    )
    datetime.strptime(first_body["result"]["uploaded_on"], "%Y-%m-%dT%H:%M:%S.%fZ")
    datetime.strptime(first_body["result"]["updated_at"], "%Y-%m-%dT%H:%M:%S.%fZ")

    second_raw = client.mtls_certificates.with_raw_response.create(
        account_id=gateway.account_id, ca=True, certificates=root.cert_pem, name="second"
    )
    assert second_raw.status_code == 200
    body = second_raw.json()
    assert body["success"] is True
    second = second_raw.parse()
    assert second is not None
    assert second.id != first.id
    assert second.serial_number == first.serial_number
    duplicates = [m for m in body["messages"] if m["code"] == WARN_DUPLICATE]
    assert len(duplicates) == 1, body["messages"]
    assert first.id in duplicates[0]["message"]

    listed = [c.id for c in client.mtls_certificates.list(account_id=gateway.account_id)]
    assert listed == [first.id, second.id]
