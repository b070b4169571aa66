"""Failed-guess counting: a client that keeps giving wrong tokens or passwords is refused."""

from __future__ import annotations

from mailrecv.api.context import ApiError, Context

# Failed checks at one address from all clients together may reach this many
# times guess_limit: one client alone can never lock the owner out, and
# guessing spread over many clients is still bounded.
GUESS_SPREAD = 10


def _guess_counters(ctx: Context, who: str) -> list[tuple[str, int]]:
    limit = ctx.api.guess_limit
    return [
        (f"guess:{who}|{ctx.client}", limit),  # this client at this address
        (f"guess-client:{ctx.client}", limit),  # this client, any address
        (f"guess:{who}", limit * GUESS_SPREAD),  # every client at this address
    ]


def check_guesses(ctx: Context, who: str) -> None:
    """Refuse before checking a secret once too many checks failed: for who from
    this client, from this client at all, or for who from everywhere."""
    window = ctx.api.window_seconds
    for key, limit in _guess_counters(ctx, who):
        if ctx.state.count(key, window) >= limit:
            raise ApiError(
                429,
                f"too many failed attempts; wait up to {int(window)} s before trying again",
                retry_after=window,
            )


def failed_guess(ctx: Context, who: str) -> None:
    for key, _ in _guess_counters(ctx, who):
        ctx.state.bump(key, ctx.api.window_seconds)
