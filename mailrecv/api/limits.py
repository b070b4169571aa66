"""Failed-guess counting: a client that keeps giving wrong tokens or passwords is refused.

Each check of a secret takes a place under its counters before it is made,
in one transaction, and gives it back when the secret was right: however many
checks run at once, at most guess_limit wrong ones are ever made per window.
"""

from __future__ import annotations

from mailrecv.api.context import ApiError, Context
from routemail import addresses
from routemail.ratelimits import Reservation

# Failed checks at one address from all clients together may reach this many
# times guess_limit: one client alone can never lock the owner out, and
# guessing spread over many clients is still bounded.
GUESS_SPREAD = 10


def _guess_counters(ctx: Context, who: str) -> list[tuple[str, int]]:
    limit = ctx.api.guess_limit
    who = addresses.key(who)  # BOB@x must not bring a fresh allowance of guesses at bob@x
    return [
        (f"guess:{who}|{ctx.client}", limit),  # this client at this address
        (f"guess-client:{ctx.client}", limit),  # this client, any address
        (f"guess:{who}", limit * GUESS_SPREAD),  # every client at this address
    ]


def reserve_guess(ctx: Context, who: str) -> Reservation:
    """Count a check of who's secret before making it, or answer 429 when too many
    failed: for who from this client, from this client at all, or for who from
    everywhere."""
    window = ctx.api.window_seconds
    reservation = ctx.limits.reserve(_guess_counters(ctx, who), window)
    if reservation is None:
        raise ApiError(
            429,
            f"too many failed attempts; wait up to {int(window)} s before trying again",
            retry_after=window,
        )
    return reservation


def right_guess(ctx: Context, reservation: Reservation) -> None:
    """The secret was right: the check does not count as a failure."""
    ctx.limits.refund(reservation)
