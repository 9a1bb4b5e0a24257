"""/zones/{zone_id}/rulesets: phase entry points, rulesets, their rules and versions.

Bodies are type-checked here (unknown fields refused, with the pointer naming them); what a rule
means (its expression, action and parameters) is checked by services/rulesets.py.
`?dry_run=true` on a mutation validates it in full and answers `result: null` without keeping it.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Annotated, Any, TypeVar

from fastapi import APIRouter, Depends, Query, Request, Response
from fastapi.responses import JSONResponse
from pydantic import BaseModel, ConfigDict, StrictBool, StrictInt, StrictStr
from sqlalchemy.orm import Session

from mtlsgate.api.auth import principal_from_request
from mtlsgate.api.common import path_hex_id, store_of
from mtlsgate.api.envelope import ok, ok_list
from mtlsgate.services import rulesets as svc
from mtlsgate.services.common import utcnow
from mtlsgate.services.permissions import Principal

router = APIRouter(prefix="/zones/{zone_id}/rulesets")
Auth = Annotated[Principal, Depends(principal_from_request)]
DryRun = Annotated[bool, Query()]
T = TypeVar("T")


class LoggingBody(BaseModel):
    model_config = ConfigDict(extra="forbid")

    enabled: StrictBool


class PositionBody(BaseModel):
    model_config = ConfigDict(extra="forbid")

    before: StrictStr | None = None
    after: StrictStr | None = None
    index: StrictInt | None = None


class RuleBody(BaseModel):
    """A rule inside a ruleset body (PUT/POST of a whole ruleset)."""

    model_config = ConfigDict(extra="forbid")

    id: StrictStr | None = None
    action: StrictStr
    action_parameters: dict[str, Any] | None = None
    expression: StrictStr
    description: StrictStr | None = None
    enabled: StrictBool | None = None
    ref: StrictStr | None = None
    logging: LoggingBody | None = None
    # Read-only fields of a rule as GET shows it: accepted and ignored, so GET -> edit -> PUT works.
    version: StrictStr | None = None
    last_updated: StrictStr | None = None


class NewRuleBody(RuleBody):
    """POST .../rules: one rule and where to put it."""

    position: PositionBody | None = None


class RulePatchBody(BaseModel):
    """PATCH .../rules/{rule_id}: the fields to change and/or a new position."""

    model_config = ConfigDict(extra="forbid")

    id: StrictStr | None = None
    action: StrictStr | None = None
    action_parameters: dict[str, Any] | None = None
    expression: StrictStr | None = None
    description: StrictStr | None = None
    enabled: StrictBool | None = None
    ref: StrictStr | None = None
    logging: LoggingBody | None = None
    position: PositionBody | None = None
    version: StrictStr | None = None
    last_updated: StrictStr | None = None


class RulesetCreateBody(BaseModel):
    model_config = ConfigDict(extra="forbid")

    name: StrictStr
    kind: StrictStr
    phase: StrictStr
    description: StrictStr | None = None
    rules: list[RuleBody] = []


class RulesetReplaceBody(BaseModel):
    """PUT of a ruleset or an entry point: `rules` is required (`[]` removes every rule)."""

    model_config = ConfigDict(extra="forbid")

    rules: list[RuleBody]
    name: StrictStr | None = None
    kind: StrictStr | None = None
    phase: StrictStr | None = None
    description: StrictStr | None = None
    # Read-only fields of a ruleset as GET shows it: accepted and ignored.
    id: StrictStr | None = None
    version: StrictStr | None = None
    last_updated: StrictStr | None = None


class _DryRun(Exception):
    """Raised inside the transaction to roll a validated dry run back."""


def _write(request: Request, dry_run: bool, work: Callable[[Session], T]) -> T | None:
    try:
        with store_of(request).transaction() as session:
            result = work(session)
            if dry_run:
                raise _DryRun
            return result
    except _DryRun:
        return None


def _ruleset_body(body: RulesetCreateBody | RulesetReplaceBody) -> dict[str, Any]:
    out = body.model_dump(exclude_unset=True)
    out["rules"] = [r.model_dump(exclude_unset=True) for r in body.rules]
    return out


def _rule_fields(body: NewRuleBody | RulePatchBody) -> tuple[dict[str, Any], dict[str, Any] | None]:
    raw = body.model_dump(exclude_unset=True)
    raw.pop("position", None)
    position = body.position.model_dump(exclude_unset=True) if body.position else None
    return raw, position


# --- phase entry points --------------------------------------------------------------------------
@router.get("/phases/{ruleset_phase}/entrypoint", summary="Get a zone entry point ruleset")
def get_entry_point(
    request: Request, principal: Auth, zone_id: str, ruleset_phase: str
) -> JSONResponse:
    path_hex_id(request, zone_id)
    with store_of(request).transaction() as session:
        return ok(svc.get_entry_point(session, principal, zone_id, ruleset_phase))


@router.put("/phases/{ruleset_phase}/entrypoint", summary="Update a zone entry point ruleset")
def put_entry_point(
    request: Request,
    principal: Auth,
    zone_id: str,
    ruleset_phase: str,
    body: RulesetReplaceBody,
    dry_run: DryRun = False,
) -> JSONResponse:
    path_hex_id(request, zone_id)
    return ok(
        _write(
            request,
            dry_run,
            lambda s: svc.put_entry_point(
                s, principal, zone_id, ruleset_phase, _ruleset_body(body), now=utcnow()
            ),
        )
    )


@router.get("/phases/{ruleset_phase}/entrypoint/versions", summary="List zone entry point versions")
def list_entry_point_versions(
    request: Request, principal: Auth, zone_id: str, ruleset_phase: str
) -> JSONResponse:
    path_hex_id(request, zone_id)
    with store_of(request).transaction() as session:
        return ok_list(svc.list_entry_point_versions(session, principal, zone_id, ruleset_phase))


@router.get(
    "/phases/{ruleset_phase}/entrypoint/versions/{ruleset_version}",
    summary="Get a zone entry point version",
)
def get_entry_point_version(
    request: Request, principal: Auth, zone_id: str, ruleset_phase: str, ruleset_version: str
) -> JSONResponse:
    path_hex_id(request, zone_id)
    with store_of(request).transaction() as session:
        return ok(
            svc.get_entry_point_version(session, principal, zone_id, ruleset_phase, ruleset_version)
        )


# --- rulesets ------------------------------------------------------------------------------------
@router.get("", summary="List zone rulesets")
def list_rulesets(
    request: Request,
    principal: Auth,
    zone_id: str,
    cursor: Annotated[str | None, Query()] = None,
    per_page: Annotated[int | None, Query()] = None,
) -> JSONResponse:
    path_hex_id(request, zone_id)
    with store_of(request).transaction() as session:
        items, next_cursor = svc.list_rulesets(
            session, principal, zone_id, cursor=cursor, per_page=per_page
        )
    info: dict[str, Any] = {
        "count": len(items),
        "per_page": per_page or svc.DEFAULT_PER_PAGE,
    }
    if next_cursor is not None:
        info["cursor"] = next_cursor
    return JSONResponse(
        {"success": True, "errors": [], "messages": [], "result": items, "result_info": info}
    )


@router.post("", summary="Create a zone ruleset")
def create_ruleset(
    request: Request,
    principal: Auth,
    zone_id: str,
    body: RulesetCreateBody,
    dry_run: DryRun = False,
) -> JSONResponse:
    path_hex_id(request, zone_id)
    return ok(
        _write(
            request,
            dry_run,
            lambda s: svc.create_ruleset(s, principal, zone_id, _ruleset_body(body), now=utcnow()),
        )
    )


@router.get("/{ruleset_id}", summary="Get a zone ruleset")
def get_ruleset(request: Request, principal: Auth, zone_id: str, ruleset_id: str) -> JSONResponse:
    path_hex_id(request, zone_id)
    path_hex_id(request, ruleset_id)
    with store_of(request).transaction() as session:
        return ok(svc.get_ruleset(session, principal, zone_id, ruleset_id))


@router.put("/{ruleset_id}", summary="Update a zone ruleset")
def update_ruleset(
    request: Request,
    principal: Auth,
    zone_id: str,
    ruleset_id: str,
    body: RulesetReplaceBody,
    dry_run: DryRun = False,
) -> JSONResponse:
    path_hex_id(request, zone_id)
    path_hex_id(request, ruleset_id)
    return ok(
        _write(
            request,
            dry_run,
            lambda s: svc.update_ruleset(
                s, principal, zone_id, ruleset_id, _ruleset_body(body), now=utcnow()
            ),
        )
    )


@router.delete("/{ruleset_id}", summary="Delete a zone ruleset", status_code=204)
def delete_ruleset(
    request: Request, principal: Auth, zone_id: str, ruleset_id: str, dry_run: DryRun = False
) -> Response:
    path_hex_id(request, zone_id)
    path_hex_id(request, ruleset_id)
    _write(request, dry_run, lambda s: svc.delete_ruleset(s, principal, zone_id, ruleset_id))
    return Response(status_code=204)


@router.get("/{ruleset_id}/versions", summary="List versions of a zone ruleset")
def list_versions(request: Request, principal: Auth, zone_id: str, ruleset_id: str) -> JSONResponse:
    path_hex_id(request, zone_id)
    path_hex_id(request, ruleset_id)
    with store_of(request).transaction() as session:
        return ok_list(svc.list_versions(session, principal, zone_id, ruleset_id))


@router.get("/{ruleset_id}/versions/{ruleset_version}", summary="Get a zone ruleset version")
def get_version(
    request: Request, principal: Auth, zone_id: str, ruleset_id: str, ruleset_version: str
) -> JSONResponse:
    path_hex_id(request, zone_id)
    path_hex_id(request, ruleset_id)
    with store_of(request).transaction() as session:
        return ok(svc.get_version(session, principal, zone_id, ruleset_id, ruleset_version))


# --- rules ---------------------------------------------------------------------------------------
@router.post("/{ruleset_id}/rules", summary="Create a zone ruleset rule")
def add_rule(
    request: Request,
    principal: Auth,
    zone_id: str,
    ruleset_id: str,
    body: NewRuleBody,
    dry_run: DryRun = False,
) -> JSONResponse:
    path_hex_id(request, zone_id)
    path_hex_id(request, ruleset_id)
    raw, position = _rule_fields(body)
    return ok(
        _write(
            request,
            dry_run,
            lambda s: svc.add_rule(s, principal, zone_id, ruleset_id, raw, position, now=utcnow()),
        )
    )


@router.patch("/{ruleset_id}/rules/{rule_id}", summary="Update a zone ruleset rule")
def edit_rule(
    request: Request,
    principal: Auth,
    zone_id: str,
    ruleset_id: str,
    rule_id: str,
    body: RulePatchBody,
    dry_run: DryRun = False,
) -> JSONResponse:
    path_hex_id(request, zone_id)
    path_hex_id(request, ruleset_id)
    path_hex_id(request, rule_id)
    raw, position = _rule_fields(body)
    return ok(
        _write(
            request,
            dry_run,
            lambda s: svc.edit_rule(
                s, principal, zone_id, ruleset_id, rule_id, raw, position, now=utcnow()
            ),
        )
    )


@router.delete("/{ruleset_id}/rules/{rule_id}", summary="Delete a zone ruleset rule")
def delete_rule(
    request: Request,
    principal: Auth,
    zone_id: str,
    ruleset_id: str,
    rule_id: str,
    dry_run: DryRun = False,
) -> JSONResponse:
    path_hex_id(request, zone_id)
    path_hex_id(request, ruleset_id)
    path_hex_id(request, rule_id)
    return ok(
        _write(
            request,
            dry_run,
            lambda s: svc.delete_rule(s, principal, zone_id, ruleset_id, rule_id, now=utcnow()),
        )
    )
