"""Zone rulesets (Cloudflare's Rulesets API): phase entry points, custom rulesets, their rules
and every version of them.

Every rule is validated in full when it is written (its expression compiles, its action is one
the phase supports, its parameters are ones the edge implements), so the edge never meets a rule
it cannot run. Every mutation makes a new ruleset version, keeps that version's full JSON in
`ruleset_versions`, and bumps the config version in the same transaction.

Error codes are listed in docs/rulesets.md.
"""

from __future__ import annotations

import ipaddress
import json
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from sqlalchemy import delete, select
from sqlalchemy.orm import Session

from mtlsgate.edge.header_policy import is_token, refusal
from mtlsgate.errors import QUOTE_LIMIT, BadRequest, Conflict, NotFound, quote
from mtlsgate.rules import RulesError, compile_expression
from mtlsgate.rules.scheme import STRING
from mtlsgate.services.accounts import visible_zone
from mtlsgate.services.common import hex_id
from mtlsgate.services.permissions import ZONE_WAF_READ, ZONE_WAF_WRITE, Principal
from mtlsgate.store.db import bump_config_version
from mtlsgate.store.models import Account, Ruleset, RulesetRule, RulesetVersion, Zone

# --- error codes (docs/rulesets.md) --------------------------------------------------------------

INVALID_EXPRESSION = 20021
UNSUPPORTED_ACTION = 20022
CHALLENGE_NOT_SUPPORTED = 20023
INVALID_ACTION_PARAMETERS = 20024
INVALID_POSITION = 20025
UNSUPPORTED_PHASE = 20026
ENTRY_POINT_EXISTS = 20027
RULESET_NOT_FOUND = 20028
RULE_NOT_FOUND = 20029
VERSION_NOT_FOUND = 20030
INVALID_RULE = 20031
INVALID_RULESET = 20032

# --- what mtlsgate supports ----------------------------------------------------------------------
FIREWALL_CUSTOM = "http_request_firewall_custom"
ORIGIN = "http_request_origin"
LATE_TRANSFORM = "http_request_late_transform"

# phase -> the actions its rules may take
PHASE_ACTIONS: dict[str, tuple[str, ...]] = {
    FIREWALL_CUSTOM: ("block", "log", "skip"),
    ORIGIN: ("route",),
    LATE_TRANSFORM: ("rewrite",),
}
SUPPORTED_PHASES: tuple[str, ...] = tuple(PHASE_ACTIONS)
CHALLENGE_ACTIONS = ("challenge", "js_challenge", "managed_challenge")
KINDS = ("zone", "custom")  # "zone" is a phase entry point
ENTRY_POINT_KIND = "zone"
DEFAULT_ENTRY_POINT_NAME = "default"

BLOCK_CONTENT_TYPES = ("text/html", "text/plain", "application/json", "text/xml")
MAX_BLOCK_CONTENT_BYTES = 2048
MAX_RULES = 1000
MAX_NAME = 255
MAX_DESCRIPTION = 1024
MAX_REF = 255
MAX_HEADERS = 64
MAX_HEADER_NAME = 256
MAX_HEADER_VALUE = 4096
# An expression error shows at most this much of the faulty line around the caret (a longer line
# is cut, marked "…"); its (line:col) stays exact.
EXPRESSION_WIDTH = 2 * QUOTE_LIMIT
MAX_PER_PAGE = 1000
DEFAULT_PER_PAGE = 100

# Used with fullmatch: `$` alone would accept a trailing newline.
_LABEL = re.compile(r"^(?!-)[a-z0-9-]{1,63}(?<!-)$")
_HEX32 = re.compile(r"^[0-9a-f]{32}$")


# --- the rule as validated -----------------------------------------------------------------------
@dataclass(frozen=True)
class RuleSpec:
    """A rule's content, validated and normalised (what a rule's version covers)."""

    action: str
    action_parameters: dict[str, Any] | None
    expression: str
    description: str
    enabled: bool
    ref: str | None
    logging: dict[str, Any] | None

    def content_of(self, ref: str) -> tuple[object, ...]:
        return (
            self.action,
            _dump(self.action_parameters),
            self.expression,
            self.description,
            self.enabled,
            ref,
            _dump(self.logging),
        )


def _dump(value: object) -> str | None:
    return None if value is None else json.dumps(value, sort_keys=True)


def _load(text: str | None) -> Any:
    return None if text is None else json.loads(text)


def _row_content(row: RulesetRule) -> tuple[object, ...]:
    return (
        row.action,
        _dump(_load(row.action_parameters)),
        row.expression,
        row.description,
        row.enabled,
        row.ref,
        _dump(_load(row.logging)),
    )


def _esc(token: str) -> str:
    """A JSON-pointer reference token (RFC 6901)."""
    return token.replace("~", "~0").replace("/", "~1")


def _text(value: object, pointer: str, what: str, *, max_len: int, min_len: int = 0) -> str:
    if not isinstance(value, str):
        raise BadRequest(f"{what} must be a string", pointer=pointer)
    if "\x00" in value:
        raise BadRequest(f"{what} must not contain NUL characters", pointer=pointer)
    try:
        value.encode("utf-8")
    except UnicodeEncodeError:
        raise BadRequest(f"{what} is not valid Unicode text", pointer=pointer) from None
    if len(value) < min_len:
        raise BadRequest(f"{what} must not be empty", pointer=pointer)
    if len(value) > max_len:
        raise BadRequest(f"{what} must be at most {max_len} characters", pointer=pointer)
    return value


def _compile(text: object, pointer: str, *, string: bool = False) -> str:
    if not isinstance(text, str):
        raise BadRequest("expression must be a string", code=INVALID_EXPRESSION, pointer=pointer)
    try:
        if string:
            compile_expression(text, expect=STRING)
        else:
            compile_expression(text)
    except RulesError as exc:
        raise BadRequest(
            exc.render(EXPRESSION_WIDTH), code=INVALID_EXPRESSION, pointer=pointer
        ) from None
    except RecursionError:
        raise BadRequest(
            "Filter parsing error: the expression is nested too deeply",
            code=INVALID_EXPRESSION,
            pointer=pointer,
        ) from None
    return text


def _params_error(message: str, pointer: str) -> BadRequest:
    return BadRequest(message, code=INVALID_ACTION_PARAMETERS, pointer=pointer)


def _object(value: object, pointer: str, what: str) -> dict[str, Any]:
    if not isinstance(value, dict):
        raise _params_error(f"{what} must be a JSON object", pointer)
    return value


def _no_other_keys(obj: Mapping[str, Any], allowed: Sequence[str], pointer: str, what: str) -> None:
    for key in obj:
        if key not in allowed:
            raise _params_error(
                f"unknown field {quote(key)} in {what}; allowed: {', '.join(allowed)}",
                f"{pointer}/{_esc(key)}",
            )


def _hostname(value: object, pointer: str, what: str, *, allow_ip: bool) -> str:
    if not isinstance(value, str) or not value.strip():
        raise _params_error(f"{what} must be a non-empty string", pointer)
    name = value.strip().lower().rstrip(".")
    if allow_ip:
        try:
            return str(ipaddress.ip_address(name.strip("[]")))
        except ValueError:
            pass
    labels = name.split(".")
    numeric = labels[-1].isdigit()  # "10.0.0.1" is an address, not a name
    if (
        len(name) > 253
        or not name.isascii()
        or numeric
        or not all(_LABEL.fullmatch(lb) for lb in labels)
    ):
        kind = "a hostname or an IP address" if allow_ip else "a hostname"
        raise _params_error(f"{what} must be {kind}, got {quote(value)}", pointer)
    return name


# --- action parameters, per action ---------------------------------------------------------------


def _block_params(params: dict[str, Any], p: str) -> dict[str, Any]:
    _no_other_keys(params, ("response",), p, "block action_parameters")
    response = _object(params["response"], f"{p}/response", "response")
    _no_other_keys(
        response, ("status_code", "content", "content_type"), f"{p}/response", "response"
    )
    for key in ("status_code", "content", "content_type"):
        if key not in response:
            raise _params_error(
                f"response.{key} is required: a custom block response needs status_code, "
                "content and content_type",
                f"{p}/response/{key}",
            )
    status = response["status_code"]
    if type(status) is not int or not 400 <= status <= 499:
        raise _params_error(
            f"response.status_code must be an integer from 400 to 499, got {quote(status)}",
            f"{p}/response/status_code",
        )
    content = response["content"]
    if not isinstance(content, str) or not content:
        raise _params_error("response.content must be a non-empty string", f"{p}/response/content")
    _text(content, f"{p}/response/content", "response.content", max_len=MAX_BLOCK_CONTENT_BYTES)
    if len(content.encode("utf-8")) > MAX_BLOCK_CONTENT_BYTES:
        raise _params_error(
            f"response.content must be at most {MAX_BLOCK_CONTENT_BYTES} bytes (UTF-8)",
            f"{p}/response/content",
        )
    ctype = response["content_type"]
    if ctype not in BLOCK_CONTENT_TYPES:
        raise _params_error(
            f"response.content_type must be one of {', '.join(BLOCK_CONTENT_TYPES)}, "
            f"got {quote(ctype)}",
            f"{p}/response/content_type",
        )
    return {"response": {"status_code": status, "content": content, "content_type": ctype}}


def _skip_params(params: dict[str, Any], p: str, *, kind: str) -> dict[str, Any]:
    supported = 'mtlsgate supports skip with ruleset: "current" and/or phase: "current" only'
    for key in params:
        if key not in ("ruleset", "phase"):
            raise _params_error(
                f"skip parameter {quote(key)} is not supported: {supported}", f"{p}/{key}"
            )
    if not params:
        raise _params_error(f"skip needs action_parameters: {supported}", p)
    for key, value in params.items():
        if value != "current":
            raise _params_error(
                f'skip {key} must be "current", got {quote(value)}: {supported}', f"{p}/{key}"
            )
    if "phase" in params and kind != ENTRY_POINT_KIND:
        raise _params_error(
            'phase: "current" skips the rest of the phase and is only allowed in the phase entry '
            'point (kind "zone")',
            f"{p}/phase",
        )
    return {key: "current" for key in ("ruleset", "phase") if key in params}


def _route_params(params: dict[str, Any], p: str) -> dict[str, Any]:
    _no_other_keys(params, ("origin", "host_header", "sni"), p, "route action_parameters")
    out: dict[str, Any] = {}
    if "origin" in params:
        origin = _object(params["origin"], f"{p}/origin", "origin")
        _no_other_keys(origin, ("host", "port"), f"{p}/origin", "origin")
        if not origin:
            raise _params_error("origin needs host and/or port", f"{p}/origin")
        o: dict[str, Any] = {}
        if "host" in origin:
            o["host"] = _hostname(origin["host"], f"{p}/origin/host", "origin.host", allow_ip=True)
        if "port" in origin:
            port = origin["port"]
            if type(port) is not int or not 1 <= port <= 65535:
                raise _params_error(
                    f"origin.port must be an integer from 1 to 65535, got {quote(port)}",
                    f"{p}/origin/port",
                )
            o["port"] = port
        out["origin"] = o
    if "host_header" in params:
        out["host_header"] = _hostname(
            params["host_header"], f"{p}/host_header", "host_header", allow_ip=True
        )
    if "sni" in params:
        sni = _object(params["sni"], f"{p}/sni", "sni")
        _no_other_keys(sni, ("value",), f"{p}/sni", "sni")
        if "value" not in sni:
            raise _params_error("sni.value is required", f"{p}/sni/value")
        out["sni"] = {
            "value": _hostname(sni["value"], f"{p}/sni/value", "sni.value", allow_ip=False)
        }
    if not out:
        raise _params_error("route needs at least one of origin, host_header, sni", p)
    return out


def _first_control(value: object) -> str:
    """The first control character a header value may not hold (RFC 9110 §5.5 allows tab), or
    "" when there is none (or the value is not text: _text says so)."""
    if isinstance(value, str):
        for c in value:
            if (ord(c) < 32 and c != "\t") or ord(c) == 127:
                return c
    return ""


def _rewrite_params(params: dict[str, Any], p: str) -> dict[str, Any]:
    if "uri" in params:
        raise _params_error(
            "mtlsgate's rewrite changes request headers only; uri rewrites are not supported",
            f"{p}/uri",
        )
    _no_other_keys(params, ("headers",), p, "rewrite action_parameters")
    if "headers" not in params:
        raise _params_error("rewrite needs action_parameters.headers", f"{p}/headers")
    headers = _object(params["headers"], f"{p}/headers", "headers")
    if not headers:
        raise _params_error("headers must name at least one header", f"{p}/headers")
    if len(headers) > MAX_HEADERS:
        raise _params_error(f"at most {MAX_HEADERS} headers per rule", f"{p}/headers")
    out: dict[str, Any] = {}
    seen: set[str] = set()
    for name, op in headers.items():
        hp = f"{p}/headers/{_esc(name)}"
        if not is_token(name) or len(name) > MAX_HEADER_NAME:
            raise _params_error(
                f"{quote(name)} is not a valid header name: it must be a token (RFC 9110, as in "
                "RFC 7230): letters, digits and !#$%&'*+-.^_`|~ only, no spaces, colons or control "
                f"characters, 1 to {MAX_HEADER_NAME} characters",
                hp,
            )
        if name.lower() in seen:
            raise _params_error(f"header {name!r} is named twice (header names ignore case)", hp)
        seen.add(name.lower())
        op = _object(op, hp, f"header {name!r}")
        operation = op.get("operation")
        if operation not in ("set", "remove"):
            raise _params_error(
                f'header {name!r}: operation must be "set" or "remove", got {quote(operation)}',
                f"{hp}/operation",
            )
        # Headers the edge owns: it would ignore the operation, so the rule is refused.
        why = refusal(name, operation)
        if why is not None:
            raise _params_error(why, hp)
        if operation == "remove":
            _no_other_keys(op, ("operation",), hp, "a remove operation")
            out[name] = {"operation": "remove"}
            continue
        _no_other_keys(op, ("operation", "value", "expression"), hp, "a set operation")
        if ("value" in op) == ("expression" in op):
            raise _params_error(
                f"header {name!r}: set needs exactly one of value (static text) or "
                "expression (computed per request)",
                hp,
            )
        if "value" in op:
            value = op["value"]
            if bad := _first_control(value):
                # Would split the header (CR, LF) or end it early (NUL) in the origin's request.
                raise _params_error(
                    f"header {name!r}: value must not contain control characters (CR, LF, NUL, "
                    f"...; tab is allowed), found {bad!r}",
                    f"{hp}/value",
                )
            value = _text(value, f"{hp}/value", "value", max_len=MAX_HEADER_VALUE)
            out[name] = {"operation": "set", "value": value}
        else:
            expr = _compile(op["expression"], f"{hp}/expression", string=True)
            out[name] = {"operation": "set", "expression": expr}
    return {"headers": out}


def validate_rule(raw: Mapping[str, Any], *, phase: str, kind: str, pointer: str) -> RuleSpec:
    """Check one rule (already type-checked by the API layer) as the given phase runs it.

    `pointer` is the JSON pointer of the rule in the request ("" for a single-rule body)."""
    allowed = PHASE_ACTIONS[phase]
    action = raw.get("action")
    if action is None:
        raise BadRequest("action is required", code=UNSUPPORTED_ACTION, pointer=f"{pointer}/action")
    if action in CHALLENGE_ACTIONS:
        raise BadRequest(
            f"action {quote(action)} is not supported: mtlsgate has no browser challenges "
            "(it serves API clients that authenticate with certificates); use block",
            code=CHALLENGE_NOT_SUPPORTED,
            pointer=f"{pointer}/action",
        )
    if action not in allowed:
        raise BadRequest(
            f"action {quote(action)} is not supported in phase {phase}; "
            f"supported: {', '.join(allowed)}",
            code=UNSUPPORTED_ACTION,
            pointer=f"{pointer}/action",
        )
    if "expression" not in raw or raw["expression"] is None:
        raise BadRequest(
            "expression is required", code=INVALID_EXPRESSION, pointer=f"{pointer}/expression"
        )
    expression = _compile(raw["expression"], f"{pointer}/expression")

    pp = f"{pointer}/action_parameters"
    params = raw.get("action_parameters") or None
    normalised: dict[str, Any] | None
    if params is not None:
        params = _object(params, pp, "action_parameters")
    if action == "block":
        normalised = None if params is None else _block_params(params, pp)
    elif action == "log":
        if params is not None:
            raise _params_error("log takes no action_parameters", pp)
        normalised = None
    elif action == "skip":
        normalised = _skip_params(params or {}, pp, kind=kind)
    elif action == "route":
        normalised = _route_params(params or {}, pp)
    else:  # rewrite
        normalised = _rewrite_params(params or {}, pp)

    logging = raw.get("logging")
    if logging is not None:
        if action != "skip":
            raise BadRequest(
                "logging applies to skip rules only",
                code=INVALID_RULE,
                pointer=f"{pointer}/logging",
            )
        logging = {"enabled": bool(logging["enabled"])}

    description = raw.get("description")
    description = "" if description is None else description
    _text(description, f"{pointer}/description", "description", max_len=MAX_DESCRIPTION)
    ref = raw.get("ref")
    if ref is not None:
        _text(ref, f"{pointer}/ref", "ref", max_len=MAX_REF, min_len=1)
    enabled = raw.get("enabled")
    return RuleSpec(
        action=str(action),
        action_parameters=normalised,
        expression=expression,
        description=description,
        enabled=True if enabled is None else bool(enabled),
        ref=ref,
        logging=logging,
    )


# --- views ---------------------------------------------------------------------------------------
def _iso(dt: datetime) -> str:
    return dt.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ")


def rule_json(row: RulesetRule) -> dict[str, Any]:
    out: dict[str, Any] = {
        "id": row.id,
        "version": str(row.version),
        "action": row.action,
    }
    if row.action_parameters is not None:
        out["action_parameters"] = _load(row.action_parameters)
    out["expression"] = row.expression
    out["description"] = row.description
    out["enabled"] = row.enabled
    out["ref"] = row.ref
    if row.logging is not None:
        out["logging"] = _load(row.logging)
    out["last_updated"] = _iso(row.last_updated)
    return out


def ruleset_summary(rs: Ruleset) -> dict[str, Any]:
    return {
        "id": rs.id,
        "name": rs.name,
        "description": rs.description,
        "kind": rs.kind,
        "phase": rs.phase,
        "version": str(rs.version),
        "last_updated": _iso(rs.last_updated),
    }


def _rules_of(session: Session, ruleset_id: str) -> list[RulesetRule]:
    return list(
        session.scalars(
            select(RulesetRule)
            .where(RulesetRule.ruleset_id == ruleset_id)
            .order_by(RulesetRule.position)
        )
    )


def ruleset_json(session: Session, rs: Ruleset) -> dict[str, Any]:
    return {**ruleset_summary(rs), "rules": [rule_json(r) for r in _rules_of(session, rs.id)]}


# --- lookups -------------------------------------------------------------------------------------
def check_phase(phase: str) -> str:
    if phase not in PHASE_ACTIONS:
        raise BadRequest(
            f"phase {quote(phase)} is not supported by mtlsgate; supported phases: "
            f"{', '.join(SUPPORTED_PHASES)}",
            code=UNSUPPORTED_PHASE,
        )
    return phase


def _zone(session: Session, principal: Principal, zone_id: str, *, write: bool) -> Zone:
    zone = visible_zone(session, principal, zone_id)
    principal.require(
        ZONE_WAF_WRITE if write else ZONE_WAF_READ, account_id=zone.account_id, zone_id=zone.id
    )
    if write:
        # One writer per account at a time: ordered read-modify-write of rules and versions.
        session.execute(select(Account.id).where(Account.id == zone.account_id).with_for_update())
    return zone


def _ruleset(session: Session, zone: Zone, ruleset_id: str) -> Ruleset:
    rs = session.get(Ruleset, ruleset_id)
    if rs is None or rs.zone_id != zone.id:
        raise NotFound(f"ruleset {ruleset_id} was not found in this zone", code=RULESET_NOT_FOUND)
    return rs


def _entry_point(session: Session, zone: Zone, phase: str) -> Ruleset | None:
    return session.scalar(
        select(Ruleset).where(
            Ruleset.zone_id == zone.id,
            Ruleset.phase == phase,
            Ruleset.kind == ENTRY_POINT_KIND,
        )
    )


def _missing_entry_point(phase: str) -> NotFound:
    return NotFound(
        f"this zone has no entry point ruleset for phase {phase} yet; "
        f"PUT /zones/{{zone_id}}/rulesets/phases/{phase}/entrypoint creates it",
        code=RULESET_NOT_FOUND,
    )


# --- writing -------------------------------------------------------------------------------------
# (existing rule id to keep, or None for a new rule; its content, or None to keep the row's)
Desired = tuple[str | None, RuleSpec | None]


def _check_refs(desired: list[tuple[str, str]], pointer_of: list[str]) -> None:
    """`desired` is [(id, ref)]; refs must be unique within the ruleset."""
    seen: dict[str, int] = {}
    for i, (_, ref) in enumerate(desired):
        if ref in seen:
            raise BadRequest(
                f"ref {ref!r} is used by two rules of this ruleset; refs must be unique",
                code=INVALID_RULE,
                pointer=pointer_of[i],
            )
        seen[ref] = i


def _apply(
    session: Session,
    rs: Ruleset,
    desired: list[Desired],
    ref_pointers: list[str],
    *,
    now: datetime,
) -> dict[str, Any]:
    """Make `desired` the ruleset's rules, in that order, as a new version; return its JSON."""
    if len(desired) > MAX_RULES:
        raise BadRequest(f"a ruleset holds at most {MAX_RULES} rules", code=INVALID_RULE)
    existing = {r.id: r for r in _rules_of(session, rs.id)}
    plan: list[tuple[str, RuleSpec | None]] = [
        (rid if rid is not None else hex_id(), spec) for rid, spec in desired
    ]
    refs = []
    for rid, spec in plan:
        if spec is None:
            refs.append((rid, existing[rid].ref))
        else:
            refs.append((rid, spec.ref or rid))
    _check_refs(refs, ref_pointers)

    keep = {rid for rid, _ in plan}
    gone = [rid for rid in existing if rid not in keep]
    for rid in gone:
        session.delete(existing[rid])
    for position, ((rid, spec), (_, ref)) in enumerate(zip(plan, refs, strict=True)):
        row = existing.get(rid)
        if row is None:
            assert spec is not None
            row = RulesetRule(id=rid, ruleset_id=rs.id, version=1, last_updated=now)
            _set_content(row, spec, ref)
            session.add(row)
        elif spec is not None and spec.content_of(ref) != _row_content(row):
            _set_content(row, spec, ref)
            row.version += 1
            row.last_updated = now
        row.position = position
    rs.version += 1
    rs.last_updated = now
    session.flush()
    view = ruleset_json(session, rs)
    session.add(
        RulesetVersion(
            ruleset_id=rs.id, version=rs.version, snapshot=json.dumps(view), last_updated=now
        )
    )
    bump_config_version(session)
    return view


def _set_content(row: RulesetRule, spec: RuleSpec, ref: str) -> None:
    row.action = spec.action
    row.action_parameters = _dump(spec.action_parameters)
    row.expression = spec.expression
    row.description = spec.description
    row.enabled = spec.enabled
    row.ref = ref
    row.logging = _dump(spec.logging)


def _replacement(
    session: Session, rs: Ruleset, rules: Sequence[Mapping[str, Any]]
) -> tuple[list[Desired], list[str]]:
    """The desired list for a whole-ruleset replace: a rule keeps its identity when it names an
    existing rule by `id` (or, without an id, by `ref`)."""
    existing = _rules_of(session, rs.id)
    by_id = {r.id: r for r in existing}
    by_ref = {r.ref: r.id for r in existing}
    claimed: set[str] = set()
    desired: list[Desired] = []
    pointers: list[str] = []
    specs = [
        validate_rule(raw, phase=rs.phase, kind=rs.kind, pointer=f"/rules/{i}")
        for i, raw in enumerate(rules)
    ]
    for i, (raw, spec) in enumerate(zip(rules, specs, strict=True)):
        rid = raw.get("id")
        if rid is not None:
            if not isinstance(rid, str) or not _HEX32.fullmatch(rid) or rid not in by_id:
                raise BadRequest(
                    f"rule id {quote(rid)} is not a rule of this ruleset; "
                    "omit id to add a new rule",
                    code=INVALID_RULE,
                    pointer=f"/rules/{i}/id",
                )
            if rid in claimed:
                raise BadRequest(
                    f"rule id {rid} appears twice", code=INVALID_RULE, pointer=f"/rules/{i}/id"
                )
        elif spec.ref is not None and by_ref.get(spec.ref) not in (None, *claimed):
            rid = by_ref[spec.ref]
        if rid is not None:
            claimed.add(rid)
        desired.append((rid, spec))
        pointers.append(f"/rules/{i}/ref")
    # A rule matched by ref may have been claimed later by id: that is a clash.
    ids = [rid for rid, _ in desired if rid is not None]
    if len(ids) != len(set(ids)):
        raise BadRequest(
            "two rules of the request name the same existing rule (by id or ref)",
            code=INVALID_RULE,
            pointer="/rules",
        )
    return desired, pointers


# --- entry points --------------------------------------------------------------------------------
def get_entry_point(
    session: Session, principal: Principal, zone_id: str, phase: str
) -> dict[str, Any]:
    zone = _zone(session, principal, zone_id, write=False)
    check_phase(phase)
    rs = _entry_point(session, zone, phase)
    if rs is None:
        raise _missing_entry_point(phase)
    return ruleset_json(session, rs)


def put_entry_point(
    session: Session,
    principal: Principal,
    zone_id: str,
    phase: str,
    body: Mapping[str, Any],
    *,
    now: datetime,
) -> dict[str, Any]:
    zone = _zone(session, principal, zone_id, write=True)
    check_phase(phase)
    if body.get("kind") not in (None, ENTRY_POINT_KIND):
        raise BadRequest(
            f'an entry point ruleset has kind "zone", got {quote(body["kind"])}',
            code=INVALID_RULESET,
            pointer="/kind",
        )
    if body.get("phase") not in (None, phase):
        raise BadRequest(
            f"phase {quote(body['phase'])} does not match the phase in the path ({phase})",
            code=INVALID_RULESET,
            pointer="/phase",
        )
    rs = _entry_point(session, zone, phase)
    if rs is None:
        name = body.get("name")
        rs = Ruleset(
            id=hex_id(),
            zone_id=zone.id,
            name=_name(name) if name is not None else DEFAULT_ENTRY_POINT_NAME,
            description="",
            kind=ENTRY_POINT_KIND,
            phase=phase,
            version=0,
            last_updated=now,
        )
        session.add(rs)
        session.flush()
    elif body.get("name") is not None and body["name"] != rs.name:
        raise BadRequest(
            f"a ruleset's name cannot change (it is {rs.name!r})",
            code=INVALID_RULESET,
            pointer="/name",
        )
    return _replace(session, rs, body, now=now)


def _replace(
    session: Session, rs: Ruleset, body: Mapping[str, Any], *, now: datetime
) -> dict[str, Any]:
    if body.get("description") is not None:
        rs.description = _text(
            body["description"], "/description", "description", max_len=MAX_DESCRIPTION
        )
    desired, pointers = _replacement(session, rs, body.get("rules") or [])
    return _apply(session, rs, desired, pointers, now=now)


def _name(value: object) -> str:
    name = _text(value, "/name", "name", max_len=MAX_NAME, min_len=1)
    if any(ord(c) < 32 or ord(c) == 127 for c in name):
        raise BadRequest("name must not contain control characters", pointer="/name")
    return name


def _versions_list(session: Session, ruleset_id: str) -> list[dict[str, Any]]:
    out = []
    for snap in session.scalars(
        select(RulesetVersion.snapshot)
        .where(RulesetVersion.ruleset_id == ruleset_id)
        .order_by(RulesetVersion.version)
    ):
        view = json.loads(snap)
        view.pop("rules", None)
        out.append(view)
    return out


def _version(session: Session, rs: Ruleset, version: str) -> dict[str, Any]:
    if not version.isascii() or not version.isdigit() or len(version) > 9 or int(version) < 1:
        raise BadRequest(
            f"a ruleset version is a positive integer, got {quote(version)}", code=VERSION_NOT_FOUND
        )
    snap = session.get(RulesetVersion, (rs.id, int(version)))
    if snap is None:
        raise NotFound(
            f"ruleset {rs.id} has no version {int(version)} (the latest is {rs.version})",
            code=VERSION_NOT_FOUND,
        )
    view: dict[str, Any] = json.loads(snap.snapshot)
    return view


def list_entry_point_versions(
    session: Session, principal: Principal, zone_id: str, phase: str
) -> list[dict[str, Any]]:
    zone = _zone(session, principal, zone_id, write=False)
    check_phase(phase)
    rs = _entry_point(session, zone, phase)
    return [] if rs is None else _versions_list(session, rs.id)


def get_entry_point_version(
    session: Session, principal: Principal, zone_id: str, phase: str, version: str
) -> dict[str, Any]:
    zone = _zone(session, principal, zone_id, write=False)
    check_phase(phase)
    rs = _entry_point(session, zone, phase)
    if rs is None:
        raise _missing_entry_point(phase)
    return _version(session, rs, version)


# --- rulesets by id ------------------------------------------------------------------------------
def list_rulesets(
    session: Session,
    principal: Principal,
    zone_id: str,
    *,
    cursor: str | None,
    per_page: int | None,
) -> tuple[list[dict[str, Any]], str | None]:
    """One page in id order; the cursor is the last id of the previous page."""
    zone = _zone(session, principal, zone_id, write=False)
    size = DEFAULT_PER_PAGE if per_page is None else per_page
    if not 1 <= size <= MAX_PER_PAGE:
        raise BadRequest(f"per_page must be between 1 and {MAX_PER_PAGE}", pointer="per_page")
    query = select(Ruleset).where(Ruleset.zone_id == zone.id)
    if cursor:
        if not _HEX32.fullmatch(cursor):
            raise BadRequest("cursor is not a cursor this API returned", pointer="cursor")
        query = query.where(Ruleset.id > cursor)
    rows = list(session.scalars(query.order_by(Ruleset.id).limit(size + 1)))
    more = len(rows) > size
    rows = rows[:size]
    return [ruleset_summary(r) for r in rows], (rows[-1].id if more else None)


def create_ruleset(
    session: Session,
    principal: Principal,
    zone_id: str,
    body: Mapping[str, Any],
    *,
    now: datetime,
) -> dict[str, Any]:
    zone = _zone(session, principal, zone_id, write=True)
    name = _name(body.get("name"))
    kind = body.get("kind")
    if kind not in KINDS:
        raise BadRequest(
            f"kind must be one of {', '.join(KINDS)} for a zone ruleset, got {quote(kind)}",
            code=INVALID_RULESET,
            pointer="/kind",
        )
    phase = body.get("phase")
    if phase not in PHASE_ACTIONS:
        raise BadRequest(
            f"phase {quote(phase)} is not supported by mtlsgate; supported phases: "
            f"{', '.join(SUPPORTED_PHASES)}",
            code=UNSUPPORTED_PHASE,
            pointer="/phase",
        )
    if kind == ENTRY_POINT_KIND:
        existing = _entry_point(session, zone, phase)
        if existing is not None:
            raise Conflict(
                f"this zone already has an entry point ruleset for phase {phase} "
                f"({existing.id}); update it with PUT .../rulesets/phases/{phase}/entrypoint",
                code=ENTRY_POINT_EXISTS,
            )
    rs = Ruleset(
        id=hex_id(),
        zone_id=zone.id,
        name=name,
        description="",
        kind=kind,
        phase=phase,
        version=0,
        last_updated=now,
    )
    session.add(rs)
    session.flush()
    return _replace(session, rs, body, now=now)


def get_ruleset(
    session: Session, principal: Principal, zone_id: str, ruleset_id: str
) -> dict[str, Any]:
    zone = _zone(session, principal, zone_id, write=False)
    return ruleset_json(session, _ruleset(session, zone, ruleset_id))


def update_ruleset(
    session: Session,
    principal: Principal,
    zone_id: str,
    ruleset_id: str,
    body: Mapping[str, Any],
    *,
    now: datetime,
) -> dict[str, Any]:
    zone = _zone(session, principal, zone_id, write=True)
    rs = _ruleset(session, zone, ruleset_id)
    for key in ("name", "kind", "phase"):
        if body.get(key) is not None and body[key] != getattr(rs, key):
            raise BadRequest(
                f"a ruleset's {key} cannot change (it is {getattr(rs, key)!r})",
                code=INVALID_RULESET,
                pointer=f"/{key}",
            )
    return _replace(session, rs, body, now=now)


def delete_ruleset(session: Session, principal: Principal, zone_id: str, ruleset_id: str) -> None:
    zone = _zone(session, principal, zone_id, write=True)
    rs = _ruleset(session, zone, ruleset_id)
    session.execute(delete(RulesetVersion).where(RulesetVersion.ruleset_id == rs.id))
    session.execute(delete(RulesetRule).where(RulesetRule.ruleset_id == rs.id))
    session.delete(rs)
    session.flush()
    bump_config_version(session)


def list_versions(
    session: Session, principal: Principal, zone_id: str, ruleset_id: str
) -> list[dict[str, Any]]:
    zone = _zone(session, principal, zone_id, write=False)
    return _versions_list(session, _ruleset(session, zone, ruleset_id).id)


def get_version(
    session: Session, principal: Principal, zone_id: str, ruleset_id: str, version: str
) -> dict[str, Any]:
    zone = _zone(session, principal, zone_id, write=False)
    return _version(session, _ruleset(session, zone, ruleset_id), version)


# --- single rules --------------------------------------------------------------------------------
def _target_index(
    position: Mapping[str, Any] | None, others: list[str], *, default: int, rule_id: str | None
) -> int:
    """Where a rule goes among `others` (the ruleset's rules without it)."""
    if position is None:
        return default
    given = [k for k in ("before", "after", "index") if position.get(k) is not None]
    if len(given) != 1:
        raise BadRequest(
            'position must have exactly one of "before", "after" or "index"',
            code=INVALID_POSITION,
            pointer="/position",
        )
    key = given[0]
    value = position[key]
    if key == "index":
        if type(value) is not int or not 1 <= value <= len(others) + 1:
            raise BadRequest(
                f"position.index must be from 1 to {len(others) + 1} (this ruleset has "
                f"{len(others)} other rule(s)), got {quote(value)}",
                code=INVALID_POSITION,
                pointer="/position/index",
            )
        return int(value) - 1
    if value == "":
        return 0 if key == "before" else len(others)
    if rule_id is not None and value == rule_id:
        raise BadRequest(
            "a rule cannot be positioned relative to itself",
            code=INVALID_POSITION,
            pointer=f"/position/{key}",
        )
    if value not in others:
        raise BadRequest(
            f"position.{key}: rule {quote(value)} is not a rule of this ruleset",
            code=INVALID_POSITION,
            pointer=f"/position/{key}",
        )
    i = others.index(value)
    return i if key == "before" else i + 1


def add_rule(
    session: Session,
    principal: Principal,
    zone_id: str,
    ruleset_id: str,
    raw: Mapping[str, Any],
    position: Mapping[str, Any] | None,
    *,
    now: datetime,
) -> dict[str, Any]:
    zone = _zone(session, principal, zone_id, write=True)
    rs = _ruleset(session, zone, ruleset_id)
    if raw.get("id") is not None:
        raise BadRequest(
            "a new rule's id is assigned by the server; omit id (PATCH changes an existing rule)",
            code=INVALID_RULE,
            pointer="/id",
        )
    spec = validate_rule(raw, phase=rs.phase, kind=rs.kind, pointer="")
    current = [r.id for r in _rules_of(session, rs.id)]
    at = _target_index(position, current, default=len(current), rule_id=None)
    desired: list[Desired] = [(rid, None) for rid in current]
    desired.insert(at, (None, spec))
    pointers = ["/ref"] * len(desired)
    return _apply(session, rs, desired, pointers, now=now)


RULE_FIELDS = (
    "action",
    "action_parameters",
    "expression",
    "description",
    "enabled",
    "ref",
    "logging",
)


def edit_rule(
    session: Session,
    principal: Principal,
    zone_id: str,
    ruleset_id: str,
    rule_id: str,
    raw: Mapping[str, Any],
    position: Mapping[str, Any] | None,
    *,
    now: datetime,
) -> dict[str, Any]:
    """Change the fields given (the others are kept) and/or move the rule."""
    zone = _zone(session, principal, zone_id, write=True)
    rs = _ruleset(session, zone, ruleset_id)
    rules = _rules_of(session, rs.id)
    row = next((r for r in rules if r.id == rule_id), None)
    if row is None:
        raise NotFound(f"rule {rule_id} was not found in ruleset {rs.id}", code=RULE_NOT_FOUND)
    if raw.get("id") is not None and raw["id"] != rule_id:
        raise BadRequest(
            f"id {quote(raw['id'])} in the body does not match the rule in the path ({rule_id})",
            code=INVALID_RULE,
            pointer="/id",
        )
    changes = {k: v for k, v in raw.items() if k in RULE_FIELDS}
    spec: RuleSpec | None = None
    if changes:
        merged: dict[str, Any] = {
            "action": row.action,
            "action_parameters": _load(row.action_parameters),
            "expression": row.expression,
            "description": row.description,
            "enabled": row.enabled,
            "ref": row.ref,
            "logging": _load(row.logging),
        }
        if "action" in changes and changes["action"] != row.action:
            # Parameters belong to an action: a new action starts without the old ones.
            merged["action_parameters"] = None
            merged["logging"] = None
        merged.update(changes)
        spec = validate_rule(merged, phase=rs.phase, kind=rs.kind, pointer="")
    others = [r.id for r in rules if r.id != rule_id]
    current_index = [r.id for r in rules].index(rule_id)
    at = _target_index(position, others, default=current_index, rule_id=rule_id)
    desired: list[Desired] = [(rid, None) for rid in others]
    desired.insert(at, (rule_id, spec))
    pointers = ["/ref"] * len(desired)
    return _apply(session, rs, desired, pointers, now=now)


def delete_rule(
    session: Session,
    principal: Principal,
    zone_id: str,
    ruleset_id: str,
    rule_id: str,
    *,
    now: datetime,
) -> dict[str, Any]:
    zone = _zone(session, principal, zone_id, write=True)
    rs = _ruleset(session, zone, ruleset_id)
    current = [r.id for r in _rules_of(session, rs.id)]
    if rule_id not in current:
        raise NotFound(f"rule {rule_id} was not found in ruleset {rs.id}", code=RULE_NOT_FOUND)
    desired: list[Desired] = [(rid, None) for rid in current if rid != rule_id]
    return _apply(session, rs, desired, ["/ref"] * len(desired), now=now)
