"""Validation of lists.toml: the typed Config, or every problem with its line and key.

keylines locates keys in the text, checker reads typed values and collects
problems, settings and lists validate the sections, and resources (for
`routemail check`) tries what a dynamic list will need when mail comes.
"""

from __future__ import annotations

import dataclasses
from pathlib import Path
from typing import Any

from routemail.config import Config
from routemail.errors import Problem
from routemail.validation import settings
from routemail.validation.checker import Checker
from routemail.validation.lists import dynamic_rules, members_differing_in_case, named_lists

SECTIONS = {
    "site",
    "receiver",
    "delivery",
    "moderation",
    "retention",
    "lists",
    "dynamic",
    "api",
    "webhooks",
    "bounces",
    "monitoring",
}


def validate(
    data: dict[str, Any], text: str, path: Path, resources: bool = False
) -> tuple[Config | None, list[Problem]]:
    """The Config, or None with every problem found; resources also opens dynamic
    lists' databases and looks for their programs."""
    v = Checker(text, path)
    v.unknown_keys(data, "", SECTIONS)
    site = settings.site(v, v.table(data, "site"))
    receiver = settings.receiver(v, v.table(data, "receiver"))
    delivery = settings.delivery(v, v.table(data, "delivery"))
    moderation = settings.moderation(v, v.table(data, "moderation"))
    retention = settings.retention(v, v.table(data, "retention"))
    lists = named_lists(v, v.table(data, "lists"))
    dynamic = dynamic_rules(v, data.get("dynamic", []), lists)
    api = settings.api(v, v.table(data, "api"))
    webhooks = settings.webhooks(v, v.table(data, "webhooks"))
    bounces = settings.bounces(v, v.table(data, "bounces"))
    monitoring = settings.monitoring(v, v.table(data, "monitoring"))
    if resources:
        from routemail.validation.resources import check_resources

        check_resources(v, dynamic, path.parent)
        members_differing_in_case(v, data.get("lists"))
    if v.problems or site is None:
        return None, v.problems
    sections = (site, receiver, delivery, moderation, retention, lists, dynamic, data)
    config = Config(path, *sections, api=api, webhooks=webhooks, bounces=bounces)
    return dataclasses.replace(config, monitoring=monitoring), []
