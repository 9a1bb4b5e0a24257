from tests.harness import Gateway


def test_health_and_verify(gateway: Gateway) -> None:
    with gateway.http() as c:
        r = c.get("/user/tokens/verify")
    assert r.status_code == 200
    assert r.json()["result"]["status"] == "active"
    zones = list(gateway.sdk().zones.list())
    assert sorted(z.name for z in zones) == ["example.com", "other.org"]
