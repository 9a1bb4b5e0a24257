"""Crash consistency: SIGKILL `mtlsgate serve` in the middle of a stream of writes, restart it,
and find only whole records, no dangling associations, and a quota count that matches them."""

from __future__ import annotations

import itertools
import random
import signal
import sqlite3
import threading
import time
from dataclasses import dataclass, field
from datetime import UTC

import httpx
from cryptography import x509
from cryptography.hazmat.primitives import hashes

from tests.e2e.test_concurrency import (
    ORPHAN_ASSOCIATIONS,
    QUOTA_CODE,
    QUOTA_MESSAGE,
    base_url,
    db_rows,
    fingerprint,
    make_ca,
)
from tests.harness import Gateway

KILLS = 3
STREAMS = 2  # client threads, so a kill usually finds more than one request in flight
HIGH_QUOTA = 1000


@dataclass
class Sent:
    """What the clients sent and what they heard back, over all rounds."""

    lock: threading.Lock = field(default_factory=threading.Lock)
    # fingerprint -> (name, pem) of every upload whose request may have reached the server
    attempted: dict[str, tuple[str, str]] = field(default_factory=dict)
    # id -> fingerprint of every upload answered with 200
    acked: dict[str, str] = field(default_factory=dict)
    # hostname -> CA id, for association PUTs that may have reached the server / answered 200
    assoc_attempted: dict[str, str] = field(default_factory=dict)
    assoc_acked: dict[str, str] = field(default_factory=dict)
    unexpected: list[str] = field(default_factory=list)
    cut_in_flight: int = 0  # requests the kill cut off after they were sent


def stream(gw: Gateway, port: int, tag: str, sent: Sent, stop: threading.Event) -> None:
    """Upload a CA, associate a new hostname with it, repeat, until the server goes away."""
    zone = gw.zones["example.com"]
    numbers = itertools.count()
    with httpx.Client(
        base_url=base_url(port), headers={"Authorization": f"Bearer {gw.token}"}, timeout=10
    ) as client:
        while not stop.is_set():
            n = next(numbers)
            name = f"{tag}-{n}"
            pem = make_ca(f"Crash CA {name}")
            fp = fingerprint(pem)
            try:
                with sent.lock:
                    sent.attempted[fp] = (name, pem)
                r = client.post(
                    f"/accounts/{gw.account_id}/mtls_certificates",
                    json={"ca": True, "certificates": pem, "name": name},
                )
            except httpx.ConnectError:
                with sent.lock:  # never connected: the request cannot have reached the server
                    del sent.attempted[fp]
                return
            except httpx.TransportError:
                with sent.lock:
                    sent.cut_in_flight += 1
                return
            if r.status_code != 200:
                sent.unexpected.append(f"upload {name}: {r.status_code} {r.text[:300]}")
                return
            cert_id = r.json()["result"]["id"]
            with sent.lock:
                sent.acked[cert_id] = fp

            hostname = f"{name}.example.com"
            try:
                with sent.lock:
                    sent.assoc_attempted[hostname] = cert_id
                r = client.put(
                    f"/zones/{zone}/certificate_authorities/hostname_associations",
                    json={"hostnames": [hostname], "mtls_certificate_id": cert_id},
                )
            except httpx.ConnectError:
                with sent.lock:
                    del sent.assoc_attempted[hostname]
                return
            except httpx.TransportError:
                with sent.lock:
                    sent.cut_in_flight += 1
                return
            if r.status_code != 200:
                sent.unexpected.append(f"associate {hostname}: {r.status_code} {r.text[:300]}")
                return
            with sent.lock:
                sent.assoc_acked[hostname] = cert_id


def check_store(gw: Gateway, sent: Sent) -> int:
    """Everything the restarted server shows is whole and consistent with what was sent;
    returns the number of CAs."""
    zone = gw.zones["example.com"]
    with gw.http() as c:
        r = c.get(f"/accounts/{gw.account_id}/mtls_certificates")
        assert r.status_code == 200, r.text
        listed = r.json()["result"]
        ids = [x["id"] for x in listed]
        assert len(ids) == len(set(ids))
        assert all(x["ca"] for x in listed)

        fingerprints_in_store: list[str] = []
        for cert_id in ids:
            r = c.get(f"/accounts/{gw.account_id}/mtls_certificates/{cert_id}")
            assert r.status_code == 200, r.text
            got = r.json()["result"]
            parsed = x509.load_pem_x509_certificates(got["certificates"].encode("ascii"))
            assert len(parsed) == 1
            cert = parsed[0]
            fp = cert.fingerprint(hashes.SHA256()).hex()
            fingerprints_in_store.append(fp)
            if cert_id in sent.acked:
                assert fp == sent.acked[cert_id], f"{cert_id} holds another certificate"
            else:
                assert fp in sent.attempted, f"{cert_id} holds a certificate nobody sent"
            name, pem = sent.attempted[fp]
            assert got["name"] == name
            assert fingerprint(pem) == fp
            assert got["serial_number"] == str(cert.serial_number)
            assert got["issuer"] == cert.issuer.rfc4514_string()
            assert got["signature"] == "ECDSAWithSHA256"
            assert got["expires_on"] == cert.not_valid_after_utc.astimezone(UTC).strftime(
                "%Y-%m-%dT%H:%M:%SZ"
            )
            assert got["ca"] is True

        # No upload stored twice; every acknowledged upload survived the crash.
        assert len(fingerprints_in_store) == len(set(fingerprints_in_store))
        missing = set(sent.acked) - set(ids)
        assert not missing, f"acknowledged uploads lost in the crash: {missing}"
        assert len(sent.acked) <= len(ids) <= len(sent.attempted)

        # Associations: each points to a listed CA; acknowledged ones survived.
        per_ca: dict[str, list[str]] = {}
        for cert_id in ids:
            r = c.get(
                f"/zones/{zone}/certificate_authorities/hostname_associations",
                params={"mtls_certificate_id": cert_id},
            )
            assert r.status_code == 200, r.text
            per_ca[cert_id] = r.json()["result"]["hostnames"]
        for cert_id, hostnames in per_ca.items():
            for hostname in hostnames:
                assert sent.assoc_attempted.get(hostname) == cert_id, (hostname, cert_id)
        for hostname, cert_id in sent.assoc_acked.items():
            assert hostname in per_ca.get(cert_id, []), f"acknowledged {hostname} was lost"

    assert db_rows(gw, ORPHAN_ASSOCIATIONS) == []
    (count,) = db_rows(gw, "SELECT count(*) FROM mtls_certificates WHERE ca")[0]
    assert count == len(ids)
    (assoc_count,) = db_rows(gw, "SELECT count(*) FROM hostname_associations")[0]
    assert assoc_count == sum(len(h) for h in per_ca.values())
    if gw.database_url is None:
        con = sqlite3.connect(gw.data_dir / "mtlsgate.db", timeout=30)
        try:
            assert con.execute("PRAGMA integrity_check").fetchall() == [("ok",)]
            assert con.execute("PRAGMA foreign_key_check").fetchall() == []
        finally:
            con.close()
    return len(ids)


def test_sigkill_during_writes_leaves_whole_records(gateway: Gateway) -> None:
    gateway.cli(
        "account", "set-ca-quota", "--account", gateway.account_id, "--quota", str(HIGH_QUOTA)
    )
    rng = random.Random()
    seed = rng.randrange(2**32)
    rng.seed(seed)
    print(f"crash test seed {seed}")
    sent = Sent()

    for kill_no in range(KILLS):
        assert gateway.proc is not None
        proc, port = gateway.proc, gateway.port
        stop = threading.Event()
        threads = [
            threading.Thread(target=stream, args=(gateway, port, f"k{kill_no}t{t}", sent, stop))
            for t in range(STREAMS)
        ]
        for t in threads:
            t.start()
        time.sleep(rng.uniform(0.3, 1.5))
        proc.send_signal(signal.SIGKILL)
        proc.wait(timeout=15)
        stop.set()
        for t in threads:
            t.join(timeout=30)
            assert not t.is_alive()
        assert not sent.unexpected, sent.unexpected
        print(
            f"kill {kill_no}: {len(sent.acked)} acked / {len(sent.attempted)} attempted uploads, "
            f"{len(sent.assoc_acked)} acked associations, {sent.cut_in_flight} cut in flight"
        )

        gateway.start()
        count = check_store(gateway, sent)

    # The server still works after the crashes, and the quota counts exactly what is stored.
    assert count >= 1
    gateway.cli(
        "account", "set-ca-quota", "--account", gateway.account_id, "--quota", str(count + 1)
    )
    with gateway.http() as c:
        path = f"/accounts/{gateway.account_id}/mtls_certificates"
        r = c.post(path, json={"ca": True, "certificates": make_ca("After crash 1")})
        assert r.status_code == 200, r.text
        r = c.post(path, json={"ca": True, "certificates": make_ca("After crash 2")})
        assert r.status_code == 400, r.text
        assert r.json()["errors"] == [{"code": QUOTA_CODE, "message": QUOTA_MESSAGE}]
        r = c.get(path)
        assert r.status_code == 200
        assert len(r.json()["result"]) == count + 1
