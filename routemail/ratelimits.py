"""Rate limits kept in data/state.sqlite3: counters over fixed windows, and at most one
mail of a kind to an address per interval. Every read-check-write is one transaction,
so concurrent workers never both pass a limit meant for one."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from routemail import addresses
from routemail.state import State

# Failed checks at one address from all clients together may reach this many
# times guess_limit: one client alone can never lock the owner out, and
# guessing spread over many clients is still bounded.
GUESS_SPREAD = 10


def guess_limits(who: str, client: str, limit: int) -> list[tuple[str, int]]:
    """The counters a check of who's secret (a password, a mailed token) from client
    counts under, with their limits; the API and the web pages share them, so neither
    way in gives a guesser a fresh allowance."""
    who = addresses.key(who)  # BOB@x must not bring a fresh allowance of guesses at bob@x
    return [
        (f"guess:{who}|{client}", limit),  # this client at this address
        (f"guess-client:{client}", limit),  # this client, any address
        (f"guess:{who}", limit * GUESS_SPREAD),  # every client at this address
    ]


@dataclass(frozen=True)
class Reservation:
    """Places taken under rate-limit counters: (key, start of its window) each."""

    places: tuple[tuple[str, float], ...]


class RateLimits:
    """The counters of one State connection."""

    def __init__(self, state: State) -> None:
        self.state = state

    def count(self, key: str, window: float) -> int:
        """Events counted under key in the current fixed window."""
        row = self.state.db.execute(
            "SELECT window_start, count FROM counters WHERE key = ?", (key,)
        ).fetchone()
        if row is None or row[0] + window <= self.state.clock():
            return 0
        return int(row[1])

    def bump(self, key: str, window: float) -> int:
        """Count one more event under key; the new count in this window."""
        now = self.state.clock()
        with self.state.transaction() as db:
            db.execute(
                "INSERT INTO counters (key, window_start, count) VALUES (?, ?, 1)"
                " ON CONFLICT (key) DO UPDATE SET"
                " count = CASE WHEN window_start + ? <= ? THEN 1 ELSE count + 1 END,"
                " window_start = CASE WHEN window_start + ? <= ? THEN ? ELSE window_start END",
                (key, now, window, now, window, now, now),
            )
            row = db.execute("SELECT count FROM counters WHERE key = ?", (key,)).fetchone()
        return int(row[0])

    def reserve(self, limits: Sequence[tuple[str, int]], window: float) -> Reservation | None:
        """Count one more event under every (key, limit) at once, in one transaction, or
        none when a key is at its limit: of many concurrent callers, at most limit pass."""
        now = self.state.clock()
        places = []
        with self.state.transaction() as db:
            for key, limit in limits:
                row = db.execute(
                    "SELECT window_start, count FROM counters WHERE key = ?", (key,)
                ).fetchone()
                start, count = (now, 0) if row is None or row[0] + window <= now else row
                if count >= limit:
                    return None
                places.append((key, start, count + 1))
            db.executemany(
                "INSERT OR REPLACE INTO counters (key, window_start, count) VALUES (?, ?, ?)",
                places,
            )
        return Reservation(tuple((key, start) for key, start, _ in places))

    def refund(self, reservation: Reservation) -> None:
        """Give back the places of a reservation (in windows that have not moved on)."""
        with self.state.transaction() as db:
            db.executemany(
                "UPDATE counters SET count = count - 1"
                " WHERE key = ? AND window_start = ? AND count > 0",
                reservation.places,
            )

    def claim_mail(self, email: str, interval: float) -> float:
        """Reserve the right to send a mail under key email (an address, perhaps qualified
        by a kind) now: 0, or the seconds until it may be sent again."""
        now = self.state.clock()
        with self.state.transaction() as db:
            row = db.execute("SELECT sent FROM last_mail WHERE email = ?", (email,)).fetchone()
            if row is not None and row[0] + interval > now:
                return float(row[0] + interval - now)
            db.execute("INSERT OR REPLACE INTO last_mail (email, sent) VALUES (?, ?)", (email, now))
        return 0.0

    def mail_wait(self, email: str, interval: float) -> float:
        """The seconds until claim_mail(email, interval) could succeed; 0 if now."""
        row = self.state.db.execute(
            "SELECT sent FROM last_mail WHERE email = ?", (email,)
        ).fetchone()
        return max(0.0, float(row[0]) + interval - self.state.clock()) if row else 0.0

    def release_mail(self, email: str) -> None:
        """Undo claim_mail when the mail could not be sent after all."""
        with self.state.transaction() as db:
            db.execute("DELETE FROM last_mail WHERE email = ?", (email,))
