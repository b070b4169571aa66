"""The exceptions routemail raises for failures a person can act on."""

from __future__ import annotations


class RoutemailError(Exception):
    """A failure with a message that names the thing and the fix."""


class ConfigError(RoutemailError):
    """lists.toml (or the environment) is missing or wrong."""

    def __init__(self, problems: list[str] | str) -> None:
        self.problems = [problems] if isinstance(problems, str) else list(problems)
        super().__init__("\n".join(self.problems))


class SpoolError(RoutemailError):
    """The spool cannot be read or written."""


class UnknownMessage(RoutemailError):
    """No queue entry has the given id."""
