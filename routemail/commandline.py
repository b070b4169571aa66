"""Commands printed for people to paste: `routemail show ID` and its kin.

A queue id is base64url, so about one in 64 starts with '-'; on a command line
that reads as an option. Such an id is put after '--', which ends the options."""

from __future__ import annotations

import shlex


def routemail_command(verb: str, msg_id: str, *more: str, options: tuple[str, ...] = ()) -> str:
    """'routemail VERB OPTIONS... ID MORE...', with '--' before an id that starts with
    '-' (so options go before it: after '--' nothing is an option)."""
    dashes = ["--"] if msg_id.startswith("-") else []
    words = ["routemail", verb, *options, *dashes, msg_id, *more]
    return shlex.join(words)
