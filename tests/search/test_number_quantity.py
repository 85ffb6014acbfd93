"""number and quantity search (R4 search.html#number, #quantity): a search value stands for the
range of its implicit precision (`100` = [99.5, 100.5), `0.80` = [0.795, 0.805)); `eq`/`ne` test
that range, `gt lt ge le` compare values, `sa eb` like gt/lt, `ap` is within 10%. Quantities are
`[prefix]number|system|code`, `number||code` (code or unit), or `number` alone. With the UCUM
system and a unit that converts, values are compared in canonical units (5.4 mg = 5400 ug)."""

from __future__ import annotations

import pytest

from .support import observation

UCUM = "http://unitsofmeasure.org"


def _risk(data, probability):
    data.placeholders("Patient/nobody")
    return data.create({"resourceType": "RiskAssessment", "status": "final",
                        "subject": {"reference": "Patient/nobody"},
                        "prediction": [{"probabilityDecimal": probability}]})["id"]


@pytest.fixture
def risks(data):
    return {v: _risk(data, float(v)) for v in ("0.8", "0.85", "0.9", "100")}


@pytest.mark.parametrize("query, expected", [
    ("0.8", ("0.8",)),  # [0.75, 0.85): 0.85 is outside, the range is half-open
    ("0.80", ("0.8",)),
    ("eq0.85", ("0.85",)),
    ("0.9", ("0.85", "0.9")),  # [0.85, 0.95): 0.85 is inside
    ("1", ("0.8", "0.85", "0.9")),  # [0.5, 1.5)
    ("1e2", ("100",)),  # [50, 150)
    ("100", ("100",)),
    ("100.0", ("100",)),
    ("99", ()),
    ("ne0.8", ("0.85", "0.9", "100")),
    ("gt0.8", ("0.85", "0.9", "100")),
    ("ge0.85", ("0.85", "0.9", "100")),
    ("lt0.85", ("0.8",)),
    ("le0.85", ("0.8", "0.85")),
    ("sa0.85", ("0.9", "100")),
    ("eb0.85", ("0.8",)),
    ("ap0.8", ("0.8", "0.85")),  # [0.72, 0.88]
    ("ap95", ("100",)),  # [85.5, 104.5]
    ("ap80", ()),
])
def test_number_prefixes_and_precision(data, risks, query, expected):
    assert data.ids("/RiskAssessment", {"probability": query}) == {risks[v] for v in expected}


def test_number_or_and(data, risks):
    assert data.ids("/RiskAssessment", {"probability": "0.8,100"}) == {risks["0.8"], risks["100"]}
    assert data.ids("/RiskAssessment", [("probability", "gt0.8"), ("probability", "lt1")]) == \
        {risks["0.85"], risks["0.9"]}


@pytest.mark.parametrize("value", ["abc", "gt", "1,2x", "0x10", "NaN", "Infinity"])
def test_invalid_numbers_are_400(data, value):
    r = data.get("/RiskAssessment", {"probability": value})
    assert r.status_code == 400, r.text
    assert r.json()["resourceType"] == "OperationOutcome"


def test_number_with_more_digits_than_a_double(data):
    from fhir_server import jsonio

    data.placeholders("Patient/nobody")
    body = data.tagged({"resourceType": "RiskAssessment", "status": "final", "subject": {"reference": "Patient/nobody"},
                        "prediction": [{"probabilityDecimal": jsonio.Decimal("99.999999999999999999")}]})  # ras-2: <= 100
    r = data.client.post("/RiskAssessment", content=jsonio.dumps(body), headers={"Content-Type": "application/fhir+json"})
    assert r.status_code == 201, r.text
    assert b"99.999999999999999999" in r.content
    assert data.ids("/RiskAssessment", {"probability": "99.999999999999999999"}) == {r.json()["id"]}


@pytest.fixture
def quantities(data):
    def q(value, **unit):
        return data.create(observation(valueQuantity={"value": value, **unit}))["id"]

    return {
        "mg": q(5.4, unit="mg", system=UCUM, code="mg"),
        "milligram": q(5.4, unit="milligram", system=UCUM, code="mg"),
        "mmol": q(5.4, unit="mmol/L", system=UCUM, code="mmol/L"),
        "six": q(6, unit="mg", system=UCUM, code="mg"),
        "other": q(5.4, unit="mg", system="http://example.org/units", code="mg"),
        "nounit": q(5.4),
    }


@pytest.mark.parametrize("query, expected", [
    (f"5.4|{UCUM}|mg", ("mg", "milligram")),
    ("5.4||mg", ("mg", "milligram", "other")),  # code or unit, any system
    ("5.4||milligram", ("milligram",)),  # the human unit
    ("5.4", ("mg", "milligram", "mmol", "other", "nounit")),
    (f"5.40|{UCUM}|mg", ("mg", "milligram")),
    (f"5|{UCUM}|mg", ("mg", "milligram")),  # [4.5, 5.5)
    (f"5.4|{UCUM}|g", ()),
    ("5.4|http://example.org/units|mg", ("other",)),
    (f"gt5.4|{UCUM}|mg", ("six",)),
    ("lt6||mg", ("mg", "milligram", "other")),
    ("ge5.4||mg", ("mg", "milligram", "six", "other")),
    (f"ne5.4|{UCUM}|mg", ("six",)),
    ("ap6.5||mg", ("six",)),
    (f"5.4|{UCUM}|mmol/L", ("mmol",)),
])
def test_quantity_forms(data, quantities, query, expected):
    assert data.ids("/Observation", {"value-quantity": query}) == {quantities[k] for k in expected}


def test_quantity_or(data, quantities):
    assert data.ids("/Observation", {"value-quantity": f"6|{UCUM}|mg,5.4|{UCUM}|mmol/L"}) == \
        {quantities["six"], quantities["mmol"]}


def test_quantity_in_a_backbone_element(data):
    obs = data.create(observation(component=[
        {"code": {"text": "a"}, "valueQuantity": {"value": 120, "system": UCUM, "code": "mm[Hg]"}},
        {"code": {"text": "b"}, "valueQuantity": {"value": 80, "system": UCUM, "code": "mm[Hg]"}}]))["id"]
    assert data.ids("/Observation", {"component-value-quantity": f"80|{UCUM}|mm[Hg]"}) == {obs}
    assert data.ids("/Observation", {"component-value-quantity": f"gt100|{UCUM}|mm[Hg]"}) == {obs}
    assert data.ids("/Observation", {"component-value-quantity": f"gt130|{UCUM}|mm[Hg]"}) == set()
    assert data.ids("/Observation", {"value-quantity": "80"}) == set()


@pytest.fixture
def ucum_quantities(data):
    def q(value, code, system=UCUM):
        return data.create(observation(valueQuantity={"value": value, "unit": code, "system": system,
                                                      "code": code}))["id"]

    return {"5.4 mg": q(5.4, "mg"), "5400 ug": q(5400, "ug"), "0.0054 g": q(0.0054, "g"),
            "6 mg": q(6, "mg"), "5.4 mmol/L": q(5.4, "mmol/L"), "5.4 mg elsewhere": q(5.4, "mg", "urn:units"),
            "37 Cel": q(37, "Cel"), "99.5 [degF]": q(99.5, "[degF]"), "90 /min": q(90, "/min"),
            "1.5 /s": q(1.5, "/s"), "5 [iU]/L": q(5, "[iU]/L"), "5 /L": q(5, "/L")}


@pytest.mark.parametrize("query, expected", [
    (f"5.4|{UCUM}|mg", ("5.4 mg", "5400 ug", "0.0054 g")),
    (f"5400|{UCUM}|ug", ("5.4 mg", "5400 ug", "0.0054 g")),
    (f"0.0054|{UCUM}|g", ("5.4 mg", "5400 ug", "0.0054 g")),
    (f"gt5.4|{UCUM}|mg", ("6 mg",)),
    (f"ge5400|{UCUM}|ug", ("5.4 mg", "5400 ug", "0.0054 g", "6 mg")),
    (f"lt0.006|{UCUM}|g", ("5.4 mg", "5400 ug", "0.0054 g")),
    (f"ne5.4|{UCUM}|mg", ("6 mg",)),
    (f"gt37|{UCUM}|Cel", ("99.5 [degF]",)),  # 99.5 °F = 37.5 °C: offsets, not only factors
    (f"lt99|{UCUM}|[degF]", ("37 Cel",)),  # 37 °C = 98.6 °F
    (f"90|{UCUM}|/min", ("90 /min", "1.5 /s")),
    (f"5|{UCUM}|[iU]/L", ("5 [iU]/L",)),  # an arbitrary unit compares with itself only
    (f"5|{UCUM}|/L", ("5 /L",)),
    ("5.4||mg", ("5.4 mg", "5.4 mg elsewhere")),  # without the UCUM system: as written
    ("5.4", ("5.4 mg", "5.4 mg elsewhere", "5.4 mmol/L")),  # canonical values are not seen by unitless searches
    (f"5.4|{UCUM}|kg", ()),
    (f"5.4|{UCUM}|mmol/L", ("5.4 mmol/L",)),
])
def test_ucum_units_are_converted(data, ucum_quantities, query, expected):
    assert data.ids("/Observation", {"value-quantity": query}) == {ucum_quantities[k] for k in expected}


def test_ucum_ranges_in_canonical_units():
    from fhir_server.search.params import quantity

    def canonical(value):
        return [(e["l"], e["h"], e["k"]) for e in quantity.index("r", [(value, None)])["r"] if e.get("c")]

    assert canonical({"low": {"value": 1, "system": UCUM, "code": "g"},
                      "high": {"value": 2000, "system": UCUM, "code": "mg"}}) == [(0.001, 0.002, ["ucum=kilogram"])]
    assert canonical({"low": {"value": 1, "system": UCUM, "code": "g"}}) == [(0.001, float("inf"), ["ucum=kilogram"])]
    assert canonical({"low": {"value": 1, "system": UCUM, "code": "g"},
                      "high": {"value": 2, "system": UCUM, "code": "m"}}) == []  # not one dimension
    assert canonical({"low": {"value": 1, "code": "g"}, "high": {"value": 2, "code": "g"}}) == []  # not UCUM


def test_ucum_conversion_leaves_sorting_as_written(data):
    ids = [data.create(observation(valueQuantity={"value": v, "system": UCUM, "code": c}))["id"]
           for v, c in ((3, "g"), (2000, "mg"), (1, "kg"))]
    r = data.get("/Observation", {"value-quantity": f"ge1|{UCUM}|g", "_sort": "value-quantity"})
    assert [e["resource"]["id"] for e in r.json()["entry"]] == [ids[2], ids[0], ids[1]]  # 1, 3, 2000 as written


def test_money(data):
    cheap = data.create({"resourceType": "Invoice", "status": "issued",
                         "totalNet": {"value": 40.22, "currency": "EUR"}})["id"]
    data.create({"resourceType": "Invoice", "status": "issued", "totalNet": {"value": 40.22, "currency": "USD"}})
    assert data.ids("/Invoice", {"totalnet": "40.22||EUR"}) == {cheap}
    assert data.ids("/Invoice", [("totalnet", "gt40||EUR"), ("totalnet", "lt41||EUR")]) == {cheap}


@pytest.mark.parametrize("value", [
    "5.4|mg", "5.4|a|b|c", "abc||mg", "abc", "|http://unitsofmeasure.org|mg",
])
def test_invalid_quantities_are_400(data, value):
    r = data.get("/Observation", {"value-quantity": value})
    assert r.status_code == 400, r.text
