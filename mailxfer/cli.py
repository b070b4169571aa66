"""The `mailxfer` command: post a message file to the receiver, signed."""

from __future__ import annotations

import argparse
import os
import sys
from collections.abc import Sequence

from mailxfer.post import error_text, post_message
from mailxfer.signing import VERDICT_NAMES

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
    if result.ok:
        print(result.body.strip())
        return 0
    print(f"mailxfer: {args.url} answered {result.status}: {error_text(result)}", file=sys.stderr)
    return 1


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="mailxfer", description=__doc__)
    sub = parser.add_subparsers(dest="command", required=True)
    post = sub.add_parser(
        "post", help="sign and POST a message file (or - for stdin) to the receiver"
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
        "--url",
        default=os.environ.get("MAILRECV_URL", DEFAULT_URL),
        help="receiver URL (default: $MAILRECV_URL or %(default)s)",
    )
    post.add_argument(
        "--verdicts",
        type=_verdicts,
        default=_verdicts(""),
        help='SES verdicts to vouch for, e.g. "spf=FAIL" (others PASS)',
    )
    post.set_defaults(func=cmd_post)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    return int(args.func(args))


if __name__ == "__main__":
    sys.exit(main())
