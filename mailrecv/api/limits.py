"""Failed-guess counting: a client that keeps giving wrong tokens or passwords is refused.

Each check of a secret takes a place under its counters before it is made,
in one transaction, and gives it back when the secret was right: however many
checks run at once, at most guess_limit wrong ones are ever made per window.
"""

from __future__ import annotations

from mailrecv.api.context import ApiError, Context
from routemail.ratelimits import Reservation, guess_limits


def reserve_guess(ctx: Context, who: str) -> Reservation:
    """Count a check of who's secret before making it, or answer 429 when too many
    failed: for who from this client, from this client at all, or for who from
    everywhere."""
    window = ctx.api.window_seconds
    reservation = ctx.limits.reserve(guess_limits(who, ctx.client, ctx.api.guess_limit), window)
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
