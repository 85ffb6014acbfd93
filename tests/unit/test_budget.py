"""The work budget of a request (fhir_server/budget.py): what stops work, and what never does."""

from __future__ import annotations

import threading

import pytest

from fhir_server import budget
from fhir_server.errors import FhirError


def test_work_without_a_budget_is_never_stopped():
    budget.check()
    assert budget.remaining() is None
    assert list(budget.checked(range(3))) == [0, 1, 2]


def test_a_spent_budget_stops_the_next_checkpoint_with_408_naming_the_setting():
    with budget.running(budget.Budget(0)):
        with pytest.raises(FhirError) as caught:
            budget.check()
    assert caught.value.status == 408
    assert "FHIR_REQUEST_TIMEOUT_S" in str(caught.value)
    budget.check()  # the budget ended with its block


def test_a_client_that_leaves_cancels_the_work_from_another_thread():
    work = budget.Budget(60)
    seen = []
    with budget.running(work):
        items = budget.checked(range(10))
        seen.append(next(items))
        threading.Thread(target=work.cancel).start()
        work.cancelled.wait(5)
        with pytest.raises(FhirError) as caught:
            seen.extend(items)
    assert seen == [0] and caught.value.status == 408 and "closed the connection" in str(caught.value)


def test_what_follows_a_commit_runs_unbounded_then_the_budget_holds_again():
    with budget.running(budget.Budget(0)):
        with budget.unbounded():
            budget.check()
            assert budget.remaining() is None
        with pytest.raises(FhirError):
            budget.check()


def test_each_thread_has_its_own_budget():
    errors = []

    def other() -> None:
        try:
            budget.check()  # a thread started without the context has no budget
        except FhirError as exc:
            errors.append(exc)

    with budget.running(budget.Budget(0)):
        thread = threading.Thread(target=other)
        thread.start()
        thread.join()
    assert errors == []
