"""Fixtures of the validation tests: the R4 definitions, loaded once per session.

The package cache is the tests' own (tests/packages.py); the R4 core definitions
(hl7.fhir.r4.examples 4.0.1, which also carries the examples) are installed there if missing.
"""

from __future__ import annotations

import functools

import pytest

from fhir_server.definitions.packages import Package
from fhir_server.definitions.registry import Definitions
from fhir_server.validation.structural import StructuralValidator
from tests import packages


@functools.cache
def load_definitions() -> Definitions:
    """Shared by the fixtures and by test collection (parametrizing over the examples)."""
    return Definitions([packages.r4_core()])


@pytest.fixture(scope="session")
def definitions() -> Definitions:
    return load_definitions()


@pytest.fixture(scope="session")
def core_package(definitions: Definitions) -> Package:
    return definitions.core


@pytest.fixture(scope="session")
def validator(definitions: Definitions) -> StructuralValidator:
    return StructuralValidator(definitions)


# -- the R4 instance examples ----------------------------------------------------------------

# Conformance and definition resources are not instance examples; they are left out.
DEFINITION_TYPES = frozenset({
    "StructureDefinition", "SearchParameter", "ValueSet", "CodeSystem", "ConceptMap", "OperationDefinition",
    "CapabilityStatement", "CompartmentDefinition", "ImplementationGuide", "NamingSystem", "StructureMap",
    "TerminologyCapabilities", "MessageDefinition", "GraphDefinition", "ExampleScenario",
})


def example_files() -> list[str]:
    """The instance examples of the core package (from its index: no file is parsed here)."""
    package = load_definitions().core
    return sorted(entry.filename for entry in package.entries() if entry.resourceType not in DEFINITION_TYPES)


def pytest_generate_tests(metafunc: pytest.Metafunc) -> None:
    if "example_file" in metafunc.fixturenames:
        metafunc.parametrize("example_file", example_files())


@pytest.fixture(scope="session")
def example_file_names() -> list[str]:
    return example_files()
