"""Reading a request: the JSON body, its fields, addresses and list names."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from flask import request

from mailrecv.api.context import ApiError, Context
from routemail import addresses
from routemail.config import LIST_NAME, MailingList
from routemail.rewrite import encode

MAX_SUBJECT = 200


def body() -> dict[str, Any]:
    try:
        data = request.get_json(silent=True)
    except RecursionError:  # nested deeper than the parser goes; silent= covers ValueError only
        raise ApiError(400, "the JSON body is nested too deeply") from None
    if not isinstance(data, dict):
        raise ApiError(400, "expected a JSON object body with Content-Type: application/json")
    return data


def text_field(data: Mapping[str, Any], key: str, limit: int, required: bool = True) -> str:
    value = data.get(key)
    if value is None and not required:
        return ""
    if not isinstance(value, str) or (required and not value):
        raise ApiError(400, f"{key}: expected a non-empty string")
    if len(value) > limit:
        raise ApiError(400, f"{key}: longer than {limit} characters")
    return value


def line_field(data: Mapping[str, Any], key: str, limit: int, required: bool = True) -> str:
    """A text field shown on one line (a subject, a description): no line breaks
    (U+2028 and NEL included) and no control characters."""
    value = text_field(data, key, limit, required)
    if encode.has_unwanted(value):
        raise ApiError(400, f"{key}: line breaks and control characters are not allowed")
    return value


def address(value: Any, key: str = "address") -> str:
    norm = addresses.normalize(value) if isinstance(value, str) else None
    if norm is None:
        shown = repr(value)[:80]
        raise ApiError(400, f"{key}: {shown} is not a plain email address like ann@example.com")
    return norm


def list_name(name: str) -> str:
    lowered = name.lower()
    if not LIST_NAME.match(lowered):
        raise ApiError(
            400,
            f"{name[:80]!r} is not a list name: use 1-64 lower-case letters, digits and . _ + -,"
            " starting and ending with a letter or digit",
        )
    return lowered


def token_field(data: Mapping[str, Any]) -> str:
    value = data.get("token")
    if not isinstance(value, str) or not 1 <= len(value) <= 200:
        raise ApiError(400, "token: expected the token from the mail")
    return value


def existing_list(ctx: Context, name: str) -> MailingList:
    mlist = ctx.config.lists.get(list_name(name))
    if mlist is None:
        raise ApiError(404, f"no list named {name!r}")
    return mlist
