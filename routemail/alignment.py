"""Whether SES's verdicts vouch for the domain a message's From names.

Only a vouched-for author can approve held mail. DMARC PASS vouches by
itself. DKIM PASS vouches only when its signing domain aligns with the From
domain, and SES's verdict does not say which signature passed: so the signing
domain is read from the message's DKIM-Signature field when it has exactly
one (with one signature, a PASS is that signature's). SES's own
Authentication-Results header is not used: a message that reaches routemail
another way (`routemail inject`, `mailxfer post`) can carry a forged one on
top. docs/security.md states the rule.
"""

from __future__ import annotations

from collections.abc import Mapping

from routemail import addresses
from routemail.author import Author
from routemail.rewrite.headers import split_block

PASS = "PASS"


def signing_domain(raw: bytes) -> str | None:
    """The d= domain of the message's only DKIM-Signature; None with none, several,
    or one whose d= tag cannot be read."""
    block = split_block(raw, 0, len(raw), top=True)
    signatures = [f.value for f in block.fields if f.key == "dkim-signature"]
    if len(signatures) != 1:
        return None
    tags: dict[str, str] = {}
    for item in signatures[0].decode("ascii", errors="replace").split(";"):
        name, eq, value = item.partition("=")
        if eq:
            tags.setdefault("".join(name.split()), "".join(value.split()))
    domain = tags.get("d", "").lower()
    return domain if domain and addresses.normalize(f"postmaster@{domain}") else None


def aligned(signer: str, from_domain: str) -> bool:
    """The signer is the From domain or a parent of it (whoever controls a domain's DNS
    controls its subdomains). A subdomain signing for its parent is not accepted:
    telling an organisation's domain from a public suffix would need a suffix list."""
    signer, from_domain = signer.lower(), from_domain.lower()
    return from_domain == signer or from_domain.endswith("." + signer)


def unvouched(verdicts: Mapping[str, str], raw: bytes, author: Author) -> str | None:
    """Why the verdicts do not vouch for the author's address, or None when they do."""
    if author.address is None:
        return f"the author is unknown: {author.problem}"
    if verdicts.get("dmarc") == PASS:
        return None
    if verdicts.get("dkim") != PASS:
        return "neither DMARC nor DKIM passed"
    _, from_domain = addresses.split(author.address)
    signer = signing_domain(raw)
    if signer is None:
        return (
            "DMARC did not pass, and the DKIM pass cannot be tied to a signing domain "
            "(that needs exactly one DKIM-Signature)"
        )
    if not aligned(signer, from_domain):
        return f"DMARC did not pass, and DKIM passed for {signer}, not for {from_domain}"
    return None
