"""`Task?due-date` (our guide's coord-sp-task-due-date) compares the due date, the end of
Task.restriction.period: on the whole Period a task due 2027-03-04 with no start (its range
reaches back forever) was `le2026-12-31`. And "overdue" — due before now, not finished — as one
query, the finished statuses excluded by one `status:not` with several values (or several
`status:not`, which say the same)."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest

from tests.search.support import Data

FINISHED = "completed,cancelled,failed,rejected,entered-in-error"


@pytest.fixture
def data(client) -> Data:
    return Data(client)


def task(data: Data, status: str, start: str | None = None, end: str | None = None) -> str:
    resource = {"resourceType": "Task", "status": status, "intent": "order"}
    period = {k: v for k, v in (("start", start), ("end", end)) if v}
    if period:
        resource["restriction"] = {"period": period}
    return data.create(resource)["id"]


def test_prefixes_compare_the_due_date(data):
    open_ended = task(data, "requested", end="2027-03-04")  # no start: the case of the issue
    december = task(data, "requested", "2026-01-01", "2026-12-15")
    across = task(data, "requested", "2026-12-20", "2027-01-10T18:00:00+01:00")
    started_only = task(data, "requested", start="2026-06-01")  # no due date at all
    undated = task(data, "requested")
    assert data.ids("/Task", {"due-date": "le2026-12-31"}) == {december}
    assert data.ids("/Task", {"due-date": "lt2027-01-10"}) == {december}
    assert data.ids("/Task", {"due-date": "ge2027-01-01"}) == {open_ended, across}
    assert data.ids("/Task", {"due-date": "2027-03-04"}) == {open_ended}
    assert data.ids("/Task", {"due-date": "2027-01"}) == {across}
    assert data.ids("/Task", {"due-date": "sa2026-12-31"}) == {open_ended, across}
    assert data.ids("/Task", {"due-date": "eb2027-01-01"}) == {december}
    assert data.ids("/Task", {"due-date:missing": "true"}) == {started_only, undated}
    assert data.id_list("/Task", {"_sort": "due-date", "due-date:missing": "false"}) == [december, across, open_ended]


def test_overdue_is_one_query(data):
    now = datetime.now(UTC)
    past, future = (now - timedelta(days=3)).date().isoformat(), (now + timedelta(days=30)).date().isoformat()
    late = task(data, "in-progress", end=past)
    late_requested = task(data, "requested", "2020-01-01", past)
    task(data, "completed", end=past)
    task(data, "cancelled", end=past)
    task(data, "requested", end=future)
    task(data, "requested")  # no due date: never overdue
    instant = now.isoformat(timespec="seconds").replace("+00:00", "Z")
    overdue = {"due-date": f"lt{instant}", "status:not": FINISHED}
    assert data.ids("/Task", overdue) == {late, late_requested}
    one_by_one = [("due-date", f"lt{instant}")] + [("status:not", s) for s in FINISHED.split(",")]
    assert data.ids("/Task", one_by_one) == {late, late_requested}
