"""List owners' changes: members, settings, creating and deleting lists.

The API, the web pages, the CLI and mail all change lists.toml through here.
Each change is routemail.listedit's style-preserving, locked, validated and
atomic edit, and a line in log/YYYY-MM saying who changed what and how
(`TIME - LIST: WHAT by WHO (HOW)`). A member added directly gets a welcome
mail with a link to leave; an invited one a link to confirm (the API's
subscription confirmation). Both are queued as routemail's own mail, so a
run sends them with the usual retries.
"""

from __future__ import annotations

import math
import urllib.parse
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from routemail import addresses, compose, listedit, notify, outgoing, tokens
from routemail.actionlog import ActionLog
from routemail.config import POSTER_POLICIES, Config, MailingList, load, reserved_name
from routemail.rewrite import encode
from routemail.spool import Spool
from routemail.state import State

TEXT_SETTINGS = {"description": 200, "subject_prefix": 100, "header": 4000, "footer": 4000}
ONE_LINE = ("description", "subject_prefix")
SETTINGS = (*TEXT_SETTINGS, "posters", "moderators")
MAX_ADDRESSES = 1000  # addresses in one change (members added, moderators, posters)
INVITE_HOURS = 48.0


class OwnerError(listedit.ListEditError):
    """A change that cannot be made as asked; the message says why."""


@dataclass(frozen=True)
class Actor:
    """Who makes a change, and how: web, api, mail or shell."""

    who: str
    how: str

    def __str__(self) -> str:
        return f"{self.who} ({self.how})"


def named_list(config: Config, name: str) -> MailingList:
    """The list in lists.toml; a dynamic list's members and settings are not routemail's
    to change."""
    mlist = config.lists.get(name.lower())
    if mlist is None:
        raise listedit.NoSuchList(f"no list named {name!r} in {config.path.name}")
    return mlist


def administrator(config: Config, spool: Spool, mlist: MailingList) -> str | None:
    with State.open(spool.root.parent) as state:
        return state.list_administrator(mlist)


# -- members ---------------------------------------------------------------------


def add_members(
    config: Config,
    spool: Spool,
    name: str,
    members: Sequence[str],
    actor: Actor,
    invite: bool = False,
) -> dict[str, str]:
    """Add each address (welcome mail), or with invite mail each a confirmation link;
    {address: "added", "invited" or "already a member"}."""
    mlist = named_list(config, name)
    wanted = _addresses(members, "members")
    outcome: dict[str, str] = {}
    with State.open(spool.root.parent) as state:
        for who in wanted:
            if addresses.contains(mlist.members, who):
                outcome[who] = "already a member"
            elif invite:
                _invite(config, spool, state, mlist, who, actor)
                outcome[who] = "invited"
            elif _edit_member(config, state, mlist, who, add=True):
                log_change(spool, mlist.name, f"added member {who}", actor)
                _welcome(config, spool, state, mlist, who)
                outcome[who] = "added"
            else:
                outcome[who] = "already a member"
    return outcome


def remove_members(
    config: Config, spool: Spool, name: str, members: Sequence[str], actor: Actor
) -> dict[str, str]:
    """Remove each address; {address: "removed" or "not a member"}. The list's
    administrator is never removed."""
    mlist = named_list(config, name)
    wanted = _addresses(members, "members")
    outcome: dict[str, str] = {}
    with State.open(spool.root.parent) as state:
        admin = state.list_administrator(mlist)
        if admin and any(addresses.same(admin, who) for who in wanted):
            raise OwnerError(f"{admin} administers {mlist.name} and cannot be removed")
        for who in wanted:
            if _edit_member(config, state, mlist, who, add=False):
                log_change(spool, mlist.name, f"removed member {who}", actor)
                outcome[who] = "removed"
            else:
                outcome[who] = "not a member"
    return outcome


def _edit_member(config: Config, state: State, mlist: MailingList, who: str, add: bool) -> bool:
    """Add or remove who in lists.toml; a change retires the one-click unsubscribe links
    of copies sent before it."""
    edit = listedit.add_member if add else listedit.remove_member
    with state.transaction() as db:
        changed = edit(config.path, mlist.name, who)
        if changed:
            state.membership_changed(db, mlist.name, who)
    return changed


def _welcome(config: Config, spool: Spool, state: State, mlist: MailingList, who: str) -> None:
    site = config.site
    secret = tokens.load_secret(spool.root.parent)
    # Issued no earlier than the change just noted, so the link is not taken for an old one.
    issued = math.ceil(state.membership_changed_at(mlist.name, who))
    leave = tokens.unsubscribe_url(site, secret, mlist.name, who, issued)
    _queue(
        config,
        spool,
        mlist,
        who,
        f"Welcome to {mlist.name}",
        f"You have been added to the list {mlist.name} ({mlist.name}@{site.domain})"
        f"{': ' + mlist.description if mlist.description else ''}.\n\n"
        f"To write to everyone on it, send mail to {mlist.name}@{site.domain}.\n"
        f"To leave the list, open\n\n  {leave}\n\nand press the button.\n",
    )


def _invite(
    config: Config, spool: Spool, state: State, mlist: MailingList, who: str, actor: Actor
) -> None:
    site = config.site
    lifetime = config.api.token_hours * 3600
    issued = state.issue("subscribe", who, lifetime, mlist.name)
    query = urllib.parse.urlencode({"address": who, "token": issued.token})
    url = f"{site.base_url}/lists/{urllib.parse.quote(mlist.name, safe='')}/confirm?{query}"
    _queue(
        config,
        spool,
        mlist,
        who,
        f"Invitation to {mlist.name}",
        f"{actor.who} invites you to the list {mlist.name} ({mlist.name}@{site.domain})"
        f"{': ' + mlist.description if mlist.description else ''}.\n\n"
        f"To join, open\n\n  {url}\n\nand press the button. The link works for"
        f" {lifetime / 3600:g} hours. If you do not want to join, ignore this mail.\n",
    )
    log_change(spool, mlist.name, f"invited {who}", actor)


def _queue(
    config: Config, spool: Spool, mlist: MailingList, to: str, subject: str, text: str
) -> None:
    site = config.site
    fields = [
        compose.addresses("From", [(f"{mlist.name} owner", f"{mlist.name}-owner@{site.domain}")]),
        compose.addresses("To", [("", to)]),
        compose.subject(subject),
        *compose.standard(site.domain),
        compose.made("Auto-Submitted", "auto-generated"),
    ]
    outgoing.queue(config, spool, compose.message(fields, text), [to])


# -- settings --------------------------------------------------------------------


def update_settings(
    config: Config,
    spool: Spool,
    name: str,
    changes: Mapping[str, Any],
    actor: Actor,
    keep_moderator: str | None = None,
) -> list[str]:
    """Change the list's settings (SETTINGS; "" removes a text setting); the keys that
    changed. keep_moderator, when given, must stay a moderator."""
    mlist = named_list(config, name)
    values = {key: _setting(key, value) for key, value in changes.items()}
    moderators = values.get("moderators")
    if (
        keep_moderator
        and moderators is not None
        and not addresses.contains(moderators, keep_moderator)
    ):
        raise OwnerError(f"moderators: {keep_moderator} administers the list and stays one")
    if moderators is not None:
        # A list written by hand is administered by its first moderator: pin that
        # before the moderators change, so reordering them hands nothing over.
        with State.open(spool.root.parent) as state:
            if (admin := state.list_administrator(mlist)) and not state.administrator(mlist.name):
                with state.transaction() as db:
                    state.set_administrator(db, mlist.name, admin)
    changed = listedit.set_keys(config.path, mlist.name, values)
    for key in changed:
        log_change(spool, mlist.name, f"set {key} = {_shown(values[key])}", actor)
    return changed


def _setting(key: str, value: Any) -> str | list[str] | None:
    if key in TEXT_SETTINGS:
        if not isinstance(value, str):
            raise OwnerError(f"{key}: expected a string")
        if len(value) > TEXT_SETTINGS[key]:
            raise OwnerError(f"{key}: longer than {TEXT_SETTINGS[key]} characters")
        if key in ONE_LINE and encode.has_unwanted(value):
            raise OwnerError(f"{key}: line breaks and control characters are not allowed")
        return value
    if key == "posters":
        if isinstance(value, str) and value in POSTER_POLICIES:
            return value
        if isinstance(value, list):
            return _addresses(value, "posters")
        raise OwnerError("posters: expected members, moderators, anyone or a list of addresses")
    if key == "moderators":
        if not isinstance(value, list):
            raise OwnerError("moderators: expected a list of addresses")
        return _addresses(value, "moderators")
    raise OwnerError(f"{key!r} is not a setting an owner changes: use {', '.join(SETTINGS)}")


def _shown(value: str | list[str] | None) -> str:
    text = repr(value) if isinstance(value, str) else ", ".join(value or []) or "(none)"
    return text if len(text) <= 120 else text[:117] + "..."


# -- lists -----------------------------------------------------------------------


def create_list(
    config: Config,
    spool: Spool,
    name: str,
    admin: str,
    actor: Actor,
    description: str = "",
    posters: str = "members",
) -> MailingList:
    """A new list administered by admin (its moderator and first member)."""
    name = name.lower()
    if addresses.normalize(f"{name}@{config.site.domain}") is None:
        raise OwnerError(f"{name!r} cannot be the local part of an address")
    if reserved := reserved_name(name):
        raise OwnerError(f"{name!r} is reserved: {reserved}")
    if name in {addresses.split(config.site.admin)[0], notify.SENDER_LOCAL}:
        raise listedit.ListExists(f"{name!r} is already used by the site")
    if posters not in POSTER_POLICIES:
        raise OwnerError("posters: expected members, moderators or anyone")
    _setting("description", description)
    with State.open(spool.root.parent) as state, state.transaction() as db:
        listedit.add_list(config.path, name, admin, description, posters)
        state.set_administrator(db, name, admin)
    log_change(spool, name, f"created the list, administered by {admin}", actor)
    return load(config.path).lists[name]


def delete_list(config: Config, spool: Spool, name: str, actor: Actor) -> None:
    """Remove the list from lists.toml (messages held for it stay until they expire)."""
    mlist = named_list(config, name)
    with State.open(spool.root.parent) as state, state.transaction() as db:
        listedit.remove_list(config.path, mlist.name)
        state.forget_administrator(db, mlist.name)
    log_change(spool, mlist.name, "deleted the list", actor)


# -- shared ----------------------------------------------------------------------


def _addresses(values: Iterable[Any], key: str) -> list[str]:
    found = list(values)
    if len(found) > MAX_ADDRESSES:
        raise OwnerError(f"{key}: at most {MAX_ADDRESSES} addresses at a time")
    out: list[str] = []
    for value in found:
        norm = addresses.normalize(value) if isinstance(value, str) else None
        if norm is None:
            raise OwnerError(
                f"{key}: {str(value)[:80]!r} is not a plain address like ann@example.com"
            )
        if not addresses.contains(out, norm):
            out.append(norm)
    return out


def log_change(spool: Spool, listname: str, what: str, actor: Actor) -> None:
    """The log line of a change to lists.toml: `LIST: WHAT by WHO (HOW)`."""
    log = ActionLog(spool.root / "log")
    try:
        log.write("-", f"{listname}: {what} by {actor}")
    finally:
        log.close()
