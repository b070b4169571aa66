"""Account passwords: salted scrypt hashes, compared in constant time."""

from __future__ import annotations

import base64
import hashlib
import hmac
import secrets

SCRYPT_N, SCRYPT_R, SCRYPT_P = 2**14, 8, 1  # 16 MiB and about 50 ms a hash
SCRYPT_PARAMETERS = (SCRYPT_N, SCRYPT_R, SCRYPT_P)

# Checked in place of a stored hash when an account does not exist or has no password
# yet, so a wrong address costs as much time as a wrong password. Its salt and digest
# are random bytes, so no password is known to match; a constant rather than a hash
# made at import, which cost every receiver worker and every command about 90 ms.
UNMATCHABLE = (
    f"scrypt${SCRYPT_N}${SCRYPT_R}${SCRYPT_P}"
    "$M16mkzHstMJa58luvMTBRQ==$mIKRDvvuYRxm7yn0Rns6NCdka0NpuxiFXV3/ac1MF+E="
)


def hash_password(password: str) -> str:
    salt = secrets.token_bytes(16)
    digest = _scrypt(password, salt, SCRYPT_N, SCRYPT_R, SCRYPT_P)
    return f"scrypt${SCRYPT_N}${SCRYPT_R}${SCRYPT_P}${_b64(salt)}${_b64(digest)}"


def check_password(password: str, stored: str) -> bool:
    try:
        kind, n, r, p, salt, digest = stored.split("$")
        expected = base64.b64decode(digest)
        given = _scrypt(password, base64.b64decode(salt), int(n), int(r), int(p))
    except ValueError:
        return False
    return kind == "scrypt" and hmac.compare_digest(expected, given)


def _scrypt(password: str, salt: bytes, n: int, r: int, p: int) -> bytes:
    return hashlib.scrypt(
        password.encode("utf-8"), salt=salt, n=n, r=r, p=p, maxmem=64 * 1024 * 1024, dklen=32
    )


def _b64(data: bytes) -> str:
    return base64.b64encode(data).decode("ascii")
