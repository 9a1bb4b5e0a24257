"""Concurrency end to end: the CA quota and hostname associations hold when requests race.

Real `mtlsgate serve` processes on SQLite and PostgreSQL; requests are released together by a
barrier, each from its own thread and its own httpx client (its own connection). The "two
serve processes" variants alternate requests between two processes sharing one store, so a
lock that only lives inside one process would not be enough.
"""

from __future__ import annotations

import sqlite3
import threading
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import httpx
import psycopg
import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.hazmat.primitives.serialization import Encoding
from cryptography.x509.oid import NameOID

from tests.certs import openssl_root
from tests.harness import Gateway, free_port

QUOTA_MESSAGE = "Hit maximum CA cert allocation."
QUOTA_CODE = 1489
DEFAULT_QUOTA = 5


# --- certificates ----------------------------------------------------------------------------


def make_ca(cn: str) -> str:
    """A self-signed EC P-256 CA (CA:TRUE, keyCertSign), as PEM; fast enough to make in bulk."""
    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, cn)])
    now = datetime.now(UTC)
    cert = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - timedelta(days=1))
        .not_valid_after(now + timedelta(days=3650))
        .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
        .add_extension(
            x509.KeyUsage(
                digital_signature=False,
                content_commitment=False,
                key_encipherment=False,
                data_encipherment=False,
                key_agreement=False,
                key_cert_sign=True,
                crl_sign=True,
                encipher_only=False,
                decipher_only=False,
            ),
            critical=True,
        )
        .add_extension(x509.SubjectKeyIdentifier.from_public_key(key.public_key()), critical=False)
        .sign(key, hashes.SHA256())
    )
    return cert.public_bytes(Encoding.PEM).decode("ascii")


def fingerprint(pem: str) -> str:
    """SHA-256 of the DER of the first certificate in ``pem``."""
    cert = x509.load_pem_x509_certificates(pem.encode("ascii"))[0]
    return cert.fingerprint(hashes.SHA256()).hex()


@pytest.fixture
def ca_pems(tmp_path: Path) -> list[str]:
    """24 distinct CAs: 2 from the openssl CLI (one RSA, one EC), 22 from cryptography."""
    pems = [
        openssl_root(tmp_path / "openssl", kind="rsa", cn="Concurrency RSA Root").cert_pem,
        openssl_root(tmp_path / "openssl", kind="ec", cn="Concurrency EC Root").cert_pem,
    ]
    pems += [make_ca(f"Concurrency CA {i}") for i in range(22)]
    assert len({fingerprint(p) for p in pems}) == 24
    return pems


# --- HTTP and store helpers ------------------------------------------------------------------


def base_url(port: int) -> str:
    return f"http://127.0.0.1:{port}/client/v4"


@dataclass(frozen=True)
class Call:
    port: int
    method: str
    path: str
    body: dict[str, Any] | None = None


def fire(token: str, calls: Sequence[Call]) -> list[httpx.Response]:
    """Send all calls at the same moment: one thread and one connection each, behind a barrier."""
    barrier = threading.Barrier(len(calls))
    results: list[httpx.Response | BaseException | None] = [None] * len(calls)

    def run(i: int, call: Call) -> None:
        try:
            with httpx.Client(
                base_url=base_url(call.port),
                headers={"Authorization": f"Bearer {token}"},
                timeout=60,
            ) as client:
                barrier.wait(timeout=30)
                results[i] = client.request(call.method, call.path, json=call.body)
        except BaseException as exc:
            results[i] = exc

    threads = [threading.Thread(target=run, args=(i, c)) for i, c in enumerate(calls)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=120)
    out: list[httpx.Response] = []
    for r in results:
        if not isinstance(r, httpx.Response):
            raise AssertionError(f"a concurrent request did not complete: {r!r}")
        out.append(r)
    return out


def db_rows(gateway: Gateway, query: str) -> list[tuple[Any, ...]]:
    """Run a read-only query straight on the store (SQLite file or PostgreSQL database)."""
    if gateway.database_url is None:
        con = sqlite3.connect(gateway.data_dir / "mtlsgate.db", timeout=30)
        try:
            return list(con.execute(query).fetchall())
        finally:
            con.close()
    url = gateway.database_url.replace("postgresql+psycopg://", "postgresql://")
    with psycopg.connect(url) as con:
        return list(con.execute(query).fetchall())  # type: ignore[arg-type]


ORPHAN_ASSOCIATIONS = (
    "SELECT ca_id, hostname FROM hostname_associations WHERE ca_kind = 'uploaded' "
    "AND ca_id NOT IN (SELECT id FROM mtls_certificates)"
)


def serve_ports(gateway: Gateway, processes: int) -> list[int]:
    """Ports of `processes` serve processes on the gateway's store (the fixture started one)."""
    ports = [gateway.port]
    for _ in range(processes - 1):
        port = free_port()
        gateway.start(port)
        ports.append(port)
    return ports


def upload(client: httpx.Client, account_id: str, pem: str, name: str) -> str:
    r = client.post(
        f"/accounts/{account_id}/mtls_certificates",
        json={"ca": True, "certificates": pem, "name": name},
    )
    assert r.status_code == 200, r.text
    return str(r.json()["result"]["id"])


def list_cas(client: httpx.Client, account_id: str) -> list[dict[str, Any]]:
    r = client.get(f"/accounts/{account_id}/mtls_certificates")
    assert r.status_code == 200, r.text
    return [c for c in r.json()["result"] if c["ca"]]


def associated(client: httpx.Client, zone_id: str, cert_id: str | None) -> list[str] | None:
    """Hostnames of the zone associated with the CA; None when the API refuses the CA id."""
    params = {"mtls_certificate_id": cert_id} if cert_id else {}
    r = client.get(f"/zones/{zone_id}/certificate_authorities/hostname_associations", params=params)
    if r.status_code != 200:
        return None
    return list(r.json()["result"]["hostnames"])


# --- the CA quota ----------------------------------------------------------------------------


@pytest.mark.parametrize("processes", [1, 2], ids=["one-serve", "two-serves"])
def test_ca_quota_holds_under_concurrent_uploads(
    gateway: Gateway, ca_pems: list[str], processes: int
) -> None:
    ports = serve_ports(gateway, processes)
    account = gateway.account_id
    with gateway.http() as c:
        first_four = [upload(c, account, pem, f"pre-{i}") for i, pem in enumerate(ca_pems[:4])]
        assert len(list_cas(c, account)) == 4

    racing = ca_pems[4:]
    assert len(racing) == 20
    calls = [
        Call(
            ports[i % len(ports)],
            "POST",
            f"/accounts/{account}/mtls_certificates",
            {"ca": True, "certificates": pem, "name": f"race-{i}"},
        )
        for i, pem in enumerate(racing)
    ]
    responses = fire(gateway.token, calls)

    ok = [r for r in responses if r.status_code == 200]
    refused = [r for r in responses if r.status_code != 200]
    summary = sorted((r.status_code, r.text[:200]) for r in responses)
    assert len(ok) == 1, f"expected exactly one upload to win the last slot: {summary}"
    assert len(refused) == 19
    for r in refused:
        assert r.status_code == 400, r.text
        body = r.json()
        assert body["success"] is False
        assert body["errors"] == [{"code": QUOTA_CODE, "message": QUOTA_MESSAGE}], r.text

    winner = ok[0].json()["result"]["id"]
    with gateway.http() as c:
        listed = list_cas(c, account)
    assert sorted(x["id"] for x in listed) == sorted([*first_four, winner])
    assert len(listed) == DEFAULT_QUOTA
    (count,) = db_rows(gateway, "SELECT count(*) FROM mtls_certificates WHERE ca")[0]
    assert count == DEFAULT_QUOTA


# --- hostname associations -------------------------------------------------------------------


def test_concurrent_association_replacements_end_with_one_whole_set(
    gateway: Gateway, ca_pems: list[str]
) -> None:
    """Simultaneous PUTs of different sets for one CA: the result is exactly one of the sets.

    Every set shares one hostname, so racing inserts of the same (zone, hostname, CA) row
    would also surface (as a 500 from the unique constraint) if the PUTs were not ordered.
    """
    ports = serve_ports(gateway, 2)
    zone = gateway.zones["example.com"]
    with gateway.http() as c:
        ca_id = upload(c, gateway.account_id, ca_pems[0], "replace-target")

    path = f"/zones/{zone}/certificate_authorities/hostname_associations"
    for round_no in range(3):
        sets = [
            sorted(
                {"shared.example.com"}
                | {f"r{round_no}-s{i}-h{j}.example.com" for j in range(3 + i % 3)}
            )
            for i in range(10)
        ]
        calls = [
            Call(ports[i % 2], "PUT", path, {"hostnames": s, "mtls_certificate_id": ca_id})
            for i, s in enumerate(sets)
        ]
        responses = fire(gateway.token, calls)
        for s, r in zip(sets, responses, strict=True):
            assert r.status_code == 200, r.text
            assert r.json()["result"]["hostnames"] == s

        with gateway.http() as c:
            final = associated(c, zone, ca_id)
            assert final in sets, f"round {round_no}: {final} is not one whole set of {sets}"
            r = c.get(f"/accounts/{gateway.account_id}/mtls_certificates/{ca_id}/associations")
            assert r.status_code == 200, r.text
            assert sorted(a["hostname"] for a in r.json()["result"]) == final
        rows = db_rows(
            gateway,
            f"SELECT hostname FROM hostname_associations WHERE ca_id = '{ca_id}'",
        )
        assert sorted(h for (h,) in rows) == final  # no duplicate or stray rows either


def test_concurrent_delete_and_associate_leave_no_dangling_association(
    gateway: Gateway, ca_pems: list[str]
) -> None:
    """DELETE of a CA races PUTs associating hostnames with it, over two serve processes.

    Either the delete wins (every PUT is refused as naming an unknown CA, and nothing refers
    to the CA afterwards) or a PUT wins (the delete is refused with 1491 and the CA keeps
    exactly one of the sets).
    """
    ports = serve_ports(gateway, 2)
    account = gateway.account_id
    zone = gateway.zones["example.com"]
    assoc_path = f"/zones/{zone}/certificate_authorities/hostname_associations"
    outcomes: list[str] = []

    for round_no in range(6):
        with gateway.http() as c:
            ca_id = upload(c, account, ca_pems[round_no], f"doomed-{round_no}")
        sets = [[f"r{round_no}-p{k}-h{j}.example.com" for j in range(2)] for k in range(3)]
        ours = {h for s in sets for h in s}
        puts = [
            Call(
                ports[(k + 1) % 2],
                "PUT",
                assoc_path,
                {"hostnames": s, "mtls_certificate_id": ca_id},
            )
            for k, s in enumerate(sets)
        ]
        delete = Call(
            ports[round_no % 2], "DELETE", f"/accounts/{account}/mtls_certificates/{ca_id}"
        )
        # Put the DELETE in different positions so each side gets to start first sometimes.
        calls = list(puts)
        calls.insert(round_no % (len(puts) + 1), delete)
        responses = fire(gateway.token, calls)
        del_resp = responses[calls.index(delete)]
        put_resps = [responses[calls.index(p)] for p in puts]

        with gateway.http() as c:
            get = c.get(f"/accounts/{account}/mtls_certificates/{ca_id}")
            all_cas = list_cas(c, account)
            if del_resp.status_code == 200:
                outcomes.append("deleted")
                for r in put_resps:
                    assert r.status_code == 400, r.text
                    assert r.json()["errors"][0]["code"] == 1005, r.text
                assert get.status_code == 404, get.text
                assert ca_id not in {x["id"] for x in all_cas}
                assert associated(c, zone, ca_id) in (None, [])
            else:
                outcomes.append("kept")
                assert del_resp.status_code == 409, del_resp.text
                assert del_resp.json()["errors"][0]["code"] == 1491, del_resp.text
                for r in put_resps:
                    assert r.status_code == 200, r.text
                assert get.status_code == 200, get.text
                assert associated(c, zone, ca_id) in [sorted(s) for s in sets]

            # Nothing of a deleted CA anywhere in the zone; nothing of ours on another CA.
            for other in [None, *(x["id"] for x in all_cas if x["id"] != ca_id)]:
                names = associated(c, zone, other)
                assert names is not None
                assert not ours & set(names), f"round {round_no}: {other} lists {names}"
        assert db_rows(gateway, ORPHAN_ASSOCIATIONS) == []

        # Clean up so the quota never gets in the way of the next round.
        if get.status_code == 200:
            with gateway.http() as c:
                r = c.put(assoc_path, json={"hostnames": [], "mtls_certificate_id": ca_id})
                assert r.status_code == 200, r.text
                r = c.delete(f"/accounts/{account}/mtls_certificates/{ca_id}")
                assert r.status_code == 200, r.text
    print(f"delete-vs-associate outcomes: {outcomes}")
