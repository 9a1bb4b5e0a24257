"""Token verification, accounts and zones: what a token can see of the tenancy."""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, Depends, Query, Request
from fastapi.responses import JSONResponse

from mtlsgate.api.auth import principal_from_request
from mtlsgate.api.common import iso, path_hex_id, store_of
from mtlsgate.api.envelope import ok, ok_page
from mtlsgate.services import accounts as svc
from mtlsgate.services.common import paginate
from mtlsgate.services.permissions import Principal
from mtlsgate.store.models import Account, Zone

router = APIRouter()
Auth = Annotated[Principal, Depends(principal_from_request)]


def account_json(account: Account) -> dict[str, Any]:
    return {
        "id": account.id,
        "name": account.name,
        "type": "standard",
        "settings": {
            "enforce_twofactor": False,
            "use_account_custom_ns_by_default": False,
        },
        "created_on": iso(account.created_on),
        "plan": account.plan,
        "ca_quota": account.ca_quota,
    }


def zone_json(zone: Zone, account: Account) -> dict[str, Any]:
    return {
        "id": zone.id,
        "name": zone.name,
        "status": "active",
        "paused": False,
        "type": "full",
        "development_mode": 0,
        "name_servers": [],
        "original_name_servers": None,
        "account": {"id": account.id, "name": account.name},
        "owner": {"id": None, "type": "organization", "name": account.name},
        "plan": {"id": account.plan, "name": account.plan.capitalize() + " Plan"},
        "permissions": [],
        "created_on": iso(zone.created_on),
        "modified_on": iso(zone.created_on),
        "activated_on": iso(zone.created_on),
    }


@router.get("/user/tokens/verify", summary="Verify the calling token")
def verify_token(principal: Auth) -> JSONResponse:
    return ok(
        {"id": principal.token_id, "status": "active"},
        messages=[
            {
                "code": 10000,
                "message": "This API Token is valid and active",
                "type": None,
            }
        ],
    )


@router.get("/accounts", summary="List accounts")
def list_accounts(
    request: Request,
    principal: Auth,
    page: Annotated[int, Query()] = 1,
    per_page: Annotated[int, Query()] = 20,
) -> JSONResponse:
    with store_of(request).transaction() as session:
        items = svc.list_visible_accounts(session, principal)
        result = paginate(items, page, per_page, max_per_page=50)
        return ok_page(result, [account_json(a) for a in result.items])


@router.get("/accounts/{account_id}", summary="Account details")
def get_account(request: Request, principal: Auth, account_id: str) -> JSONResponse:
    path_hex_id(request, account_id)
    with store_of(request).transaction() as session:
        return ok(account_json(svc.visible_account(session, principal, account_id)))


@router.get("/zones", summary="List zones")
def list_zones(
    request: Request,
    principal: Auth,
    name: Annotated[str | None, Query()] = None,
    account_id: Annotated[str | None, Query(alias="account.id")] = None,
    page: Annotated[int, Query()] = 1,
    per_page: Annotated[int, Query()] = 20,
) -> JSONResponse:
    with store_of(request).transaction() as session:
        zones = svc.list_visible_zones(session, principal, name=name, account_id=account_id)
        result = paginate(zones, page, per_page, max_per_page=50)
        account = session.get(Account, principal.account_id)
        assert account is not None  # a token's account outlives the token
        return ok_page(result, [zone_json(z, account) for z in result.items])


@router.get("/zones/{zone_id}", summary="Zone details")
def get_zone(request: Request, principal: Auth, zone_id: str) -> JSONResponse:
    path_hex_id(request, zone_id)
    with store_of(request).transaction() as session:
        zone = svc.visible_zone(session, principal, zone_id)
        account = session.get(Account, zone.account_id)
        assert account is not None
        return ok(zone_json(zone, account))
