"""The list directory: from a list name to its members, bcc and moderators.

Named lists come from lists.toml; any other name on the site's domain is
tried against the [[dynamic]] patterns in order. Resolutions are cached for
the life of a Directory (one routemail run).
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, replace

from routemail import addresses, resolvers
from routemail.config import Config, DynamicRule, MailingList
from routemail.resolvers import NoSuchList, ResolverError

__all__ = ["Directory", "ResolvedList", "ResolverError"]


@dataclass(frozen=True)
class ResolvedList:
    """A list with its recipients worked out; settings come from `settings`."""

    settings: MailingList
    members: tuple[str, ...]
    bcc: tuple[str, ...]
    moderators: tuple[str, ...]
    rule: DynamicRule | None = None

    @property
    def name(self) -> str:
        return self.settings.name

    @property
    def recipients(self) -> tuple[str, ...]:
        """Members then bcc recipients, each address once."""
        return addresses.unique((*self.members, *self.bcc))

    def may_post(self, sender: str | None) -> bool:
        """Whether sender may post unmoderated; moderators always may."""
        policy = self.settings.posters
        if policy == "anyone":
            return True
        if sender is None:
            return False
        allowed: Iterable[str] = self.moderators
        if policy == "members":
            allowed = (*self.members, *self.moderators)
        elif isinstance(policy, tuple):
            allowed = (*policy, *self.moderators)
        return addresses.contains(allowed, sender)

    def is_moderator(self, address: str | None) -> bool:
        return addresses.contains(self.moderators, address)


class Directory:
    """Finds and resolves the lists of one site."""

    def __init__(self, config: Config) -> None:
        self.config = config
        self._cache: dict[str, ResolvedList | None] = {}

    def list_name(self, address: str) -> str | None:
        """The local part, if address is on the site's domain."""
        norm = addresses.normalize(address)
        if norm is None:
            return None
        local, domain = addresses.split(norm)
        return local.lower() if domain == self.config.site.domain else None

    def match(self, name: str) -> MailingList | DynamicRule | None:
        """The named list or the first dynamic rule for name, without resolving."""
        name = name.lower()
        if name in self.config.lists:
            return self.config.lists[name]
        for rule in self.config.dynamic:
            if rule.pattern.fullmatch(name):
                return rule
        return None

    def resolve(self, name: str) -> ResolvedList | None:
        """The list called name, or None if there is none.

        Raises ResolverError when a dynamic list cannot be resolved right
        now; the caller must then deliver to nobody, not to a partial list.
        """
        name = name.lower()
        if name not in self._cache:
            self._cache[name] = self._resolve(name)
        return self._cache[name]

    def _resolve(self, name: str) -> ResolvedList | None:
        found = self.match(name)
        if found is None:
            return None
        if isinstance(found, MailingList):
            return ResolvedList(found, found.members, found.bcc, found.moderators)
        rule = found
        groups = rule.pattern.fullmatch(name)
        assert groups is not None
        try:
            got = resolvers.resolve(
                rule.resolver, rule.options, groups.groupdict(), self.config.base_dir
            )
        except NoSuchList:
            return None
        settings = MailingList(
            name=name,
            description=rule.description,
            posters=rule.posters,
            dynamic=True,
            archive=self.config.retention.archive,
        )
        moderators = addresses.unique((*rule.moderators, *got.moderators))
        return ResolvedList(
            replace(settings, moderators=moderators), got.members, got.bcc, moderators, rule
        )
