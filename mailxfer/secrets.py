"""The receiver's shared secret: from the environment, SSM Parameter Store or Secrets Manager."""

from __future__ import annotations

import os
from collections.abc import Mapping

_cache: dict[tuple[str, str], bytes] = {}


class SecretError(RuntimeError):
    """The shared secret cannot be had; the message names the setting to fix."""


def shared_secret(env: Mapping[str, str] | None = None, *, refresh: bool = False) -> bytes:
    """MAILRECV_SECRET, else the SSM SecureString MAILRECV_SECRET_SSM names, else the
    Secrets Manager secret MAILRECV_SECRET_ARN names.

    Looked-up secrets are kept for the life of the process (a warm Lambda);
    `refresh` fetches again, for after the receiver refused a signature.
    """
    env = os.environ if env is None else env
    if direct := env.get("MAILRECV_SECRET"):
        return direct.encode("utf-8")
    if name := env.get("MAILRECV_SECRET_SSM"):
        source = ("ssm", name)
    elif name := env.get("MAILRECV_SECRET_ARN"):
        source = ("secretsmanager", name)
    else:
        raise SecretError(
            "no shared secret: set MAILRECV_SECRET, or MAILRECV_SECRET_SSM to an SSM "
            "SecureString name, or MAILRECV_SECRET_ARN to a Secrets Manager secret"
        )
    if refresh or source not in _cache:
        _cache[source] = _fetch(*source)
    return _cache[source]


def _fetch(service: str, name: str) -> bytes:
    import boto3  # only the Lambda and `sweep` need it; `mailxfer post` starts faster without
    from botocore.exceptions import BotoCoreError, ClientError

    client = boto3.client(service)  # type: ignore[call-overload]
    try:
        if service == "ssm":
            value = client.get_parameter(Name=name, WithDecryption=True)["Parameter"]["Value"]
        else:
            value = client.get_secret_value(SecretId=name).get("SecretString", "")
    except ClientError as exc:
        error = exc.response.get("Error", {})
        setting = "MAILRECV_SECRET_SSM" if service == "ssm" else "MAILRECV_SECRET_ARN"
        raise SecretError(
            f"cannot read the shared secret {name!r} from {service} "
            f"({error.get('Code', '?')}: {error.get('Message', '')}); check {setting} "
            "and that this role may read it"
        ) from None
    except BotoCoreError as exc:
        raise SecretError(f"cannot reach {service} for the shared secret {name!r}: {exc}") from None
    value = str(value).strip()
    if not value:
        raise SecretError(f"the shared secret {name!r} in {service} is empty")
    return value.encode("utf-8")
