"""The `mailxfer` command: post a message file to the receiver, or sweep the bucket, signed."""

from __future__ import annotations

import argparse
import os
import sys
from collections.abc import Sequence

from mailxfer import __version__
from mailxfer.post import NotAReceipt, post_message, receipt_of
from mailxfer.secrets import SecretError, shared_secret
from mailxfer.signing import VERDICT_NAMES
from mailxfer.sweep import DEFAULT_AGE, parse_age, sweep

DEFAULT_URL = "http://127.0.0.1:8025/mailrecv"


def _verdicts(text: str) -> dict[str, str]:
    verdicts = dict.fromkeys(VERDICT_NAMES, "PASS")
    for item in text.split():
        name, _, value = item.partition("=")
        if name not in VERDICT_NAMES or not value:
            raise argparse.ArgumentTypeError(
                f"{item!r}: expected name=VALUE with name in " + ", ".join(VERDICT_NAMES)
            )
        verdicts[name] = value.upper()
    return verdicts


def _secret() -> bytes:
    secret = os.environ.get("MAILRECV_SECRET", "")
    if not secret:
        raise SystemExit(
            "mailxfer: MAILRECV_SECRET is not set; export the receiver's shared secret"
        )
    return secret.encode("utf-8")


def cmd_post(args: argparse.Namespace) -> int:
    secret = _secret()
    try:
        stream = sys.stdin.buffer if args.file == "-" else open(args.file, "rb")  # noqa: SIM115
    except OSError as exc:
        raise SystemExit(f"mailxfer: cannot read {args.file}: {exc.strerror}") from exc
    if args.file == "-":
        import io

        stream = io.BytesIO(stream.read())
    with stream:
        try:
            result = post_message(args.url, secret, stream, args.to, args.verdicts)
        except OSError as exc:
            raise SystemExit(f"mailxfer: cannot reach {args.url}: {exc}") from exc
    if args.json:
        print(result.body.strip())
    try:
        receipt = receipt_of(result)
    except NotAReceipt as exc:
        print(f"mailxfer: {args.url} {exc}", file=sys.stderr)
        return 1
    if not args.json:
        print(f"{receipt.id} (duplicate)" if receipt.duplicate else receipt.id)
    return 0


def _age(text: str) -> float:
    try:
        return parse_age(text)
    except ValueError as exc:
        raise argparse.ArgumentTypeError(str(exc)) from None


def cmd_sweep(args: argparse.Namespace) -> int:
    def secret(refresh: bool) -> bytes:
        return shared_secret(refresh=refresh)

    try:
        secret(False)
    except SecretError as exc:
        raise SystemExit(f"mailxfer: {exc}") from None
    import boto3
    from botocore.exceptions import BotoCoreError, ClientError

    domains = [d for d in os.environ.get("MAILXFER_DOMAINS", "").split(",") if d.strip()]
    try:
        report = sweep(
            boto3.client("s3"),
            args.bucket,
            args.prefix,
            args.older_than,
            args.url,
            secret,
            domains=domains,
        )
    except (BotoCoreError, ClientError) as exc:
        raise SystemExit(f"mailxfer: cannot list s3://{args.bucket}/{args.prefix}: {exc}") from None
    for key in report.delivered:
        note = " (already queued)" if key in report.duplicates else ""
        print(f"delivered s3://{args.bucket}/{key}{note}")
    for _key, reason in report.needs_person:
        print(f"mailxfer: NEEDS A PERSON: {reason}", file=sys.stderr)
    for _key, reason in report.failed:
        print(f"mailxfer: {reason}", file=sys.stderr)
    print(report.summary())
    return 0 if report.ok else 1


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="mailxfer", description=__doc__)
    parser.add_argument("--version", action="version", version=f"mailxfer {__version__}")
    sub = parser.add_subparsers(dest="command", required=True)
    receiver = argparse.ArgumentParser(add_help=False)  # what both commands post to
    receiver.add_argument(
        "--url",
        default=os.environ.get("MAILRECV_URL", DEFAULT_URL),
        help="receiver URL (default: $MAILRECV_URL or %(default)s)",
    )
    post = sub.add_parser(
        "post",
        parents=[receiver],
        help="sign and POST a message file (or - for stdin) to the receiver; "
        "prints the queue id it was given",
    )
    post.add_argument("file", help="the raw RFC 5322 message, or - to read standard input")
    post.add_argument(
        "--to",
        action="append",
        required=True,
        metavar="ADDR",
        help="an envelope recipient (repeatable)",
    )
    post.add_argument(
        "--verdicts",
        type=_verdicts,
        default=_verdicts(""),
        help='SES verdicts to vouch for, e.g. "spf=FAIL" (others PASS)',
    )
    post.add_argument(
        "--json",
        action="store_true",
        help="print the receiver's answer as it came (JSON) instead of the queue id",
    )
    post.set_defaults(func=cmd_post)
    sw = sub.add_parser(
        "sweep",
        parents=[receiver],
        help="re-post messages left in the S3 bucket, deleting each after the receiver has it",
    )
    sw.add_argument("--bucket", required=True, help="the receipt rule's S3 bucket")
    sw.add_argument("--prefix", default="", help="the S3 action's object key prefix")
    sw.add_argument(
        "--older-than",
        type=_age,
        default=DEFAULT_AGE,
        metavar="AGE",
        help="only objects at least this old, e.g. 90s, 10m, 2h (default: %(default)s)",
    )
    sw.set_defaults(func=cmd_sweep)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    return int(args.func(args))


if __name__ == "__main__":
    sys.exit(main())
