"""Custom rules (the http_request_firewall_custom phase): list, delete, and create, with the
"Create mTLS rule" shortcut of the Client Certificates page. All through services/rulesets.py."""

from __future__ import annotations

import contextlib
from typing import Annotated, Any

from fastapi import APIRouter, Depends, Request
from fastapi.responses import HTMLResponse, PlainTextResponse, Response
from starlette.datastructures import FormData

from mtlsgate.dashboard.web import (
    Ctx,
    check_csrf,
    check_zone,
    current,
    form_text,
    plain,
    redirect,
    render,
    store_of,
)
from mtlsgate.errors import MtlsgateError, NotFound
from mtlsgate.rules import RulesError, compile_expression
from mtlsgate.services import hostname_associations, mtls_certificates, rulesets
from mtlsgate.services.common import utcnow
from mtlsgate.services.permissions import ZONE_WAF_READ, ZONE_WAF_WRITE

router = APIRouter()
PHASE = rulesets.FIREWALL_CUSTOM
MTLS_CONDITION = "not cf.tls_client_auth.cert_verified"
ACTIONS = ("block", "log")


async def _form(request: Request) -> FormData:
    return await request.form(max_files=0, max_fields=2000)


Form = Annotated[FormData, Depends(_form)]
Signed = Annotated[Ctx, Depends(current)]


_plain = plain


def _quote(hostname: str) -> str:
    # Hostnames are normalised A-labels (no quotes or backslashes), but escape anyway.
    return '"' + hostname.replace("\\", "\\\\").replace('"', '\\"') + '"'


def mtls_expression(hostnames: list[str]) -> str:
    """The seed's rule: block requests to these hostnames without a verified client
    certificate (every hostname of the zone when none is chosen)."""
    if not hostnames:
        return MTLS_CONDITION
    names = " ".join(_quote(h) for h in hostnames)
    return f"(http.host in {{{names}}} and {MTLS_CONDITION})"


def _can_write(ctx: Ctx) -> bool:
    return ctx.zone is not None and ctx.principal.can(
        ZONE_WAF_WRITE, account_id=ctx.account_id, zone_id=ctx.zone.id
    )


def _zone(ctx: Ctx) -> str:
    if ctx.zone is None:
        raise NotFound("This API token sees no zone.")
    return ctx.zone.id


def _entry_point(ctx: Ctx) -> dict[str, Any] | None:
    with store_of(ctx.request).transaction() as db:
        try:
            return rulesets.get_entry_point(db, ctx.principal, _zone(ctx), PHASE)
        except NotFound:
            return None  # no rule was ever created in this zone


@router.get("/custom-rules")
def custom_rules(ctx: Signed) -> Response:
    error = None
    rules: list[dict[str, Any]] = []
    try:
        rs = _entry_point(ctx)
        rules = rs["rules"] if rs else []
    except MtlsgateError as exc:
        error = _plain(exc, ZONE_WAF_READ)
    return render(
        ctx.request,
        "custom_rules.html",
        ctx,
        active="rules",
        rules=rules,
        error=error,
        can_write=_can_write(ctx),
    )


def _associated_hostnames(ctx: Ctx) -> list[str]:
    """Hostnames of the zone that check client certificates (managed CA or an uploaded one):
    the candidates for an mTLS rule. What the token cannot read is left out."""
    zone_id = _zone(ctx)
    found: set[str] = set()
    with store_of(ctx.request).transaction() as db:
        ca_ids: list[str | None] = [None]
        with contextlib.suppress(MtlsgateError):
            certs = mtls_certificates.list_certificates(db, ctx.principal, ctx.account_id)
            ca_ids += [c.id for c in certs if c.ca]
        with contextlib.suppress(MtlsgateError):
            for ca_id in ca_ids:
                found.update(
                    hostname_associations.list_hostnames(db, ctx.principal, zone_id, ca_id)
                )
    return sorted(found)


@router.get("/custom-rules/mtls")
def choose_mtls_hostnames(ctx: Signed) -> Response:
    return render(
        ctx.request,
        "mtls_rule_hosts.html",
        ctx,
        active="rules",
        hostnames=_associated_hostnames(ctx),
    )


def _editor(
    ctx: Ctx,
    *,
    description: str,
    expression: str,
    action: str,
    error: str | None = None,
    status: int = 200,
    rule_id: str | None = None,
    loaded_action: str = "",
) -> HTMLResponse:
    return render(
        ctx.request,
        "rule_editor.html",
        ctx,
        active="rules",
        rule_id=rule_id,
        loaded_action=loaded_action,
        description=description,
        expression=expression,
        action=action,
        actions=ACTIONS,
        error=error,
        can_write=_can_write(ctx),
        status=status,
    )


@router.get("/custom-rules/new")
def new_rule(ctx: Signed, request: Request) -> Response:
    if request.query_params.get("mtls"):
        hosts = [h for h in request.query_params.getlist("hostname") if h][:100]
        return _editor(
            ctx,
            description="Require a valid client certificate"
            + (f" on {', '.join(hosts)}" if hosts else ""),
            expression=mtls_expression(hosts),
            action="block",
        )
    return _editor(ctx, description="", expression="", action="block")


@router.post("/custom-rules/new")
def create_rule(ctx: Signed, form: Form) -> Response:
    check_csrf(form, ctx.csrf)
    zone_id = check_zone(ctx, form).id
    description = form_text(form, "description", max_len=2000)
    expression = form_text(form, "expression", max_len=20_000)
    action = form_text(form, "action")
    raw = {"action": action, "expression": expression, "description": description}
    try:
        with store_of(ctx.request).transaction() as db:
            try:
                rs = rulesets.get_entry_point(db, ctx.principal, zone_id, PHASE)
                rulesets.add_rule(db, ctx.principal, zone_id, rs["id"], raw, None, now=utcnow())
            except NotFound:
                rulesets.put_entry_point(
                    db, ctx.principal, zone_id, PHASE, {"rules": [raw]}, now=utcnow()
                )
    except MtlsgateError as exc:
        return _editor(
            ctx,
            description=description,
            expression=expression,
            action=action,
            error=_plain(exc, ZONE_WAF_WRITE),
            status=400 if exc.status < 500 else exc.status,
        )
    ctx.flash(f"Deployed the rule “{description or expression}”.")
    return redirect("/custom-rules")


@router.post("/custom-rules/{rule_id}/delete")
def delete_rule(ctx: Signed, rule_id: str, form: Form) -> Response:
    check_csrf(form, ctx.csrf)
    zone_id = check_zone(ctx, form).id
    try:
        with store_of(ctx.request).transaction() as db:
            rs = rulesets.get_entry_point(db, ctx.principal, zone_id, PHASE)
            rulesets.delete_rule(db, ctx.principal, zone_id, rs["id"], rule_id, now=utcnow())
    except MtlsgateError as exc:
        ctx.flash(_plain(exc, ZONE_WAF_WRITE))
        return redirect("/custom-rules")
    ctx.flash("The rule was deleted.")
    return redirect("/custom-rules")


def _rule_change(
    ctx: Ctx, rule_id: str, raw: dict[str, Any], position: dict[str, Any] | None
) -> None:
    zone_id = _zone(ctx)
    with store_of(ctx.request).transaction() as db:
        rs = rulesets.get_entry_point(db, ctx.principal, zone_id, PHASE)
        rulesets.edit_rule(
            db, ctx.principal, zone_id, rs["id"], rule_id, raw, position, now=utcnow()
        )


def _find_rule(ctx: Ctx, rule_id: str) -> tuple[int, dict[str, Any]]:
    rs = _entry_point(ctx)
    for i, rule in enumerate(rs["rules"] if rs else []):
        if rule["id"] == rule_id:
            return i, rule
    raise NotFound("There is no such rule in this zone.")


@router.get("/custom-rules/{rule_id}/edit")
def edit_rule_page(ctx: Signed, rule_id: str) -> Response:
    _, rule = _find_rule(ctx, rule_id)
    return _editor(
        ctx,
        description=rule["description"],
        expression=rule["expression"],
        action=rule["action"],
        rule_id=rule_id,
        loaded_action=rule["action"],
    )


@router.post("/custom-rules/{rule_id}/edit")
def edit_rule(ctx: Signed, rule_id: str, form: Form) -> Response:
    check_csrf(form, ctx.csrf)
    check_zone(ctx, form)
    description = form_text(form, "description", max_len=2000)
    expression = form_text(form, "expression", max_len=20_000)
    action = form_text(form, "action")
    loaded_action = form_text(form, "loaded_action")
    raw: dict[str, Any] = {"expression": expression, "description": description}
    # The action goes to the service only when the user chose another one: the service keeps
    # what is not sent, so a rename never turns a `skip` into a `block` nor drops its
    # action_parameters (a changed action starts without the old action's parameters).
    if action != loaded_action:
        raw["action"] = action
    try:
        _rule_change(ctx, rule_id, raw, None)
    except MtlsgateError as exc:
        if isinstance(exc, NotFound):
            raise
        return _editor(
            ctx,
            description=description,
            expression=expression,
            action=action,
            error=_plain(exc, ZONE_WAF_WRITE),
            status=400 if exc.status < 500 else exc.status,
            rule_id=rule_id,
            loaded_action=loaded_action,
        )
    ctx.flash(f"Saved the rule “{description or expression}”.")
    return redirect("/custom-rules")


@router.post("/custom-rules/{rule_id}/change")
def change_rule(ctx: Signed, rule_id: str, form: Form) -> Response:
    """Enable, disable, move up, move down: one small edit through the same service call."""
    check_csrf(form, ctx.csrf)
    check_zone(ctx, form)
    what = form_text(form, "change")
    index, rule = _find_rule(ctx, rule_id)
    raw: dict[str, Any] = {}
    position: dict[str, Any] | None = None
    if what in ("enable", "disable"):
        raw = {"enabled": what == "enable"}
    elif what == "up":
        position = {"index": max(index, 1)}  # 1-based among the other rules
    elif what == "down":
        position = {"index": index + 2}
    else:
        ctx.flash("Unknown change.")
        return redirect("/custom-rules")
    try:
        _rule_change(ctx, rule_id, raw, position)
    except MtlsgateError as exc:
        ctx.flash(_plain(exc, ZONE_WAF_WRITE))
        return redirect("/custom-rules")
    name = rule["description"] or rule["expression"]
    done = {"enable": "enabled", "disable": "disabled", "up": "moved up", "down": "moved down"}
    ctx.flash(f"The rule “{name}” was {done[what]}.")
    return redirect("/custom-rules")


@router.post("/custom-rules/check")
def check_expression(ctx: Signed, form: Form) -> Response:
    """The editor's diagnostic as you type: the rules engine's own caret rendering, as text
    ("" when the expression compiles). Same engine as the service that saves the rule."""
    check_csrf(form, ctx.csrf)
    text = form_text(form, "expression", max_len=20_000)
    if not text.strip():
        return PlainTextResponse("")
    try:
        compile_expression(text)
    except RulesError as exc:
        return PlainTextResponse(exc.render(rulesets.EXPRESSION_WIDTH))
    except RecursionError:
        return PlainTextResponse("Filter parsing error: the expression is nested too deeply")
    return PlainTextResponse("")
