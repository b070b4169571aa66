"""data/state.sqlite3: moderator accounts, emailed tokens, list administrators, and the
connection that routemail.ratelimits, routemail.suppression and others work through.

Several gunicorn workers share the file: WAL journal, a busy timeout, and
every change inside `BEGIN IMMEDIATE`, so a read-check-write is atomic.
The schema is versioned with `PRAGMA user_version`; MIGRATIONS only grows.
"""

from __future__ import annotations

import contextlib
import hashlib
import hmac
import secrets
import sqlite3
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

from routemail import addresses
from routemail.config import MailingList
from routemail.errors import RoutemailError

FILENAME = "state.sqlite3"
TOKEN_BYTES = 24  # 192 bits
PENDING, VERIFIED = "pending", "verified"

MIGRATIONS: tuple[str, ...] = (
    # 1: the first schema
    """
    CREATE TABLE accounts (
        email TEXT PRIMARY KEY,
        password_hash TEXT NOT NULL,
        status TEXT NOT NULL CHECK (status IN ('pending', 'verified')),
        created REAL NOT NULL,
        verified REAL
    );
    CREATE TABLE tokens (
        id INTEGER PRIMARY KEY,
        purpose TEXT NOT NULL,
        email TEXT NOT NULL,
        list TEXT NOT NULL DEFAULT '',
        hash TEXT NOT NULL,
        payload TEXT NOT NULL DEFAULT '',
        created REAL NOT NULL,
        expires REAL NOT NULL
    );
    CREATE INDEX tokens_owner ON tokens (purpose, email, list);
    CREATE INDEX tokens_expiry ON tokens (expires);
    CREATE TABLE administrators (
        list TEXT PRIMARY KEY,
        email TEXT NOT NULL,
        created REAL NOT NULL
    );
    CREATE TABLE counters (
        key TEXT PRIMARY KEY,
        window_start REAL NOT NULL,
        count INTEGER NOT NULL
    );
    CREATE TABLE last_mail (
        email TEXT PRIMARY KEY,
        sent REAL NOT NULL
    );
    """,
    # 2: suppression, bounce scores and the log of what changed them (routemail.suppression)
    """
    CREATE TABLE suppressions (
        address TEXT NOT NULL,
        list TEXT NOT NULL DEFAULT '',
        reason TEXT NOT NULL,
        detail TEXT NOT NULL DEFAULT '',
        created REAL NOT NULL,
        PRIMARY KEY (address, list)
    );
    CREATE TABLE bounce_scores (
        address TEXT PRIMARY KEY,
        score REAL NOT NULL,
        last_bounce REAL NOT NULL
    );
    CREATE TABLE deliverability_log (
        id INTEGER PRIMARY KEY,
        time REAL NOT NULL,
        address TEXT NOT NULL,
        list TEXT NOT NULL DEFAULT '',
        event TEXT NOT NULL,
        source TEXT NOT NULL,
        action TEXT NOT NULL
    );
    CREATE INDEX deliverability_log_address ON deliverability_log (address, time);
    """,
    # 3: SNS notifications already applied (replays are refused), and when a list
    # membership last changed (older one-click unsubscribe links are refused)
    """
    CREATE TABLE sns_messages (
        id TEXT PRIMARY KEY,
        expires REAL NOT NULL
    );
    CREATE INDEX sns_messages_expiry ON sns_messages (expires);
    CREATE TABLE membership_changes (
        list TEXT NOT NULL,
        address TEXT NOT NULL,
        changed REAL NOT NULL,
        PRIMARY KEY (list, address)
    );
    """,
    # 4: addresses compare ignoring case (COLLATE NOCASE); these keep those lookups
    # indexed (without, a suppression check scanned the table: ~2 ms at 20,000 rows).
    """
    CREATE INDEX suppressions_address_nocase ON suppressions (address COLLATE NOCASE, list);
    CREATE INDEX bounce_scores_address_nocase ON bounce_scores (address COLLATE NOCASE);
    CREATE INDEX accounts_email_nocase ON accounts (email COLLATE NOCASE);
    CREATE INDEX tokens_owner_nocase ON tokens (purpose, email COLLATE NOCASE, list);
    CREATE INDEX membership_changes_nocase ON membership_changes (list, address COLLATE NOCASE);
    """,
)


class StateError(RoutemailError):
    """data/state.sqlite3 cannot be opened or migrated."""


@dataclass(frozen=True)
class Account:
    email: str
    status: str
    created: float


@dataclass(frozen=True)
class Issued:
    """A fresh token: the secret goes into a mail, only its hash is kept."""

    token: str
    expires: float


def token_hash(token: str) -> str:
    return hashlib.sha256(token.encode("utf-8", "replace")).hexdigest()


class State:
    """One connection to data/state.sqlite3; open one per request or command."""

    def __init__(self, path: Path, clock: Callable[[], float] = time.time) -> None:
        self.path = path
        self.clock = clock
        try:
            path.parent.mkdir(parents=True, exist_ok=True)
            # Autocommit mode: transactions are explicit BEGIN IMMEDIATE blocks.
            self.db = sqlite3.connect(path, timeout=30, isolation_level=None)
            self.db.execute("PRAGMA journal_mode=WAL")
            self.db.execute("PRAGMA synchronous=FULL")
            self.db.execute("PRAGMA foreign_keys=ON")
            self._migrate()
        except (OSError, sqlite3.Error) as exc:
            raise StateError(f"{path}: cannot open the state database: {exc}") from exc

    @classmethod
    def open(cls, data_dir: Path, clock: Callable[[], float] = time.time) -> State:
        return cls(data_dir / FILENAME, clock)

    def close(self) -> None:
        self.db.close()

    def __enter__(self) -> State:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    @property
    def version(self) -> int:
        return int(self.db.execute("PRAGMA user_version").fetchone()[0])

    def _migrate(self) -> None:
        if self.version == len(MIGRATIONS):
            return
        with self.transaction():
            # Re-read under the write lock: another worker may have migrated meanwhile.
            current = self.version
            if current > len(MIGRATIONS):
                raise StateError(
                    f"{self.path} has schema version {current}, newer than this "
                    f"routemail ({len(MIGRATIONS)}); upgrade routemail"
                )
            for number in range(current, len(MIGRATIONS)):
                for statement in MIGRATIONS[number].split(";"):
                    if statement.strip():
                        self.db.execute(statement)
                self.db.execute(f"PRAGMA user_version = {number + 1}")

    @contextlib.contextmanager
    def transaction(self) -> Iterator[sqlite3.Connection]:
        """A write transaction: taken at once, committed on success, rolled back on error."""
        self.db.execute("BEGIN IMMEDIATE")
        try:
            yield self.db
        except BaseException:
            self.db.execute("ROLLBACK")
            raise
        self.db.execute("COMMIT")

    # -- housekeeping ------------------------------------------------------

    def purge(self, account_seconds: float) -> None:
        """Forget expired tokens and unverified accounts older than account_seconds."""
        now = self.clock()
        with self.transaction() as db:
            db.execute("DELETE FROM tokens WHERE expires <= ?", (now,))
            db.execute(
                "DELETE FROM accounts WHERE status = 'pending' AND created <= ?",
                (now - account_seconds,),
            )

    # -- accounts ----------------------------------------------------------

    def account(self, email: str) -> tuple[Account, str] | None:
        """The account and its password hash."""
        row = self.db.execute(
            "SELECT email, status, created, password_hash FROM accounts"
            " WHERE email = ? COLLATE NOCASE",
            (email,),
        ).fetchone()
        return (Account(row[0], row[1], row[2]), row[3]) if row else None

    def put_pending_account(self, email: str) -> None:
        """An account waiting for its owner, with no password: whoever verifies it with
        the mailed token chooses one (an empty hash matches no password)."""
        with self.transaction() as db:
            # An account spelt another way is this one (addresses ignore case).
            row = db.execute(
                "SELECT email FROM accounts WHERE email = ? COLLATE NOCASE", (email,)
            ).fetchone()
            email = row[0] if row else email
            db.execute(
                "INSERT INTO accounts (email, password_hash, status, created) VALUES (?, '', ?, ?)"
                " ON CONFLICT (email) DO UPDATE SET password_hash = '',"
                " created = excluded.created WHERE status = 'pending'",
                (email, PENDING, self.clock()),
            )

    def verify_account(self, db: sqlite3.Connection, email: str, password_hash: str) -> bool:
        """Inside a transaction: verify a pending account with the password its owner
        chose; its other verification tokens stop working. False if none is pending."""
        done = db.execute(
            "UPDATE accounts SET status = ?, verified = ?, password_hash = ?"
            " WHERE email = ? COLLATE NOCASE AND status = 'pending'",
            (VERIFIED, self.clock(), password_hash, email),
        ).rowcount
        db.execute(
            "DELETE FROM tokens WHERE purpose = 'verify' AND email = ? COLLATE NOCASE", (email,)
        )
        return done == 1

    def set_password(self, db: sqlite3.Connection, email: str, password_hash: str) -> bool:
        """Inside a transaction: a verified account's new password; every password reset
        token of the account stops working, and every signed-in web session of it ends
        (routemail.websessions). False if there is no such account."""
        done = db.execute(
            "UPDATE accounts SET password_hash = ?"
            " WHERE email = ? COLLATE NOCASE AND status = 'verified'",
            (password_hash, email),
        ).rowcount
        db.execute(
            "DELETE FROM tokens WHERE purpose IN ('reset', 'web-session')"
            " AND email = ? COLLATE NOCASE",
            (email,),
        )
        return done == 1

    # -- tokens --------------------------------------------------------------

    def issue(
        self, purpose: str, email: str, lifetime: float, listname: str = "", payload: str = ""
    ) -> Issued:
        """A new token for (purpose, email, list); earlier ones for the same stay valid."""
        token = secrets.token_urlsafe(TOKEN_BYTES)
        now = self.clock()
        with self.transaction() as db:
            db.execute(
                "INSERT INTO tokens (purpose, email, list, hash, payload, created, expires)"
                " VALUES (?, ?, ?, ?, ?, ?, ?)",
                (purpose, email, listname, token_hash(token), payload, now, now + lifetime),
            )
        return Issued(token, now + lifetime)

    def take(
        self, db: sqlite3.Connection, purpose: str, email: str, token: str, listname: str = ""
    ) -> str | None:
        """Inside a transaction: consume a valid token and return its payload, or None.

        Every live token of the owner is compared, in constant time, so the
        answer takes as long for a near miss as for garbage.
        """
        given = token_hash(token)
        found: tuple[int, str] | None = None
        rows = db.execute(
            "SELECT id, hash, payload FROM tokens"
            " WHERE purpose = ? AND email = ? COLLATE NOCASE AND list = ? AND expires > ?",
            (purpose, email, listname, self.clock()),
        ).fetchall()
        for row_id, stored, payload in rows:
            if hmac.compare_digest(stored, given) and found is None:
                found = (row_id, payload)
        if found is None:
            return None
        db.execute("DELETE FROM tokens WHERE id = ?", (found[0],))
        return found[1]

    def pending(self, purpose: str, email: str, listname: str = "") -> bool:
        row = self.db.execute(
            "SELECT 1 FROM tokens"
            " WHERE purpose = ? AND email = ? COLLATE NOCASE AND list = ? AND expires > ?",
            (purpose, email, listname, self.clock()),
        ).fetchone()
        return row is not None

    # -- administrators ----------------------------------------------------

    def administrator(self, listname: str) -> str | None:
        row = self.db.execute(
            "SELECT email FROM administrators WHERE list = ?", (listname,)
        ).fetchone()
        return str(row[0]) if row else None

    def list_administrator(self, mlist: MailingList) -> str | None:
        """The account that created the list, else (a list written by hand) its first
        moderator: the one address that can never be unsubscribed."""
        return self.administrator(mlist.name) or (mlist.moderators[0] if mlist.moderators else None)

    def set_administrator(self, db: sqlite3.Connection, listname: str, email: str) -> None:
        db.execute(
            "INSERT OR REPLACE INTO administrators (list, email, created) VALUES (?, ?, ?)",
            (listname, email, self.clock()),
        )

    def forget_administrator(self, db: sqlite3.Connection, listname: str) -> None:
        """The list is gone: a new list of that name starts with no administrator."""
        db.execute("DELETE FROM administrators WHERE list = ?", (listname,))

    # -- SNS notifications -------------------------------------------------

    def first_sight(self, message_id: str, keep_seconds: float) -> bool:
        """Note an SNS MessageId as applied, for keep_seconds; False if it was already."""
        now = self.clock()
        with self.transaction() as db:
            db.execute("DELETE FROM sns_messages WHERE expires <= ?", (now,))
            added = db.execute(
                "INSERT INTO sns_messages (id, expires) VALUES (?, ?) ON CONFLICT (id) DO NOTHING",
                (message_id, now + keep_seconds),
            ).rowcount
        return added == 1

    def forget_sight(self, message_id: str) -> None:
        """Undo first_sight when the notification could not be applied after all."""
        with self.transaction() as db:
            db.execute("DELETE FROM sns_messages WHERE id = ?", (message_id,))

    # -- membership --------------------------------------------------------

    def membership_changed(self, db: sqlite3.Connection, listname: str, address: str) -> None:
        """Inside a transaction: note that address joined or left listname now."""
        db.execute(
            "INSERT OR REPLACE INTO membership_changes (list, address, changed) VALUES (?, ?, ?)",
            (listname, addresses.key(address), self.clock()),
        )

    def membership_changed_at(self, listname: str, address: str) -> float:
        """When address last joined or left listname through routemail; 0 if never."""
        # NOCASE: rows written before addresses were keyed may hold any spelling.
        row = self.db.execute(
            "SELECT MAX(changed) FROM membership_changes "
            "WHERE list = ? AND address = ? COLLATE NOCASE",
            (listname, address),
        ).fetchone()
        return float(row[0]) if row and row[0] is not None else 0.0
