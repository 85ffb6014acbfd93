"""composite search (R4 search.html#composite): `a$b` matches when one element satisfies every
component at once — Observation `code-value-quantity`, `component-code-value-quantity`,
`combo-code-value-quantity`, `code-value-concept`, `code-value-date`, `code-value-string`."""

from __future__ import annotations

import pytest

from .support import observation, system

UCUM = "http://unitsofmeasure.org"
LOINC = "http://loinc.org"


def _q(value, code="mm[Hg]"):
    return {"value": value, "unit": code, "system": UCUM, "code": code}


@pytest.fixture
def bp(data):
    """Blood pressures: systolic and diastolic as components; a weight with a top-level value."""
    s = system()

    def pressure(systolic, diastolic):
        return data.create(observation(("http://loinc.org", "85354-9"), component=[
            {"code": {"coding": [{"system": s, "code": "sys"}]}, "valueQuantity": _q(systolic)},
            {"code": {"coding": [{"system": s, "code": "dia"}]}, "valueQuantity": _q(diastolic)}]))["id"]

    return s, {
        "high": pressure(150, 95),
        "normal": pressure(120, 80),
        "weight": data.create(observation((s, "weight"), valueQuantity=_q(80, "kg")))["id"],
    }


def test_component_code_value_quantity_same_component(data, bp):
    s, ids = bp
    q = "component-code-value-quantity"
    assert data.ids("/Observation", {q: f"{s}|sys$120|{UCUM}|mm[Hg]"}) == {ids["normal"]}
    assert data.ids("/Observation", {q: f"{s}|dia$80"}) == {ids["normal"]}
    # 80 is a diastolic value, not a systolic one: the two halves must hold in one component
    assert data.ids("/Observation", {q: f"{s}|sys$80"}) == set()
    assert data.ids("/Observation", {q: f"{s}|sys$gt130"}) == {ids["high"]}
    assert data.ids("/Observation", {q: f"{s}|dia$lt90|{UCUM}|mm[Hg]"}) == {ids["normal"]}
    assert data.ids("/Observation", {q: f"{s}|dia$lt90|{UCUM}|kg"}) == set()


def test_code_value_quantity_top_level(data, bp):
    s, ids = bp
    assert data.ids("/Observation", {"code-value-quantity": f"{s}|weight$80|{UCUM}|kg"}) == {ids["weight"]}
    assert data.ids("/Observation", {"code-value-quantity": f"{s}|weight$ge80"}) == {ids["weight"]}
    assert data.ids("/Observation", {"code-value-quantity": f"{s}|weight$gt80"}) == set()
    # components are not the observation's own value
    assert data.ids("/Observation", {"code-value-quantity": f"{s}|sys$120"}) == set()


def test_combo_looks_at_the_observation_and_its_components(data, bp):
    s, ids = bp
    q = "combo-code-value-quantity"
    assert data.ids("/Observation", {q: f"{s}|weight$80"}) == {ids["weight"]}
    assert data.ids("/Observation", {q: f"{s}|dia$80"}) == {ids["normal"]}
    assert data.ids("/Observation", {q: f"{s}|sys$80"}) == set()


def test_or_and(data, bp):
    s, ids = bp
    q = "component-code-value-quantity"
    assert data.ids("/Observation", {q: f"{s}|sys$150,{s}|dia$80"}) == {ids["high"], ids["normal"]}
    assert data.ids("/Observation", [(q, f"{s}|sys$120"), (q, f"{s}|dia$80")]) == {ids["normal"]}
    assert data.ids("/Observation", [(q, f"{s}|sys$120"), (q, f"{s}|dia$95")]) == set()


def test_code_value_concept_date_string(data):
    s = system()
    concept = data.create(observation((s, "blood-group"),
                                      valueCodeableConcept={"coding": [{"system": s, "code": "A+"}]}))["id"]
    text = data.create(observation((s, "note"), valueString="Dollar $ and, comma"))["id"]
    assert data.ids("/Observation", {"code-value-concept": f"{s}|blood-group${s}|A+"}) == {concept}
    assert data.ids("/Observation", {"code-value-concept": f"{s}|blood-group${s}|B+"}) == set()
    assert data.ids("/Observation", {"code-value-string": f"{s}|note$dollar"}) == {text}
    # escaped `$` and `,` inside a component value
    assert data.ids("/Observation", {"code-value-string": f"{s}|note$Dollar \\$ and\\, co"}) == {text}


def test_code_value_date(data):
    s = system()
    dated = data.create(observation((s, "lmp"), valueDateTime="2021-03-04"))["id"]
    assert data.ids("/Observation", {"value-date": "2021-03-04"}) == {dated}
    assert data.ids("/Observation", {"code-value-date": f"{s}|lmp$2021-03"}) == {dated}
    assert data.ids("/Observation", {"code-value-date": f"{s}|lmp$gt2021-03-04"}) == set()


def _sequence(data, s):
    return data.create({"resourceType": "MolecularSequence", "coordinateSystem": 0,
                        "referenceSeq": {"referenceSeqId": {"coding": [{"system": s, "code": "NC_1"}]},
                                         "windowStart": 10, "windowEnd": 20},
                        "variant": [{"start": 100, "end": 200}]})["id"]


def test_composite_of_three_components(data):
    s = system()
    seq = _sequence(data, s)
    assert data.ids("/MolecularSequence", {"referenceseqid-window-coordinate": f"{s}|NC_1$10$20"}) == {seq}
    assert data.ids("/MolecularSequence", {"referenceseqid-window-coordinate": f"{s}|NC_1$10$21"}) == set()
    assert data.ids("/MolecularSequence", {"referenceseqid-window-coordinate": f"{s}|NC_1$lt11$gt19"}) == {seq}


def test_composite_with_a_resource_level_component(data):
    s = system()
    seq = _sequence(data, s)
    assert data.ids("/MolecularSequence", {"referenceseqid-variant-coordinate": f"{s}|NC_1$100$200"}) == {seq}


@pytest.mark.parametrize("value", ["onlyone", "a$b$c"])
def test_wrong_number_of_components_is_400(data, value):
    r = data.get("/Observation", {"code-value-quantity": value})
    assert r.status_code == 400, r.text
    assert r.json()["resourceType"] == "OperationOutcome"


def test_bad_quantity_component_is_400(data):
    r = data.get("/Observation", {"code-value-quantity": f"{LOINC}|1$abc"})
    assert r.status_code == 400, r.text


def test_modifier_on_composite_is_400(data):
    r = data.get("/Observation", {"code-value-quantity:exact": f"{LOINC}|1$1"})
    assert r.status_code == 400, r.text
