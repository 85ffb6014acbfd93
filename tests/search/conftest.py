"""Fixtures of the search tests: `data`, resources and searches private to one test."""

from __future__ import annotations

import pytest

from .support import Data


@pytest.fixture
def data(client) -> Data:
    return Data(client)
