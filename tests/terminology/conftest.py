"""Fixtures of the terminology tests: the R4 definitions from the package cache, and FR Core."""

from __future__ import annotations

import pytest

from fhir_server.definitions.loading import load_definitions
from fhir_server.terminology import Terminology


@pytest.fixture(scope="session")
def definitions(r4_examples, package_cache):
    return load_definitions(package_cache, [])


@pytest.fixture(scope="session")
def fr_definitions(r4_examples, package_cache, fr_core_tgz):
    return load_definitions(package_cache, [str(fr_core_tgz)])


@pytest.fixture
def term(definitions) -> Terminology:
    return Terminology(definitions)
