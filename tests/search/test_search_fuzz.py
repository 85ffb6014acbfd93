"""Fuzzed searches (hypothesis) on a linked dataset: random mixes of known parameters, modifiers,
prefixes, chains, `_has`, `_sort`, `_include`/`_revinclude` (with `:iterate` and `*`), `_count`,
`_summary` and `_elements`. Whatever the mix, the answer is never a 5xx: a 200 is a valid
searchset Bundle (each resource once per mode, matches within `_count`), anything else an
OperationOutcome (400 bad input, 422 past a limit, 408 past the time budget). Each case has a
deadline; the server's own budget (FHIR_REQUEST_TIMEOUT_S) is shorter, so it answers in time.

The default run is small and derandomized (a CI failure is a regression, not a lucky draw);
FHIR_FUZZ_EXAMPLES=1000 explores more, with fresh random examples.
"""

from __future__ import annotations

import os
from typing import Any

import httpx
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from tests.conftest import start_server

from .linked_data import Shape, transaction
from .support import TAG_SYSTEM

_DEEP = "FHIR_FUZZ_EXAMPLES" in os.environ
FUZZ = settings(deadline=10_000, max_examples=int(os.environ.get("FHIR_FUZZ_EXAMPLES", "60")),
                derandomize=not _DEEP, database=None,
                suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow])
TAG = (TAG_SYSTEM, "fuzz-linked")
SMALL = Shape(organizations=2, practitioners=4, patients=10, encounters=15, observations=30)

# parameter → (kind, sample values) per type; kinds choose modifiers and prefixes
PARAMS: dict[str, dict[str, tuple[str, list[str]]]] = {
    "Patient": {"family": ("string", ["Linked1", "link", "Linked", "é"]), "name": ("string", ["Linked0", "x"]),
                "gender": ("token", ["female", "male", "http://hl7.org/fhir/administrative-gender|female"]),
                "birthdate": ("date", ["1950", "1955-01-01", "2000-01-01T00:00:00Z"]),
                "general-practitioner": ("reference", ["Practitioner/none"]),
                "organization": ("reference", ["Organization/none"]), "active": ("token", ["true", "false"])},
    "Observation": {"code": ("token", ["http://loinc.org|8867-4", "8867-4", "http://loinc.org|"]),
                    "status": ("token", ["final", "amended"]),
                    "date": ("date", ["2024-02", "2024-02-03", "2024"]),
                    "value-quantity": ("quantity", ["70", "70||/min", "6e1|http://unitsofmeasure.org|/min"]),
                    "subject": ("reference", ["Patient/none"]), "encounter": ("reference", ["Encounter/none"]),
                    "performer": ("reference", ["Practitioner/none"]),
                    "has-member": ("reference", ["Observation/none"])},
    "Encounter": {"status": ("token", ["finished"]), "class": ("token", ["AMB"]),
                  "date": ("date", ["2024-01", "2024-01-05"]), "subject": ("reference", ["Patient/none"]),
                  "participant": ("reference", ["Practitioner/none"]),
                  "service-provider": ("reference", ["Organization/none"]),
                  "part-of": ("reference", ["Encounter/none"])},
    "Practitioner": {"family": ("string", ["Prac1", "prac"]), "name": ("string", ["Prac"])},
    "Organization": {"name": ("string", ["Org 0", "org"]), "partof": ("reference", ["Organization/none"])},
}
MODIFIERS = {"string": ["", ":exact", ":contains", ":missing"], "token": ["", ":not", ":text", ":missing"],
             "date": ["", ":missing"], "quantity": ["", ":missing"],
             "reference": ["", ":missing", ".name", ".family", ".status", ":Patient.gender"]}
PREFIXES = ["", "eq", "ne", "gt", "lt", "ge", "le", "sa", "eb", "ap"]
REVINCLUDES = ["Observation:subject", "Encounter:subject", "Patient:organization", "Patient:general-practitioner",
               "Observation:performer", "Encounter:participant", "Observation:has-member", "Organization:partof",
               "Encounter:part-of", "*"]
SUMMARIES = ["true", "false", "text", "data", "count"]
ELEMENTS = ["status", "subject", "name", "gender", "code", "id", "unknownElement"]


@st.composite
def criterion(draw, type_: str) -> tuple[str, str]:
    code = draw(st.sampled_from(sorted(PARAMS[type_])))
    kind, samples = PARAMS[type_][code]
    modifier = draw(st.sampled_from(MODIFIERS[kind]))
    if modifier == ":missing":
        return code + modifier, draw(st.sampled_from(["true", "false", "maybe"]))
    if modifier.startswith("."):  # a chain: a string value for the target's parameter
        return code + modifier, draw(st.sampled_from(["Linked1", "Prac", "final", "female", "org"]))
    if modifier.startswith(":Patient."):
        return code + modifier, draw(st.sampled_from(["female", "male"]))
    values = draw(st.lists(st.sampled_from(samples) | st.text(max_size=6), min_size=1, max_size=3))
    if kind in ("date", "quantity"):
        values = [draw(st.sampled_from(PREFIXES)) + v for v in values]
    return code + modifier, ",".join(values)


@st.composite
def search(draw) -> tuple[str, list[tuple[str, str]]]:
    """A type and a mix of criteria and result parameters."""
    type_ = draw(st.sampled_from(sorted(PARAMS)))
    params = draw(st.lists(criterion(type_), max_size=3))
    if draw(st.booleans()):
        params.append(("_has:Observation:subject:status", draw(st.sampled_from(["final", "x"]))))
    if draw(st.booleans()):
        keys = draw(st.lists(st.sampled_from([*sorted(PARAMS[type_]), "_id", "_lastUpdated", "nope"]), max_size=4))
        params.append(("_sort", ",".join(draw(st.sampled_from(["", "-"])) + k for k in keys)))
    for name in ("_include", "_revinclude"):
        for _ in range(draw(st.integers(0, 2))):
            iterate = draw(st.sampled_from(["", ":iterate"]))
            if name == "_include":
                value = draw(st.sampled_from([*(f"{type_}:{c}" for c, (kind, _) in PARAMS[type_].items()
                                                if kind == "reference"), "*", f"{type_}:*", "Patient:nope"]))
            else:
                value = draw(st.sampled_from(REVINCLUDES))
            params.append((name + iterate, value))
    if draw(st.booleans()):
        params.append(("_count", str(draw(st.integers(0, 60)))))
    if draw(st.booleans()):
        params.append(("_summary", draw(st.sampled_from(SUMMARIES))))
    if draw(st.booleans()):
        params.append(("_elements", ",".join(draw(st.lists(st.sampled_from(ELEMENTS), min_size=1, max_size=3)))))
    return type_, params


@pytest.fixture(scope="module")
def fuzz_server(tmp_path_factory, r4_examples):
    running = start_server(tmp_path_factory.mktemp("search-fuzz"),
                           extra_env={"FHIR_AUDIT": "off", "FHIR_REQUEST_TIMEOUT_S": "8"})
    yield running
    running.stop()


@pytest.fixture(scope="module")
def http(fuzz_server):
    with httpx.Client(base_url=fuzz_server.base_url, timeout=60, headers={"Accept": "application/fhir+json"}) as c:
        r = c.post("", json=transaction(TAG, SMALL), headers={"Prefer": "return=minimal"})
        assert r.status_code == 200, r.text[:2000]
        yield c


def assert_searchset(bundle: dict[str, Any], params: list[tuple[str, str]]) -> None:
    assert bundle["resourceType"] == "Bundle" and bundle["type"] == "searchset", bundle
    assert any(link["relation"] == "self" for link in bundle["link"])
    seen: dict[str, set[str]] = {"match": set(), "include": set(), "outcome": set()}
    for entry in bundle.get("entry") or ():
        mode = entry["search"]["mode"]
        resource = entry["resource"]
        key = f"{resource['resourceType']}/{resource.get('id')}"
        assert key not in seen[mode], f"{key} twice as {mode}"
        seen[mode].add(key)
        if mode != "outcome":
            assert entry["fullUrl"].endswith("/" + key), entry["fullUrl"]
    count = next((int(v) for k, v in params if k == "_count"), None)
    if count is not None:
        assert len(seen["match"]) <= count
    assert not seen["match"] & seen["include"], "a match repeated as an include"


@FUZZ
@given(search())
def test_any_search_mix_is_answered_without_a_5xx(http, case):
    type_, params = case
    r = http.get(f"/{type_}", params=[*params, ("_tag", "|".join(TAG))])
    what = f"GET /{type_}?{params} → {r.status_code}: {r.text[:600]}"
    assert r.status_code < 500, what
    body = r.json()
    if r.status_code == 200:
        assert_searchset(body, params)
    else:
        assert r.status_code in (400, 404, 408, 422), what
        assert body["resourceType"] == "OperationOutcome", what
