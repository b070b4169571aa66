"""The exceptions routemail raises for failures a person can act on."""

from __future__ import annotations

from dataclasses import dataclass


class RoutemailError(Exception):
    """A failure with a message that names the thing and the fix."""


@dataclass(frozen=True)
class Problem:
    """One mistake in a configuration file: where it is, which key, what is wrong."""

    file: str
    line: int | None
    key: str
    message: str

    def __str__(self) -> str:
        where = f"{self.file} line {self.line}" if self.line else self.file
        return f"{where}: {self.key}: {self.message}" if self.key else f"{where}: {self.message}"

    def as_json(self) -> dict[str, int | str | None]:
        return {
            "file": self.file or None,
            "line": self.line,
            "key": self.key or None,
            "message": self.message,
        }


class ConfigError(RoutemailError):
    """lists.toml (or the environment) is missing or wrong."""

    def __init__(self, problems: list[Problem] | Problem | str) -> None:
        found = problems if isinstance(problems, list) else [problems]
        self.details = [p if isinstance(p, Problem) else Problem("", None, "", p) for p in found]
        self.problems = [str(p) if isinstance(p, Problem) else p for p in found]
        super().__init__("\n".join(self.problems))


class SpoolError(RoutemailError):
    """The spool cannot be read or written."""


class UnknownMessage(RoutemailError):
    """No queue entry has the given id."""
