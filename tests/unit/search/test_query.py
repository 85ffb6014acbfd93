"""search/query.py `build_terms`: URL criteria become terms whose exact predicates are checked
here against the search values `index_values` computes for real resources (R4 definitions).
Chains and `_has` run an inner search in the database: they are left to the HTTP suites."""

from __future__ import annotations

import types

import pytest

from fhir_server.config import Settings
from fhir_server.definitions.loading import load_definitions
from fhir_server.errors import FhirError
from fhir_server.search.index import index_values
from fhir_server.search.parameters import SearchParameters
from fhir_server.search.query import Context, build_terms
from fhir_server.search.reach import EVERYTHING
from fhir_server.search.terms import IDS, KEYS, Values
from fhir_server.storage.records import KeyRange

BASE = "http://localhost/fhir"
MRN = "http://example.org/mrn"


@pytest.fixture(scope="module")
def server(r4_examples, package_cache):
    definitions = load_definitions(package_cache, [])
    return types.SimpleNamespace(definitions=definitions, search_parameters=SearchParameters(definitions),
                                 settings=Settings())


@pytest.fixture
def ctx(server):
    return Context(server, BASE, reach=EVERYTHING)


def patient(id_, **fields):
    return {"resourceType": "Patient", "id": id_, **fields}


@pytest.fixture(scope="module")
def patients(server):
    resources = [
        patient("helene", gender="female", birthDate="1974-12-25", active=True,
                name=[{"family": "Hélène", "given": ["Marie"]}],
                identifier=[{"system": MRN, "value": "123"}]),
        patient("paul", gender="male", birthDate="1960-03-01",
                name=[{"family": "Durand", "given": ["Paul"]}],
                identifier=[{"value": "123"}, {"system": "http://other.org", "value": "456"}]),
        patient("anon"),
    ]
    return {r["id"]: Values(r["id"], index_values(server.search_parameters, r).values) for r in resources}


def matching(ctx, patients, *criteria, type_="Patient"):
    """Ids of the patients every term matches."""
    terms, _ = build_terms(ctx, type_, list(criteria))
    return {id_ for id_, candidate in patients.items() if all(t.match(candidate) for t in terms)}


# -- tokens ----------------------------------------------------------------------------------------
def test_token_code(ctx, patients):
    assert matching(ctx, patients, ("gender", "female")) == {"helene"}
    assert matching(ctx, patients, ("gender", "male")) == {"paul"}


def test_comma_values_are_ored(ctx, patients):
    assert matching(ctx, patients, ("gender", "female,male")) == {"helene", "paul"}


def test_criteria_are_anded(ctx, patients):
    assert matching(ctx, patients, ("gender", "female,male"), ("birthdate", "lt1970")) == {"paul"}


def test_token_system_and_code(ctx, patients):
    assert matching(ctx, patients, ("identifier", f"{MRN}|123")) == {"helene"}
    assert matching(ctx, patients, ("identifier", "123")) == {"helene", "paul"}


def test_token_code_without_system(ctx, patients):
    assert matching(ctx, patients, ("identifier", "|123")) == {"paul"}


def test_token_any_code_of_a_system(ctx, patients):
    assert matching(ctx, patients, ("identifier", f"{MRN}|")) == {"helene"}
    terms, _ = build_terms(ctx, "Patient", [("identifier", f"{MRN}|")])
    assert terms[0].field == "identifier" and terms[0].conditions == [f"{MRN}|"]


def test_token_term_drives_by_equality(ctx):
    (term,), applied = build_terms(ctx, "Patient", [("gender", "female")])
    assert (term.field, term.conditions) == ("gender", ["female"])
    assert applied == [("gender", "female")]


def test_boolean_token(ctx, patients):
    assert matching(ctx, patients, ("active", "true")) == {"helene"}


# -- dates -----------------------------------------------------------------------------------------
def test_date_prefixes(ctx, patients):
    assert matching(ctx, patients, ("birthdate", "ge1970")) == {"helene"}
    assert matching(ctx, patients, ("birthdate", "lt1970")) == {"paul"}
    assert matching(ctx, patients, ("birthdate", "1974-12")) == {"helene"}
    assert matching(ctx, patients, ("birthdate", "1974-12-24")) == set()


def test_date_range_from_two_criteria(ctx, patients):
    assert matching(ctx, patients, ("birthdate", "ge1950"), ("birthdate", "lt1970")) == {"paul"}


def test_date_terms_carry_bounds_for_the_planner(ctx):
    terms, _ = build_terms(ctx, "Patient", [("birthdate", "ge1970"), ("birthdate", "lt1980")])
    assert [t.bounds.code for t in terms] == ["birthdate", "birthdate"]


# -- strings ---------------------------------------------------------------------------------------
def test_string_matches_a_prefix_ignoring_case_and_accents(ctx, patients):
    assert matching(ctx, patients, ("name", "helene")) == {"helene"}
    assert matching(ctx, patients, ("name", "HÉL")) == {"helene"}
    assert matching(ctx, patients, ("family", "dur")) == {"paul"}


def test_string_does_not_match_inside_a_word(ctx, patients):
    assert matching(ctx, patients, ("family", "lene")) == set()


def test_string_contains(ctx, patients):
    assert matching(ctx, patients, ("family:contains", "LENE")) == {"helene"}


def test_string_exact_keeps_case_and_accents(ctx, patients):
    assert matching(ctx, patients, ("family:exact", "Hélène")) == {"helene"}
    assert matching(ctx, patients, ("family:exact", "Helene")) == set()
    assert matching(ctx, patients, ("family:exact", "Hél")) == set()


def test_string_term_is_a_prefix_range(ctx):
    (term,), _ = build_terms(ctx, "Patient", [("name", "Hél")])
    assert term.field == "name"
    assert term.conditions == [{"$gte": "hel", "$lt": "hel\U0010ffff"}]


# -- _id, :missing ---------------------------------------------------------------------------------
def test_id(ctx, patients):
    assert matching(ctx, patients, ("_id", "paul,anon")) == {"paul", "anon"}
    (term,), _ = build_terms(ctx, "Patient", [("_id", "paul,anon")])
    assert term.field == IDS and term.conditions == ["anon", "paul"]


def test_id_not(ctx, patients):
    assert matching(ctx, patients, ("_id:not", "paul")) == {"helene", "anon"}


def test_id_rejects_other_modifiers(ctx):
    with pytest.raises(FhirError) as raised:
        build_terms(ctx, "Patient", [("_id:exact", "paul")])
    assert raised.value.status == 400


def test_missing_true_is_a_scan(ctx, patients):
    assert matching(ctx, patients, ("gender:missing", "true")) == {"anon"}
    (term,), _ = build_terms(ctx, "Patient", [("gender:missing", "true")])
    assert not term.indexed


def test_missing_false_reads_every_key_of_the_parameter(ctx, patients):
    assert matching(ctx, patients, ("birthdate:missing", "false")) == {"helene", "paul"}
    (term,), _ = build_terms(ctx, "Patient", [("birthdate:missing", "false")])
    assert term.field == KEYS
    (keys,) = term.conditions
    assert isinstance(keys, KeyRange)
    assert keys.low < "birthdate.l=1974" < keys.high and keys.low < "birthdate=x" < keys.high
    assert not keys.low < "birthdatex=1" < keys.high


def test_missing_takes_true_or_false(ctx):
    with pytest.raises(FhirError) as raised:
        build_terms(ctx, "Patient", [("gender:missing", "yes")])
    assert raised.value.status == 400


# -- unknown parameters ----------------------------------------------------------------------------
def test_unknown_parameter_is_ignored_with_a_warning(ctx, patients):
    terms, applied = build_terms(ctx, "Patient", [("foo", "x"), ("gender", "male")])
    assert len(terms) == 1 and applied == [("gender", "male")]
    (warning,) = ctx.warnings
    assert warning.severity == "warning" and "foo" in warning.diagnostics


def test_unknown_parameter_is_an_error_when_strict(server):
    with pytest.raises(FhirError) as raised:
        build_terms(Context(server, BASE, strict=True, reach=EVERYTHING), "Patient", [("foo", "x")])
    assert raised.value.status == 400
    assert "foo" in str(raised.value)


def test_parameter_of_another_type_is_unknown(ctx):
    terms, _ = build_terms(ctx, "Patient", [("code", "x")])
    assert terms == [] and len(ctx.warnings) == 1


def test_only_references_chain(ctx):
    with pytest.raises(FhirError) as raised:
        build_terms(ctx, "Patient", [("gender.name", "x")])
    assert raised.value.status == 400
