"""Password hashes, and the hash checked in place of an account that does not exist."""

from routemail import passwords


def test_a_hash_checks_its_own_password_only() -> None:
    stored = passwords.hash_password("correct horse")
    assert passwords.check_password("correct horse", stored)
    assert not passwords.check_password("correct horse ", stored)
    assert not passwords.check_password("correct horse", "not a hash")


def test_the_unmatchable_hash_is_shaped_and_priced_like_a_real_one() -> None:
    """Same kind, same scrypt parameters and field sizes as a fresh hash, so checking
    it takes as long as checking a real account's; no likely password matches it."""
    real = passwords.hash_password("x").split("$")
    unmatchable = passwords.UNMATCHABLE.split("$")
    assert unmatchable[:4] == real[:4] == ["scrypt", *map(str, passwords.SCRYPT_PARAMETERS)]
    assert [len(f) for f in unmatchable[4:]] == [len(f) for f in real[4:]]
    for guess in ("", "password", "no account has this password"):
        assert not passwords.check_password(guess, passwords.UNMATCHABLE)
