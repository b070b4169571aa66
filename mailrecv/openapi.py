"""The OpenAPI 3 description of the list API, served at /api/v1/openapi.json."""

from __future__ import annotations

from typing import Any

from mailrecv import openapi_moderation
from routemail.config import LIST_NAME

MESSAGES = {
    400: "Malformed input: the message names the field and what is expected.",
    401: "Missing or wrong credentials (HTTP Basic: account address and password).",
    403: "Not allowed, or a wrong, used or expired token.",
    404: "No such list, member or message (or a message these credentials may not see).",
    409: "Conflicts with the current state (duplicate, administrator, pending account, "
    "an address on the suppression list).",
    413: "The request body is larger than api.max_request_bytes.",
    429: "Rate limited: too many failed attempts or confirmation mails; see Retry-After.",
    503: "The configuration, state database, spool or mail transport is unavailable; retry.",
}

EMAIL = {"type": "string", "maxLength": 320, "example": "ann@example.com"}
TOKEN = {"type": "string", "minLength": 1, "maxLength": 200}
LIST_NAME_SCHEMA = {"type": "string", "pattern": LIST_NAME.pattern, "maxLength": 64}


def _ref(name: str) -> dict[str, str]:
    return {"$ref": f"#/components/schemas/{name}"}


def _obj(required: list[str], **props: Any) -> dict[str, Any]:
    return {"type": "object", "required": required, "properties": props}


def _json(schema: dict[str, Any]) -> dict[str, Any]:
    return {"application/json": {"schema": schema}}


def _op(
    summary: str,
    ok: int,
    result: str,
    errors: tuple[int, ...],
    body: dict[str, Any] | None = None,
    secured: bool = False,
    optional_auth: bool = False,
) -> dict[str, Any]:
    op: dict[str, Any] = {
        "summary": summary,
        "operationId": "".join(w.capitalize() for w in summary.split()[:4]),
        "responses": {
            str(ok): {"description": "Success", "content": _json(_ref(result))},
            **{
                str(code): {"$ref": f"#/components/responses/E{code}"}
                for code in sorted({*errors, 503})
            },
        },
    }
    if body is not None:
        op["requestBody"] = {"required": True, "content": _json(body)}
    if secured:
        op["security"] = [{"basic": []}]
    elif optional_auth:
        op["security"] = [{}, {"basic": []}]
    return op


NAME_PARAM = {"name": "name", "in": "path", "required": True, "schema": LIST_NAME_SCHEMA}
IN = (400, 413, 429)  # any endpoint taking a JSON body may answer these


def _timeline_schemas() -> dict[str, Any]:
    """The message timeline of GET /messages/{id} (routemail.timeline)."""
    time = {"type": "string", "nullable": True, "example": "2026-11-23T19:52:13Z"}
    text = {"type": "string"}
    step = {
        **_obj(["at", "detail"], at=time, detail=text, by=text, ref=text),
        "nullable": True,
    }
    step_ref = {"allOf": [_ref("Step")], "nullable": True}
    return {
        "Step": step,
        "ListState": _obj(
            ["list", "status", "held", "approved", "rejected", "expired", "finished"],
            list=text,
            status={
                "type": "string",
                "enum": [
                    "pending",
                    "held",
                    "approved",
                    "rejected",
                    "discarded",
                    "expired",
                    "finished",
                ],
            },
            **{
                k: step_ref
                for k in ("held", "approved", "rejected", "discarded", "expired", "finished")
            },
        ),
        "RecipientState": _obj(
            ["address", "status", "queued", "sent", "deferred", "gave_up", "suppressed"],
            address=text,
            status={
                "type": "string",
                "enum": [
                    "queued",
                    "sent",
                    "deferred",
                    "delayed",
                    "gave_up",
                    "suppressed",
                    "delivered",
                    "bounced",
                    "complained",
                ],
            },
            queued=time,
            deferred={
                **_obj(
                    ["attempts", "last_error", "at"],
                    attempts={"type": "integer", "minimum": 0},
                    last_error=text,
                    at=time,
                ),
                "nullable": True,
            },
            **{
                k: step_ref
                for k in (
                    "sent",
                    "gave_up",
                    "suppressed",
                    "delayed",
                    "delivered",
                    "bounced",
                    "complained",
                )
            },
        ),
        "Timeline": _obj(
            ["id", "state", "transactional", "received", "lists", "recipients"],
            id=text,
            state={"type": "string", "enum": ["pending", "held", "done", "discarded"]},
            message_id={"type": "string", "nullable": True},
            subject={"type": "string", "nullable": True},
            transactional={"type": "boolean"},
            received=_obj(
                ["at", "destinations", "verdicts", "receipts"],
                at=time,
                destinations={"type": "array", "items": text},
                verdicts={"type": "object", "additionalProperties": text},
                receipts={"type": "integer", "minimum": 0},
            ),
            lists={"type": "array", "items": _ref("ListState")},
            forwarded={
                "type": "array",
                "items": _obj(["at", "destination"], at=time, destination=text, to=text),
            },
            discarded={
                "type": "array",
                "items": _obj(
                    ["at", "destination", "reason"], at=time, destination=text, reason=text
                ),
            },
            recipients={"type": "array", "items": _ref("RecipientState")},
            **{"from": {"type": "string", "nullable": True}},
        ),
    }


def document() -> dict[str, Any]:
    status = {"type": "string"}
    schemas = {
        "Error": _obj(["error"], error={"type": "string"}),
        "Queued": _obj(
            ["id", "recipients", "status"],
            id={"type": "string"},
            recipients={"type": "integer", "minimum": 1},
            status={"type": "string", "enum": ["queued"]},
        ),
        "Account": _obj(["email", "status"], email=EMAIL, status=status),
        "List": _obj(
            ["name", "address", "description", "posters", "member_count"],
            name={"type": "string"},
            address={"type": "string"},
            description={"type": "string"},
            posters={"type": "string", "enum": ["members", "moderators", "anyone", "listed"]},
            member_count={"type": "integer", "minimum": 0},
        ),
        "Lists": _obj(["lists"], lists={"type": "array", "items": _ref("List")}),
        "Members": _obj(
            ["list", "members"], list={"type": "string"}, members={"type": "array", "items": EMAIL}
        ),
        "Membership": _obj(
            ["list", "address", "status"],
            list={"type": "string"},
            address=EMAIL,
            status={"type": "string", "enum": ["pending", "member", "removed"]},
        ),
        "Post": _obj(
            ["list", "from", "status"],
            list={"type": "string"},
            status={"type": "string", "enum": ["pending", "queued"]},
            id={"type": "string", "description": "the spool id, once queued"},
            **{"from": EMAIL},
        ),
    }
    schemas.update(_timeline_schemas())
    schemas.update(openapi_moderation.schemas(_obj, _ref))
    account_in = {
        **_obj(["email"], email=EMAIL),
        "description": "No password: whoever verifies the account with the mailed token"
        " chooses it (a password here answers 400).",
    }
    email_in = _obj(["email"], email=EMAIL)
    password = {"type": "string", "minLength": 10, "maxLength": 1024}
    verify_in = _obj(["email", "token", "password"], email=EMAIL, token=TOKEN, password=password)
    address_in = _obj(["address"], address=EMAIL)
    confirm_in = _obj(["address", "token"], address=EMAIL, token=TOKEN)
    list_in = _obj(
        ["name"],
        name=LIST_NAME_SCHEMA,
        description={"type": "string", "maxLength": 200},
        posters={"type": "string", "enum": ["members", "moderators", "anyone"]},
    )
    post_in = _obj(
        ["from", "subject", "body"],
        subject={"type": "string", "minLength": 1, "maxLength": 200},
        body={"type": "string", "minLength": 1},
        **{"from": EMAIL},
    )
    send_in = _obj(
        ["to", "subject", "text"],
        to={"type": "array", "minItems": 1, "maxItems": 1000, "items": EMAIL},
        subject={"type": "string", "minLength": 1, "maxLength": 200},
        text={"type": "string", "minLength": 1},
        html={"type": "string"},
        reply_to=EMAIL,
        **{"from": {"type": "string", "maxLength": 64, "description": "local part"}},
    )
    paths: dict[str, Any] = {
        "/accounts": {
            "post": _op("Request a moderator account", 202, "Account", (*IN, 409), account_in)
        },
        "/accounts/verify": {
            "post": _op("Verify a moderator account", 200, "Account", (*IN, 403, 404), verify_in)
        },
        "/accounts/password-reset": {
            "post": _op("Ask for a password reset", 202, "Account", IN, email_in)
        },
        "/accounts/password-reset/confirm": {
            "post": _op("Reset the password", 200, "Account", (*IN, 403), verify_in)
        },
        "/lists": {
            "get": _op("List the lists", 200, "Lists", ()),
            "post": _op("Create a list", 201, "List", (*IN, 401, 403, 409), list_in, secured=True),
        },
        "/lists/{name}": {
            "parameters": [NAME_PARAM],
            "get": _op("Show a list", 200, "List", (400, 404)),
        },
        "/lists/{name}/members": {
            "parameters": [NAME_PARAM],
            "get": _op("List the members", 200, "Members", (400, 401, 403, 404, 429), secured=True),
        },
        "/lists/{name}/members/{address}": {
            "parameters": [
                NAME_PARAM,
                {"name": "address", "in": "path", "required": True, "schema": EMAIL},
            ],
            "delete": _op(
                "Remove a member",
                200,
                "Membership",
                (400, 401, 403, 404, 409, 429),
                secured=True,
            ),
        },
        "/lists/{name}/subscriptions": {
            "parameters": [NAME_PARAM],
            "post": _op("Ask to subscribe", 202, "Membership", (*IN, 404, 409), address_in),
        },
        "/lists/{name}/subscriptions/confirm": {
            "parameters": [NAME_PARAM],
            "post": _op("Confirm a subscription", 200, "Membership", (*IN, 403, 404), confirm_in),
        },
        "/lists/{name}/unsubscriptions": {
            "parameters": [NAME_PARAM],
            "post": _op("Ask to unsubscribe", 202, "Membership", (*IN, 404, 409), address_in),
        },
        "/lists/{name}/unsubscriptions/confirm": {
            "parameters": [NAME_PARAM],
            "post": _op(
                "Confirm an unsubscription",
                200,
                "Membership",
                (*IN, 403, 404, 409),
                confirm_in,
            ),
        },
        "/lists/{name}/messages": {
            "parameters": [NAME_PARAM],
            "post": _op(
                "Post a message",
                202,
                "Post",
                (*IN, 401, 403, 404, 409),
                post_in,
                optional_auth=True,
            ),
        },
        "/send": {
            "post": {
                **_op("Send transactional mail", 202, "Queued", (*IN, 401), send_in),
                "security": [{"bearer": []}],
            }
        },
        "/messages/{id}": {
            "parameters": [
                {
                    "name": "id",
                    "in": "path",
                    "required": True,
                    "schema": {"type": "string", "maxLength": 200},
                    "description": "the queue id (22 characters of A-Z a-z 0-9 _ -)",
                }
            ],
            "get": {
                **_op("Show a message's timeline", 200, "Timeline", (401, 403, 404, 429)),
                "security": [{"basic": []}, {"bearer": []}],
                "description": "For the moderators and administrator of the message's lists"
                " (Basic), and for transactional mail the send key (Bearer). Anyone else gets"
                " the 404 of an id that names nothing.",
            },
        },
        "/lists/{name}/messages/confirm": {
            "parameters": [NAME_PARAM],
            "post": _op("Confirm a message", 202, "Post", (*IN, 403, 404), confirm_in),
        },
    }
    moderation = openapi_moderation.paths(_op, _json, _ref, NAME_PARAM, IN)
    paths["/lists/{name}"]["patch"] = moderation.pop("list_patch")
    paths["/lists/{name}/members"]["post"] = moderation.pop("members_post")
    paths.update(moderation)
    responses = {
        f"E{code}": {
            "description": text,
            "content": _json(_ref("Error")),
            **(
                {"headers": {"Retry-After": {"schema": {"type": "integer"}}}} if code == 429 else {}
            ),
        }
        for code, text in MESSAGES.items()
    }
    return {
        "openapi": "3.0.3",
        "info": {
            "title": "routemail list API",
            "version": "1",
            "description": "Moderator accounts, lists, subscriptions and posting; see docs/api.md.",
        },
        "servers": [{"url": "/api/v1"}],
        "components": {
            "schemas": schemas,
            "responses": responses,
            "securitySchemes": {
                "basic": {"type": "http", "scheme": "basic"},
                "bearer": {"type": "http", "scheme": "bearer"},
            },
        },
        "paths": paths,
    }
