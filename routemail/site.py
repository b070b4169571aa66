"""A new site, as `routemail init` makes it: lists.toml with [site] from the answers,
the data directory, and the environment file holding the receiver's secret.

Nothing is overwritten: a place that holds a site already is refused before
anything is written, and so are answers that lists.toml would not accept.
"""

from __future__ import annotations

import json
import os
import pwd
import re
import secrets
import string
from dataclasses import dataclass
from pathlib import Path

from routemail import config as configmod
from routemail.errors import ConfigError, RoutemailError
from routemail.spool import Spool

CONFIG_NAME = "lists.toml"
ENV_NAME = "env"
DATA_MODE = 0o750  # the service user and its group: queued mail is private
ENV_MODE = 0o600  # secrets: readable by its owner only (systemd reads it as root)
ENV_GROUP_MODE = 0o640  # with --user: the service user reads it through its group
CONFIG_MODE = 0o644
SECRET_BYTES = 32
# Characters an environment file value may hold unquoted (systemd and sh agree on these).
PLAIN_VALUE = re.compile(r"[A-Za-z0-9_@%+=:,./-]*")

CONFIG_TEMPLATE = string.Template("""\
# routemail lists: the single truth about your lists and their members.
#
# A starting point: `routemail init` writes this file with your answers.
# examples/lists.toml in the source shows a complete site with dynamic
# lists. Every key is explained in docs/configuration.md, and
# `routemail check` validates the file (line and key of every mistake).
# Secrets never go here: they live in the environment (the file `env` that
# `routemail init` writes beside this one).

[site]
# The domain your list addresses are on: list volunteers is volunteers@domain.
domain = $domain
# Mail to unknown addresses, and problems, go here.
admin = $admin
# The public URL of the receiver, for unsubscribe and confirmation links.
base_url = $base_url

[delivery]
# outbox (a Maildir under the data directory, no network) | smtp | ses
transport = "outbox"

# A list: mail to volunteers@<domain> reaches every member.
#
# [lists.volunteers]
# description = "All volunteers"
# moderators = ["coordinator@example.org"]
# posters = "members"                  # members | moderators | anyone | [addresses]
# members = [
#     "ann@example.com",
#     "bob@example.net",
# ]
# subject_prefix = "[volunteers]"
# footer = "You are on {list} as {recipient}. Leave: {unsubscribe_url}"
""")

ENV_TEMPLATE = string.Template("""\
# routemail's environment: the systemd units read it (EnvironmentFile=), and a
# shell takes it with `set -a; . $env_path; set +a`. Secrets live here, never
# in lists.toml; keep the file mode 0600 and back it up with the data.
ROUTEMAIL_CONFIG=$config_path
ROUTEMAIL_DATA=$data_dir
# The secret shared with mailxfer (the Lambda and `mailxfer post`) to sign posts.
MAILRECV_SECRET=$secret
# With [delivery] transport = "smtp" and a username: the password, in the
# variable [delivery.smtp] password_env names.
#ROUTEMAIL_SMTP_PASSWORD=
# The key for POST /api/v1/send ([api] send_key_env).
#ROUTEMAIL_SEND_KEY=
# The key that signs webhook deliveries ([webhooks] secret_env).
#ROUTEMAIL_WEBHOOK_SECRET=
# With [delivery] transport = "ses": AWS credentials, unless the machine has a
# role (an EC2 instance profile is better than keys in a file).
#AWS_ACCESS_KEY_ID=
#AWS_SECRET_ACCESS_KEY=
#AWS_DEFAULT_REGION=
""")


@dataclass(frozen=True)
class Answers:
    domain: str
    admin: str
    base_url: str


@dataclass(frozen=True)
class NewSite:
    config_path: Path
    env_path: Path
    data_dir: Path


def render_config(answers: Answers) -> str:
    """lists.toml for the answers; TOML basic strings take JSON's escapes."""
    return CONFIG_TEMPLATE.substitute(
        domain=json.dumps(answers.domain),
        admin=json.dumps(answers.admin),
        base_url=json.dumps(answers.base_url),
    )


def create(config_dir: Path, data_dir: Path, answers: Answers, user: str | None = None) -> NewSite:
    """Make the site; RoutemailError, with nothing written, if one is there already."""
    config_dir, data_dir = config_dir.resolve(), data_dir.resolve()
    site = NewSite(config_dir / CONFIG_NAME, config_dir / ENV_NAME, data_dir)
    text = render_config(answers)
    _check_answers(text, site.config_path)
    owner = _user(user)
    _refuse_existing(site)
    env = ENV_TEMPLATE.substitute(
        env_path=_env_value(site.env_path),
        config_path=_env_value(site.config_path),
        data_dir=_env_value(data_dir),
        secret=secrets.token_hex(SECRET_BYTES),
    )
    config_dir.mkdir(parents=True, exist_ok=True)
    _write_new(site.config_path, text, CONFIG_MODE)
    _write_new(site.env_path, env, ENV_MODE)
    data_dir.mkdir(parents=True, exist_ok=True)
    data_dir.chmod(DATA_MODE)
    Spool(data_dir / "maillist").ensure()
    if owner is not None:
        _give(owner, site)
    return site


def _check_answers(text: str, config_path: Path) -> None:
    """An answer lists.toml would refuse, named by the flag that gave it."""
    try:
        configmod.parse(text, config_path)
    except ConfigError as exc:
        flags = {"site.domain": "--domain", "site.admin": "--admin", "site.base_url": "--base-url"}
        raise RoutemailError(
            "; ".join(f"{flags.get(p.key, p.key)}: {p.message}" for p in exc.details)
        ) from None


def _refuse_existing(site: NewSite) -> None:
    found = [p for p in (site.config_path, site.env_path) if p.exists()]
    if site.data_dir.exists() and (not site.data_dir.is_dir() or any(site.data_dir.iterdir())):
        found.append(site.data_dir)
    if found:
        raise RoutemailError(
            f"{', '.join(map(str, found))} already exist{'s' if len(found) == 1 else ''}: "
            "routemail init never overwrites a site; choose other directories, or move "
            "these away first"
        )


def _env_value(path: Path) -> str:
    text = str(path)
    if PLAIN_VALUE.fullmatch(text):
        return text
    if any(c in text for c in '"\\$`\n'):
        raise RoutemailError(f"{text}: choose a path without quotes, $, ` or backslashes")
    return f'"{text}"'


def _write_new(path: Path, text: str, mode: int) -> None:
    """Create path with mode from the start (a secret is never readable by others)."""
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, mode)
    with os.fdopen(fd, "w", encoding="utf-8") as f:
        f.write(text)
        f.flush()
        os.fsync(f.fileno())
    path.chmod(mode)  # the umask may have taken bits away


def _user(name: str | None) -> pwd.struct_passwd | None:
    if name is None:
        return None
    try:
        owner = pwd.getpwnam(name)
    except KeyError:
        raise RoutemailError(
            f"no user {name!r}; create it first (useradd --system {name})"
        ) from None
    if os.geteuid() != 0 and owner.pw_uid != os.geteuid():
        raise RoutemailError(f"only root can give the site to {name}; run init with sudo")
    return owner


def _give(owner: pwd.struct_passwd, site: NewSite) -> None:
    """The service user edits lists.toml (the API does, beside it) and owns the data;
    it may read the environment file through its group, never write it."""
    for path in (site.config_path.parent, site.config_path):
        os.chown(path, owner.pw_uid, owner.pw_gid)
    os.chown(site.env_path, -1, owner.pw_gid)
    site.env_path.chmod(ENV_GROUP_MODE)
    for root, dirs, files in os.walk(site.data_dir):
        for name in (root, *(os.path.join(root, n) for n in (*dirs, *files))):
            os.chown(name, owner.pw_uid, owner.pw_gid)
