"""search/parameters.py and search/custom.py: what a SearchParameter written through the API
shadows, and what comes back when it goes (R4 definitions, no database)."""

from __future__ import annotations

import types
from dataclasses import replace

import pytest

from fhir_server.config import Settings
from fhir_server.definitions.loading import load_definitions
from fhir_server.errors import FhirError
from fhir_server.search import custom
from fhir_server.search.parameters import SearchParameters

BUILTIN = "http://hl7.org/fhir/SearchParameter/Patient-identifier"


@pytest.fixture(scope="module")
def definitions(r4_examples, package_cache):
    return load_definitions(package_cache, [])


def _server(definitions, override: bool):
    return types.SimpleNamespace(definitions=definitions, search_parameters=SearchParameters(definitions),
                                 settings=replace(Settings(), search_parameter_override=override))


def _sp(id_: str, url: str | None = None, **fields) -> dict:
    return {"resourceType": "SearchParameter", "id": id_, "url": url or f"urn:test:{id_}", "status": "active",
            "code": "identifier", "base": ["Patient"], "type": "string", "expression": "Patient.identifier.value",
            **fields}


def test_refused_without_the_switch(definitions):
    server = _server(definitions, override=False)
    with pytest.raises(FhirError) as refused:
        custom.check(server, _sp("a"))
    assert refused.value.status == 422
    custom.apply(server, _sp("a"), None)  # stored by a server that had the switch: not applied
    assert server.search_parameters.get("Patient", "identifier").url == BUILTIN
    custom.check(server, _sp("b", type="token", expression="Patient.identifier"))  # the same meaning
    custom.check(server, _sp("c", code="x-identifier"))  # a code of its own


def test_removal_restores_what_was_shadowed(definitions):
    server = _server(definitions, override=True)
    params = server.search_parameters
    custom.apply(server, _sp("a"), None)
    custom.apply(server, _sp("b"), None)
    assert params.get("Patient", "identifier").url == "urn:test:b"
    custom.apply(server, None, params.stored_url("b"))  # the latest goes: the earlier one is back
    assert params.get("Patient", "identifier").url == "urn:test:a"
    custom.apply(server, {**_sp("a"), "status": "retired"}, None)
    assert params.get("Patient", "identifier").url == BUILTIN


def test_a_redefinition_under_the_builtin_url_gives_it_back(definitions):
    server = _server(definitions, override=True)
    params = server.search_parameters
    custom.apply(server, _sp("same-url", url=BUILTIN), None)
    assert params.get("Patient", "identifier").type == "string"
    custom.apply(server, None, params.stored_url("same-url"))
    assert params.by_url(BUILTIN).type == "token" and params.get("Patient", "identifier").type == "token"


def test_a_changed_url_or_base_leaves_nothing_behind(definitions):
    server = _server(definitions, override=True)
    params = server.search_parameters
    custom.apply(server, _sp("moving"), None)
    custom.apply(server, _sp("moving", url="urn:test:moved", base=["Practitioner"]), None)
    assert params.get("Patient", "identifier").url == BUILTIN
    assert params.get("Practitioner", "identifier").url == "urn:test:moved"
    assert params.by_url("urn:test:moving") is None
    custom.apply(server, None, params.stored_url("moving"))
    assert params.get("Practitioner", "identifier").url == "http://hl7.org/fhir/SearchParameter/Practitioner-identifier"
