"""Suppression looked up for a whole fan-out at once (Suppression.reasons,
ListSuppressions): the same answers as one query per copy, whatever the case,
and a suppression added while the fan-out runs still counts."""

from __future__ import annotations

from pathlib import Path

import pytest

from routemail import suppression as suppression_module
from routemail.config import Bounces
from routemail.state import State
from routemail.suppression import RECHECK_SECONDS, ListSuppressions, Suppression


@pytest.fixture
def state(tmp_path: Path) -> State:
    opened = State.open(tmp_path)
    yield opened  # type: ignore[misc]
    opened.close()


def members(n: int) -> list[str]:
    return [f"Member{i}@Example.net" for i in range(n)]


def test_reasons_agree_with_one_query_each(state: State, monkeypatch: pytest.MonkeyPatch) -> None:
    """Every spelling, all lists against one list, another list's suppression, and
    more addresses than one query takes."""
    monkeypatch.setattr(suppression_module, "CHUNK", 7)
    sup = Suppression(state, Bounces())
    sup.permanent_bounce("MEMBER1@example.NET", "test")
    sup.add("member2@example.net", "Band", "test")
    sup.add("member3@example.net", "choir", "test")  # another list: not ours
    sup.complaint("member4@example.net", "band", "test")
    sup.add("member4@example.net", "", "test")  # both: all lists wins, as reason() says
    addresses = [*members(30), "member1@example.net", "MEMBER2@EXAMPLE.NET"]
    found = sup.reasons(addresses, "band")
    assert set(found) == {"member1@example.net", "member2@example.net", "member4@example.net"}
    for address in addresses:
        assert found.get(address.lower()) == sup.reason(address, "band"), address
    assert found["member4@example.net"] == "manual (all lists)"
    assert sup.reasons([], "band") == {}


def test_case_is_folded_as_sqlite_nocase_folds_it(state: State) -> None:
    """COLLATE NOCASE folds ASCII letters only; the lookup does the same."""
    sup = Suppression(state, Bounces())
    sup.add("ÉLODIE@example.net", "", "test")
    found = ListSuppressions(sup, ["élodie@example.net", "ÉLODIE@EXAMPLE.NET"], "band")
    assert found.reason("ÉLODIE@EXAMPLE.NET") == sup.reason("ÉLODIE@EXAMPLE.NET", "band")
    assert found.reason("élodie@example.net") == sup.reason("élodie@example.net", "band")
    assert found.reason("élodie@example.net") is None


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def test_a_suppression_added_by_this_process_counts_for_the_next_copy(state: State) -> None:
    """A bounce routed in the middle of a fan-out (the same database connection)."""
    sup = Suppression(state, Bounces())
    clock = Clock()
    lookup = ListSuppressions(sup, members(5), "band", clock=clock)
    assert lookup.reason("Member3@Example.net") is None
    sup.permanent_bounce("member3@example.net", "test")
    assert lookup.reason("Member3@Example.net") == "bounce (all lists)"
    sup.remove("member3@example.net", "", "test")
    assert lookup.reason("Member3@Example.net") is None


def test_a_suppression_added_by_another_process_counts_soon(tmp_path: Path) -> None:
    """The receiver handling a complaint, `routemail suppression add`: another
    connection. Seen once RECHECK_SECONDS have passed, then for every copy."""
    ours, theirs = State.open(tmp_path), State.open(tmp_path)
    try:
        clock = Clock()
        lookup = ListSuppressions(Suppression(ours, Bounces()), members(5), "band", clock=clock)
        assert lookup.reason("Member2@Example.net") is None
        Suppression(theirs, Bounces()).complaint("member2@example.net", "band", "test")
        clock.now += RECHECK_SECONDS
        assert lookup.reason("Member2@Example.net") == "complaint (band)"
        assert lookup.reason("Member1@Example.net") is None
    finally:
        ours.close()
        theirs.close()


def test_an_address_not_read_ahead_is_looked_up_on_its_own(state: State) -> None:
    sup = Suppression(state, Bounces())
    sup.add("late@example.net", "", "test")
    lookup = ListSuppressions(sup, members(3), "band")
    assert lookup.reason("LATE@example.net") == "manual (all lists)"
