"""The OpenAPI description of held messages and owners' changes (mailrecv.api.moderation,
mailrecv.api.owner), merged into mailrecv.openapi's document."""

from __future__ import annotations

from typing import Any

from routemail import held, owners

TIME = {"type": "string", "format": "date-time"}
TEXT = {"type": "string"}
ADDRESSES = {"type": "array", "items": {"type": "string", "maxLength": 320}, "maxItems": 1000}
MSG_ID = {"name": "msg_id", "in": "path", "required": True, "schema": {"type": "string"}}


def schemas(obj: Any, ref: Any) -> dict[str, Any]:
    held_fields = {
        "id": TEXT,
        "from": TEXT,
        "subject": TEXT,
        "received": TIME,
        "reason": TEXT,
        "expires": TIME,
    }
    required = list(held_fields)
    attachment = obj(
        ["name", "type", "size"], name=TEXT, type=TEXT, size={"type": "integer", "minimum": 0}
    )
    nullable = {"type": "string", "nullable": True}
    return {
        "HeldMessage": obj(required, **held_fields),
        "HeldMessages": obj(["held"], held={"type": "array", "items": ref("HeldMessage")}),
        "HeldDetail": obj(
            [*required, "headers", "text", "attachments"],
            **held_fields,
            headers={"type": "object", "additionalProperties": TEXT},
            text=TEXT,
            attachments={"type": "array", "items": attachment},
        ),
        "Decision": obj(
            ["id", "list", "state", "by", "how", "at", "reason"],
            id=TEXT,
            list=TEXT,
            state={"type": "string", "enum": ["approved", "rejected", "discarded", "expired"]},
            by=nullable,
            how={"type": "string", "nullable": True, "enum": [*held.HOWS, None]},
            at=TIME,
            reason=nullable,
        ),
        "AlreadyDecided": obj(["error", "decision"], error=TEXT, decision=ref("Decision")),
        "MembersAdded": obj(
            ["list", "members"],
            list=TEXT,
            members={
                "type": "object",
                "additionalProperties": {
                    "type": "string",
                    "enum": ["added", "invited", "already a member"],
                },
            },
        ),
        "ListSettings": obj(
            ["name", "address", "description", "subject_prefix", "header", "footer", "posters"],
            name=TEXT,
            address=TEXT,
            description=TEXT,
            subject_prefix=TEXT,
            header=TEXT,
            footer=TEXT,
            posters={"oneOf": [TEXT, ADDRESSES]},
            moderators=ADDRESSES,
        ),
    }


def paths(
    op: Any, json: Any, ref: Any, name_param: dict[str, Any], body_errors: tuple[int, ...]
) -> dict[str, Any]:
    decide_in = {
        "type": "object",
        "required": ["action"],
        "properties": {
            "action": {"type": "string", "enum": list(held.ACTIONS)},
            "reason": {"type": "string", "maxLength": held.MAX_REASON},
        },
    }
    members_in = {
        "type": "object",
        "required": ["addresses"],
        "properties": {"addresses": {**ADDRESSES, "minItems": 1}, "invite": {"type": "boolean"}},
    }
    limits = owners.TEXT_SETTINGS
    settings_in = {
        "type": "object",
        "minProperties": 1,
        "properties": {
            **{key: {"type": "string", "maxLength": n} for key, n in limits.items()},
            "posters": {
                "oneOf": [
                    {"type": "string", "enum": ["members", "moderators", "anyone"]},
                    ADDRESSES,
                ]
            },
            "moderators": ADDRESSES,
        },
    }
    auth = (400, 401, 403, 404, 429)
    decide = op(
        "Decide on a held message", 200, "Decision", (*body_errors, *auth), decide_in, secured=True
    )
    decide["responses"]["409"] = {
        "description": "Decided before: what, by whom, how and when.",
        "content": json(ref("AlreadyDecided")),
    }
    return {
        "/lists/{name}/held": {
            "parameters": [name_param],
            "get": op("List held messages", 200, "HeldMessages", auth, secured=True),
        },
        "/lists/{name}/held/{msg_id}": {
            "parameters": [name_param, MSG_ID],
            "get": op("Show a held message", 200, "HeldDetail", (*auth, 409), secured=True),
            "post": decide,
        },
        "members_post": op(
            "Add members", 200, "MembersAdded", (*body_errors, *auth), members_in, secured=True
        ),
        "list_patch": op(
            "Change list settings",
            200,
            "ListSettings",
            (*body_errors, *auth),
            settings_in,
            secured=True,
        ),
    }
