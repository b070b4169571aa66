"""Validation of the lists in lists.toml: named [lists.NAME] and [[dynamic]] families."""

from __future__ import annotations

import re
from collections.abc import Mapping
from typing import Any

from routemail import addresses
from routemail.config import (
    LIST_NAME,
    POSTER_POLICIES,
    REPLY_TO,
    RESOLVERS,
    DynamicRule,
    MailingList,
    reserved_name,
)
from routemail.resolvers import OPTION_KEYS, check_options
from routemail.templates import check_template
from routemail.validation.checker import Checker, normalize_address

LIST_KEYS = {
    "description",
    "members",
    "moderators",
    "bcc",
    "posters",
    "subject_prefix",
    "header",
    "footer",
    "reply_to",
    "archive",
}
DYNAMIC_KEYS = {"pattern", "resolver", "description", "posters", "moderators"}


def named_lists(v: Checker, t: dict[str, Any]) -> dict[str, MailingList]:
    out: dict[str, MailingList] = {}
    for raw_name, lt in t.items():
        prefix = f"lists.{raw_name}"
        name = raw_name.lower()
        if not LIST_NAME.match(name):
            v.problem(prefix, "list names are lower-case letters, digits and . _ + -")
            continue
        if reserved := reserved_name(name):
            v.problem(prefix, f"{name!r} is reserved: {reserved}")
            continue
        if name in out:
            v.problem(prefix, f"list {name!r} is defined twice")
            continue
        if not isinstance(lt, dict):
            v.problem(prefix, "expected a table")
            continue
        v.unknown_keys(lt, prefix, LIST_KEYS)
        out[name] = MailingList(
            name=name,
            description=v.get(lt, "description", prefix, str, ""),
            members=v.addresses(lt, "members", prefix),
            moderators=v.addresses(lt, "moderators", prefix),
            bcc=v.addresses(lt, "bcc", prefix),
            posters=posters(v, lt, prefix, "members"),
            subject_prefix=v.get(lt, "subject_prefix", prefix, str, ""),
            header=str(v.get(lt, "header", prefix, str, "", check_template)),
            footer=str(v.get(lt, "footer", prefix, str, "", check_template)),
            reply_to=v.get(lt, "reply_to", prefix, str, "author", v.choice(REPLY_TO)),
            archive=v.get(lt, "archive", prefix, bool, True),
        )
    return out


def posters(v: Checker, t: Mapping[str, Any], prefix: str, default: str) -> str | tuple[str, ...]:
    value = t.get("posters", default)
    key = f"{prefix}.posters"
    if isinstance(value, str) and value in POSTER_POLICIES:
        return value
    if isinstance(value, list) and all(isinstance(x, str) for x in value):
        found = (v.address(x, key, f"{key}[{i}]") for i, x in enumerate(value))
        return tuple(a for a in found if a)
    v.problem(key, "expected members, moderators, anyone or a list of addresses")
    return default


def dynamic_rules(
    v: Checker, value: Any, lists: Mapping[str, MailingList]
) -> tuple[DynamicRule, ...]:
    if not isinstance(value, list):
        v.problem("dynamic", "expected [[dynamic]] tables")
        return ()
    rules = []
    for i, t in enumerate(value):
        prefix = f"dynamic[{i}]"
        if not isinstance(t, dict):
            v.problem(prefix, "expected a table")
            continue
        rule = dynamic_rule(v, t, prefix, i, lists)
        if rule:
            rules.append(rule)
    return tuple(rules)


def dynamic_rule(
    v: Checker, t: dict[str, Any], prefix: str, index: int, lists: Mapping[str, MailingList]
) -> DynamicRule | None:
    resolver = v.get(t, "resolver", prefix, str, None, v.choice(RESOLVERS))
    pattern_text = v.get(t, "pattern", prefix, str, None)
    if resolver is None or pattern_text is None:
        if "resolver" not in t or "pattern" not in t:
            v.problem(prefix, "a [[dynamic]] entry needs pattern and resolver")
        return None
    v.unknown_keys(t, prefix, DYNAMIC_KEYS | OPTION_KEYS[resolver])
    try:
        pattern = re.compile(pattern_text, re.IGNORECASE)
    except re.error as exc:
        v.problem(f"{prefix}.pattern", f"bad regular expression: {exc}")
        return None
    for name in lists:
        if pattern.fullmatch(name):
            v.problem(
                f"{prefix}.pattern",
                f"matches the named list {name!r}, which would hide it; narrow the pattern",
            )
    # moderators is either a list of addresses for every list of the pattern, or
    # (sqlite) a query, which belongs to the resolver's options.
    static_moderators = isinstance(t.get("moderators", []), list)
    options = {
        k: x
        for k, x in t.items()
        if k not in DYNAMIC_KEYS or (k == "moderators" and not static_moderators)
    }
    if not static_moderators and resolver != "sqlite":
        v.problem(f"{prefix}.moderators", "expected a list of addresses")
    for key, message in check_options(resolver, options, pattern):
        v.problem(f"{prefix}.{key}", message)
    return DynamicRule(
        pattern=pattern,
        resolver=resolver,
        description=v.get(t, "description", prefix, str, ""),
        posters=posters(v, t, prefix, "anyone"),
        moderators=v.addresses(t, "moderators", prefix) if static_moderators else (),
        options=options,
        index=index,
    )


def members_differing_in_case(v: Checker, t: Any) -> None:
    """For `routemail check`: two members of one list spelt alike but for case are
    one address (mail goes to the first spelling), so one entry is a mistake."""
    if not isinstance(t, dict):
        return  # reported by named_lists
    for raw_name, lt in t.items():
        values = lt.get("members") if isinstance(lt, dict) else None
        if not isinstance(values, list):
            continue
        key = f"lists.{raw_name}.members"
        first: dict[str, tuple[int, str]] = {}
        for i, value in enumerate(values):
            norm = normalize_address(value)
            if norm is None:
                continue
            j, earlier = first.setdefault(addresses.key(norm), (i, norm))
            if earlier != norm:
                v.problem(
                    key,
                    f"{earlier} ({_line(v, f'{key}[{j}]')}) and {norm} ({_line(v, f'{key}[{i}]')})"
                    " differ only in case, and addresses ignore case: they are one member;"
                    " remove one",
                    f"{key}[{i}]",
                )


def _line(v: Checker, key: str) -> str:
    line = v.line_of(key)
    return f"line {line}" if line else "line unknown"
