"""The served OpenAPI document is valid OpenAPI and lists the v4 endpoints."""

from openapi_spec_validator import validate

from tests.harness import Gateway


def test_openapi_is_valid_and_complete(gateway: Gateway) -> None:
    import httpx

    r = httpx.get(f"{gateway.base_url}/openapi.json")
    assert r.status_code == 200
    spec = r.json()
    validate(spec)
    paths = spec["paths"]
    for path, method in [
        ("/client/v4/user/tokens/verify", "get"),
        ("/client/v4/accounts", "get"),
        ("/client/v4/accounts/{account_id}", "get"),
        ("/client/v4/zones", "get"),
        ("/client/v4/zones/{zone_id}", "get"),
        ("/client/v4/accounts/{account_id}/mtls_certificates", "post"),
        ("/client/v4/accounts/{account_id}/mtls_certificates", "get"),
        ("/client/v4/accounts/{account_id}/mtls_certificates/{mtls_certificate_id}", "get"),
        ("/client/v4/accounts/{account_id}/mtls_certificates/{mtls_certificate_id}", "delete"),
        (
            "/client/v4/accounts/{account_id}/mtls_certificates/{mtls_certificate_id}/associations",
            "get",
        ),
        ("/client/v4/zones/{zone_id}/certificate_authorities/hostname_associations", "get"),
        ("/client/v4/zones/{zone_id}/certificate_authorities/hostname_associations", "put"),
    ]:
        assert method in paths[path], (method, path)
    upload = paths["/client/v4/accounts/{account_id}/mtls_certificates"]["post"]
    assert "requestBody" in upload
