"""Fixtures of the search tests: `data`, resources and searches private to one test."""

from __future__ import annotations

import pytest

from .support import Data


@pytest.fixture
def data(request, client) -> Data:
    """On the session server; on the one with referential integrity off for a test marked
    `@pytest.mark.parametrize("data", ["unchecked"], indirect=True)` (references left dangling)."""
    if getattr(request, "param", None) == "unchecked":
        return Data(request.getfixturevalue("unchecked_client"))
    return Data(client)
