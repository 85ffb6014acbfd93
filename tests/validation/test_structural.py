"""The structural validator, rule by rule: broken resources are rejected at the right place
with the right issue code, valid ones pass."""

from __future__ import annotations

import copy
import threading

import pytest

from fhir_server import jsonio
from fhir_server.definitions.model import COMPLEX, PRIMITIVE, RESOURCE, SYSTEM, Models, models_for
from fhir_server.definitions.registry import FHIR_BASE
from fhir_server.validation.structural import StructuralValidator

XHTML = 'http://www.w3.org/1999/xhtml'
DIV = f'<div xmlns="{XHTML}"><p>Hello</p></div>'


def found(validator, resource, resource_type=None, **kw):
    """(code, expression) of every issue."""
    issues = validator.validate(resource, resource_type, **kw)
    for issue in issues:
        assert issue.severity == "error"
        assert issue.diagnostics and len(issue.expression) <= 1
    return [(i.code, i.expression[0] if i.expression else None) for i in issues]


def only(validator, resource, code, expression, resource_type=None, contains=None, **kw):
    issues = validator.validate(resource, resource_type, **kw)
    got = [(i.code, i.expression[0] if i.expression else None) for i in issues]
    assert got == [(code, expression)], [i.to_json() for i in issues]
    if contains:
        assert contains in issues[0].diagnostics, issues[0].diagnostics
    return issues[0]


def patient(**fields):
    return {"resourceType": "Patient", **fields}


def observation(**fields):
    return {"resourceType": "Observation", "status": "final", "code": {"text": "x"}, **fields}


# -- valid resources ------------------------------------------------------------------------------

VALID = {
    "minimal patient": patient(),
    "rich patient": patient(
        id="p1", meta={"versionId": "1", "lastUpdated": "2020-01-01T10:00:00.123+01:00"},
        text={"status": "generated", "div": DIV}, active=True,
        name=[{"use": "official", "family": "Dupont", "given": ["Jean", "Pierre"]}],
        gender="male", birthDate="1970-02-28", deceasedDateTime="2020-02-29T23:59:60Z",
        multipleBirthInteger=2, address=[{"line": ["1 rue"], "city": "Paris"}],
        contact=[{"name": {"text": "x"}, "telecom": [{"system": "phone", "value": "0102"}]}],
        communication=[{"language": {"text": "fr"}, "preferred": False}],
        extension=[{"url": "http://example.org/x", "valueDecimal": 1.5},
                   {"url": "http://example.org/y", "extension": [{"url": "a", "valueString": "b"}]}]),
    "primitive extension": patient(
        birthDate="1970", _birthDate={"id": "b", "extension": [{"url": "http://e.org/t", "valueTime": "10:00:00"}]}),
    "companion without value": patient(_gender={"extension": [{"url": "http://e.org/dar", "valueCode": "unknown"}]}),
    "aligned arrays with nulls": patient(name=[{"given": ["A", None, "C"],
                                                "_given": [None, {"extension": [{"url": "u", "valueString": "B"}]},
                                                           None]}]),
    "companion array alone": patient(name=[{"_given": [{"id": "g1"}]}]),
    "required via companion": {"resourceType": "Observation", "code": {"text": "x"},
                               "_status": {"extension": [{"url": "u", "valueCode": "unknown"}]}},
    "choice and quantity": observation(valueQuantity={"value": 1.50, "unit": "mg", "comparator": "<"}),
    "decimal forms": observation(valueQuantity={"value": 12}, referenceRange=[{"low": {"value": -0.5},
                                                                               "high": {"value": 1e3}}]),
    "contained and Bundle": {"resourceType": "Bundle", "type": "collection", "entry": [
        {"fullUrl": "urn:uuid:4b9f7b6e-0f0c-4c8e-9e62-4d1a4e1f0a11", "resource": patient(
            contained=[{"resourceType": "Organization", "id": "o", "name": "Org"}],
            managingOrganization={"reference": "#o"})},
        {"resource": {"resourceType": "Binary", "contentType": "text/plain", "data": "aGVsbG8="}},
        {"response": {"status": "201", "outcome": {"resourceType": "OperationOutcome",
                                                   "issue": [{"severity": "information", "code": "informational"}]}}}]},
    "Parameters with resource": {"resourceType": "Parameters", "parameter": [
        {"name": "r", "resource": patient()}, {"name": "v", "valueInteger": -3},
        {"name": "p", "part": [{"name": "q", "valueUri": "urn:x"}]}]},
    "Questionnaire nested items": {"resourceType": "Questionnaire", "status": "draft", "item": [
        {"linkId": "1", "type": "group", "item": [{"linkId": "1.1", "type": "string",
                                                    "item": [{"linkId": "1.1.1", "type": "display"}]}]}]},
    "Condition onsetAge": {"resourceType": "Condition", "subject": {"reference": "Patient/1"},
                           "onsetAge": {"value": 3, "unit": "a", "system": "http://unitsofmeasure.org", "code": "a"}},
    "R4-only MedicinalProduct": {"resourceType": "MedicinalProduct", "name": [{"productName": "Aspirin"}]},
    "unicode no-break space in string": patient(name=[{"family": "de\u00a0la Tour"}]),
    "huge decimal literal": observation(valueQuantity={"value": jsonio.loads("1e400")}),
}


@pytest.mark.parametrize("name", list(VALID))
def test_valid_resources_pass(validator, name):
    resource = VALID[name]
    before = copy.deepcopy(resource)
    assert found(validator, resource) == []
    assert resource == before  # never modified


def test_valid_resource_from_json_text(validator):
    text = '{"resourceType": "Observation", "status": "final", "code": {"text": "x"}, "valueQuantity": {"value": 1.50}}'
    assert validator.validate(jsonio.loads(text), "Observation") == []


# -- the root ---------------------------------------------------------------------------------------

def test_root_must_be_an_object(validator):
    assert found(validator, [patient()]) == [("invalid", None)]
    assert found(validator, "Patient", "Patient") == [("invalid", "Patient")]


def test_resource_type_missing(validator):
    only(validator, {"id": "1"}, "required", "Resource", contains="resourceType")
    only(validator, {"id": "1"}, "required", "Patient", resource_type="Patient")


def test_resource_type_unknown_or_abstract(validator):
    only(validator, {"resourceType": "Patiant"}, "not-supported", "Patiant", contains="'Patient'")
    only(validator, {"resourceType": "DomainResource"}, "not-supported", "DomainResource", contains="abstract")
    only(validator, {"resourceType": "HumanName"}, "not-supported", "HumanName", contains="data type")
    only(validator, {"resourceType": 12}, "invalid", "Resource.resourceType")


def test_resource_type_must_match_the_expected_one(validator):
    only(validator, patient(), "invalid", "Patient", resource_type="Observation", contains="Observation")
    assert found(validator, patient(), "Patient") == []


# -- element names ------------------------------------------------------------------------------------

def test_unknown_elements(validator):
    issue = only(validator, patient(foo=1), "structure", "Patient.foo", contains="Unknown element 'foo'")
    assert "birthDate" in issue.diagnostics  # says what is allowed
    only(validator, patient(name=[{"family": "x"}, {"famly": "y"}]), "structure", "Patient.name[1].famly",
         contains="did you mean 'family'")
    only(validator, patient(contained=[{"resourceType": "Organization", "nom": "x"}]), "structure",
         "Patient.contained[0].nom")


def test_absurd_names_give_short_reports(validator):
    issue = only(validator, patient(**{"x" * 100000: 1}), "structure", "Patient." + "x" * 80 + "…")
    assert len(issue.diagnostics) < 300
    issue = only(validator, {"resourceType": "P" * 100000}, "not-supported", "Resource")
    assert len(issue.diagnostics) < 300


def test_resource_type_only_at_resource_roots(validator):
    only(validator, patient(name=[{"resourceType": "HumanName", "family": "x"}]), "structure",
         "Patient.name[0].resourceType", contains="root of a resource")


def test_choice_needs_a_typed_name(validator):
    only(validator, observation(value={"value": 1}), "structure", "Observation.value", contains="valueQuantity")
    only(validator, observation(valueMoney={"value": 1}), "structure", "Observation.valueMoney",
         contains="not an allowed type for value[x]")


def test_only_one_choice_variant(validator):
    only(validator, observation(valueString="a", valueBoolean=True), "structure", "Observation.valueBoolean",
         contains="Only one")
    only(validator, patient(deceasedBoolean=True, _deceasedDateTime={"id": "x"}), "structure",
         "Patient._deceasedDateTime")


def test_choice_value_is_checked_under_its_json_name(validator):
    only(validator, observation(valueQuantity={"value": "1.5"}), "value", "Observation.valueQuantity.value",
         contains="JSON number")
    only(validator, patient(extension=[{"url": "http://e.org", "valueBoolean": "yes"}]), "value",
         "Patient.extension[0].valueBoolean")


# -- cardinality and JSON shape ------------------------------------------------------------------------

def test_single_element_must_not_be_an_array(validator):
    only(validator, patient(gender=["male"]), "structure", "Patient.gender", contains="does not repeat")
    only(validator, patient(maritalStatus=[{"text": "x"}]), "structure", "Patient.maritalStatus")


def test_repeating_element_must_be_an_array(validator):
    only(validator, patient(name={"family": "x"}), "structure", "Patient.name", contains="JSON array")
    only(validator, patient(name=[{"given": "Jean"}]), "structure", "Patient.name[0].given")


def test_required_elements(validator):
    assert sorted(found(validator, {"resourceType": "Observation"})) == [("required", "Observation.code"),
                                                                          ("required", "Observation.status")]
    only(validator, patient(communication=[{"preferred": True}]), "required", "Patient.communication[0].language",
         contains="'language'")
    only(validator, patient(extension=[{"valueString": "x"}]), "required", "Patient.extension[0].url",
         contains="'url'")
    only(validator, {"resourceType": "MedicinalProduct", "name": [{"namePart": [{"part": "x", "type": {"code": "x"}}]}]}, "required",
         "MedicinalProduct.name[0].productName", contains="productName")


def test_required_choice_lists_the_choices(validator):
    q = {"resourceType": "Questionnaire", "status": "draft",
         "item": [{"linkId": "1", "type": "string", "enableWhen": [{"question": "0", "operator": "exists"}]}]}
    only(validator, q, "required", "Questionnaire.item[0].enableWhen[0].answer", contains="'answerBoolean'")


def test_too_many_items(validator):
    report = {"resourceType": "DiagnosticReport", "status": "final", "code": {"text": "Lipids"},
              "result": [{"reference": f"Observation/{i}"} for i in range(5)]}
    assert found(validator, report) == []  # base DiagnosticReport: 0..*
    only(validator, report, "structure", "DiagnosticReport.result", definition=FHIR_BASE + "lipidprofile",
         contains="at most 4")
    report["result"] = report["result"][:4]
    assert found(validator, report, definition=FHIR_BASE + "lipidprofile") == []


def test_prohibited_element(validator):
    # Observation.referenceRange.low is a SimpleQuantity: comparator is 0..0
    only(validator, observation(referenceRange=[{"low": {"value": 1, "comparator": "<"}}]), "structure",
         "Observation.referenceRange[0].low.comparator", contains="0..0")


def test_empty_arrays_objects_and_nulls(validator):
    only(validator, patient(name=[]), "structure", "Patient.name", contains="Empty array")
    only(validator, patient(name=[{}]), "structure", "Patient.name[0]", contains="Empty object")
    only(validator, patient(maritalStatus={}), "structure", "Patient.maritalStatus")
    only(validator, patient(gender=None), "structure", "Patient.gender", contains="null")
    only(validator, patient(maritalStatus=None), "structure", "Patient.maritalStatus")
    only(validator, patient(name=[None]), "structure", "Patient.name[0]")
    only(validator, patient(name=[{"given": ["a", None]}]), "structure", "Patient.name[0].given[1]")
    only(validator, patient(name=[{"given": []}]), "structure", "Patient.name[0].given")
    only(validator, patient(contained=[{}]), "structure", "Patient.contained[0]")


def test_complex_element_must_be_an_object(validator):
    only(validator, patient(maritalStatus="married"), "structure", "Patient.maritalStatus", contains="JSON object")
    only(validator, patient(name=["Jean"]), "structure", "Patient.name[0]")


def test_primitive_must_not_be_an_object(validator):
    only(validator, patient(birthDate={"value": "1970"}), "value", "Patient.birthDate", contains="'_birthDate'")
    only(validator, patient(name=[{"given": [{"value": "x"}]}]), "value", "Patient.name[0].given[0]")


# -- primitive values -------------------------------------------------------------------------------

@pytest.mark.parametrize("resource, expression, text", [
    (patient(active="true"), "Patient.active", "boolean"),
    (patient(active=1), "Patient.active", "boolean"),
    (patient(multipleBirthInteger=1.5), "Patient.multipleBirthInteger", "integer"),
    (patient(multipleBirthInteger=jsonio.loads("2.0")), "Patient.multipleBirthInteger", "integer"),
    (patient(multipleBirthInteger="2"), "Patient.multipleBirthInteger", "integer"),
    (patient(multipleBirthInteger=True), "Patient.multipleBirthInteger", "integer"),
    (patient(multipleBirthInteger=2 ** 31), "Patient.multipleBirthInteger", "32-bit"),
    (patient(multipleBirthInteger=-(2 ** 31) - 1), "Patient.multipleBirthInteger", "32-bit"),
    (patient(photo=[{"size": -1}]), "Patient.photo[0].size", "unsignedInt"),
    (observation(effectiveTiming={"repeat": {"frequency": 0}}), "Observation.effectiveTiming.repeat.frequency",
     "positiveInt"),
    (observation(valueQuantity={"value": True}), "Observation.valueQuantity.value", "number"),
    (observation(valueQuantity={"value": float("nan")}), "Observation.valueQuantity.value", "finite"),
    (patient(gender=1), "Patient.gender", "string"),
    (patient(name=[{"family": ""}]), "Patient.name[0].family", "empty"),
    (patient(name=[{"family": "a\x0cb"}]), "Patient.name[0].family", "regular expression"),
    (patient(name=[{"family": "a\x01b"}]), "Patient.name[0].family", "U+0001"),
    (patient(name=[{"family": jsonio.loads('"a\\ud800"')}]), "Patient.name[0].family", "U+D800"),
    (patient(implicitRules="urn:a\x7fb\x1f"), "Patient.implicitRules", "U+001F"),
    (patient(name=[{"family": "x" * (1024 * 1024 + 1)}]), "Patient.name[0].family", "1048576"),
    (patient(gender=" male"), "Patient.gender", "code"),
    (patient(meta={"versionId": "bad id!"}), "Patient.meta.versionId", "id"),
    (patient(implicitRules="http://x y"), "Patient.implicitRules", "uri"),
    (patient(photo=[{"data": "abc"}]), "Patient.photo[0].data", "base64Binary"),
    (patient(birthDate="2020-02-30"), "Patient.birthDate", "February 2020 has 29 days"),
    (patient(birthDate="2021-02-29"), "Patient.birthDate", "28 days"),
    (patient(birthDate="2020-04-31"), "Patient.birthDate", "30 days"),
    (patient(birthDate="2020-13"), "Patient.birthDate", "regular expression"),
    (patient(birthDate="1970-01-01T10:00:00Z"), "Patient.birthDate", "date"),
    (patient(deceasedDateTime="2019-04-31T10:00:00Z"), "Patient.deceasedDateTime", "30 days"),
    (patient(deceasedDateTime="2019-04-01T10:00:00"), "Patient.deceasedDateTime", "dateTime"),
    (observation(issued="2020-01-01"), "Observation.issued", "instant"),
    (observation(valueTime="25:00:00"), "Observation.valueTime", "time"),
    (patient(id=""), "Patient.id", "empty"),
    (patient(extension=[{"url": "http://a b"}]), "Patient.extension[0].url", "uri"),
])
def test_bad_primitive_values(validator, resource, expression, text):
    only(validator, resource, "value", expression, contains=text)


def test_good_primitive_edge_values(validator):
    assert found(validator, patient(multipleBirthInteger=2 ** 31 - 1, birthDate="2000-02-29",
                                    photo=[{"size": 0, "data": "aGVs\nbG8="}])) == []
    assert found(validator, observation(valueQuantity={"value": jsonio.loads("-0.000")},
                                        effectiveTiming={"repeat": {"frequency": 1}})) == []


@pytest.mark.parametrize("div, text", [
    ("<div>no namespace</div>", "root element"),
    (f'<p xmlns="{XHTML}">x</p>', "root element"),
    (f'<div xmlns="{XHTML}"><p>unclosed</div>', "not well-formed"),
    (f'<div xmlns="{XHTML}">a&nbsp;b</div>', "&#160;"),
    (f'<div xmlns="{XHTML}"><script>alert(1)</script></div>', "script"),
    (f'<!DOCTYPE div><div xmlns="{XHTML}">x</div>', "DOCTYPE"),
    (f'<div xmlns="{XHTML}">x</div><div xmlns="{XHTML}">y</div>', "not well-formed"),
    ("plain text", "not well-formed"),
])
def test_bad_narrative(validator, div, text):
    only(validator, patient(text={"status": "generated", "div": div}), "value", "Patient.text.div", contains=text)


def test_good_narrative(validator):
    div = f'<div xmlns="{XHTML}" xmlns:xlink="http://www.w3.org/1999/xlink"><p class="x">a &amp; &#160;b</p>' \
          '<a href="#x">l</a><img src="#i" alt="i"/></div>'
    assert found(validator, patient(text={"status": "generated", "div": div})) == []


# -- `_name` companions ----------------------------------------------------------------------------

def test_companion_shapes(validator):
    only(validator, patient(birthDate="1970", _birthDate=[{"id": "x"}]), "structure", "Patient.birthDate",
         contains="'_birthDate'")
    only(validator, patient(birthDate="1970", _birthDate={}), "structure", "Patient.birthDate")
    only(validator, patient(birthDate="1970", _birthDate="x"), "structure", "Patient.birthDate")
    only(validator, patient(_birthDate={"foo": 1}), "structure", "Patient.birthDate.foo")
    only(validator, patient(_birthDate={"extension": [{"valueString": "x"}]}), "required",
         "Patient.birthDate.extension[0].url")
    only(validator, patient(_birthDate={"extension": [{"url": "u", "valueString": 1}]}), "value",
         "Patient.birthDate.extension[0].valueString")


def test_companion_only_for_primitives(validator):
    only(validator, patient(name=[{"family": "x"}], _name=[{"id": "x"}]), "structure", "Patient._name",
         contains="only for primitive")
    only(validator, patient(_foo={"id": "x"}), "structure", "Patient._foo", contains="Unknown element")
    only(validator, patient(id="a", _id={"id": "b"}), "structure", "Patient._id", contains="plain JSON property")
    only(validator, patient(extension=[{"url": "u", "_url": {"id": "x"}, "valueString": "v"}]), "structure",
         "Patient.extension[0]._url")


def test_companion_array_alignment(validator):
    only(validator, patient(name=[{"given": ["a", "b"], "_given": [None]}]), "structure", "Patient.name[0].given",
         contains="same length")
    only(validator, patient(name=[{"given": ["a"], "_given": {"id": "x"}}]), "structure", "Patient.name[0].given",
         contains="must be an array")
    only(validator, patient(name=[{"given": ["a", None], "_given": [None, None]}]), "structure",
         "Patient.name[0].given[1]")
    only(validator, patient(name=[{"_given": [None]}]), "structure", "Patient.name[0].given[0]")
    only(validator, patient(name=[{"given": ["a"], "_given": []}]), "structure", "Patient.name[0].given")
    only(validator, patient(name=[{"given": ["a"], "_given": [{}]}]), "structure", "Patient.name[0].given[0]")
    only(validator, patient(name=[{"given": ["a"], "_given": [{"id": 5}]}]), "value", "Patient.name[0].given[0].id")


def test_xhtml_companion_allows_no_extension(validator):
    # xhtml.extension is 0..0
    only(validator, patient(text={"status": "generated", "div": DIV, "_div": {"extension": [{"url": "u"}]}}),
         "structure", "Patient.text.div.extension")
    assert found(validator, patient(text={"status": "generated", "div": DIV, "_div": {"id": "d"}})) == []


# -- nested resources ------------------------------------------------------------------------------

def bundle(*resources):
    return {"resourceType": "Bundle", "type": "collection", "entry": [{"resource": r} for r in resources]}


def test_errors_inside_bundle_entries(validator):
    only(validator, bundle(patient(), patient(), patient(birthDate="1970-02-30")), "value",
         "Bundle.entry[2].resource.birthDate")
    only(validator, bundle({"id": "x"}), "required", "Bundle.entry[0].resource", contains="resourceType")
    only(validator, bundle({"resourceType": "Nope"}), "not-supported", "Bundle.entry[0].resource")
    only(validator, {"resourceType": "Bundle", "type": "collection", "entry": [{"resource": [patient()]}]},
         "structure", "Bundle.entry[0].resource")
    only(validator, {"resourceType": "Bundle", "type": "batch-response", "entry": [{"response": {
        "status": "400", "outcome": {"resourceType": "OperationOutcome", "issue": [{"severity": "error"}]}}}]},
         "required", "Bundle.entry[0].response.outcome.issue[0].code")


def test_errors_inside_contained_and_parameters(validator):
    only(validator, patient(contained=[{"resourceType": "Practitioner", "name": [{"foo": 1}]}]), "structure",
         "Patient.contained[0].name[0].foo")
    only(validator, patient(contained={"resourceType": "Practitioner"}), "structure", "Patient.contained")
    only(validator, {"resourceType": "Parameters", "parameter": [{"name": "p", "resource": observation(status=5)}]},
         "value", "Parameters.parameter[0].resource.status")


def test_all_problems_are_reported(validator):
    resource = patient(foo=1, gender=["x"], birthDate="2020-02-30", name=[{"given": "x"}],
                       communication=[{}], contained=[{"resourceType": "Bad"}])
    assert sorted(found(validator, resource)) == sorted([
        ("structure", "Patient.foo"), ("structure", "Patient.gender"), ("value", "Patient.birthDate"),
        ("structure", "Patient.name[0].given"), ("structure", "Patient.communication[0]"),
        ("not-supported", "Patient.contained[0]")])


# -- depth guard -----------------------------------------------------------------------------------

def nested_extensions(depth):
    ext = {"url": "u", "valueString": "leaf"}
    for _ in range(depth):
        ext = {"url": "u", "extension": [ext]}
    return patient(extension=[ext])


def test_depth_guard(validator):
    assert found(validator, nested_extensions(50)) == []
    issues = found(validator, nested_extensions(150))
    assert len(issues) == 1 and issues[0][0] == "too-costly"
    assert issues[0][1].startswith("Patient.extension[0].extension[0].extension[0]")
    assert len(found(validator, nested_extensions(5000))) == 1  # no RecursionError
    assert found(StructuralValidator(validator.definitions, max_depth=10), nested_extensions(20))[0][0] == "too-costly"


# -- R4-only resource types --------------------------------------------------------------------------

def test_r4_only_types(validator, core_package):
    for name in ("MedicinalProduct-example.json", "EffectEvidenceSynthesis-example.json",
                 "MedicinalProductIngredient-example.json"):
        assert found(validator, jsonio.loads((core_package.root / name).read_bytes())) == []
    only(validator, {"resourceType": "EffectEvidenceSynthesis", "status": "draft", "population": {"reference": "G/1"},
                     "exposure": {"reference": "G/2"}, "exposureAlternative": {"reference": "G/3"}},
         "required", "EffectEvidenceSynthesis.outcome", contains="'outcome'")
    only(validator, {"resourceType": "MedicinalProduct", "name": [{"productName": "x", "bogus": True}]},
         "structure", "MedicinalProduct.name[0].bogus")


# -- the model ---------------------------------------------------------------------------------------

def test_models_compile_lazily(definitions):
    models = Models(definitions)
    assert models._models == {}
    patient_model = models.resource("Patient")
    assert set(models._models) == {FHIR_BASE + "Patient"}
    name = patient_model.elements["name"]
    assert name.json_names == ("name",) and name.max is None and name.is_array and name.is_summary
    assert name.child_elements()["given"].max is None  # HumanName compiled now, on demand
    assert FHIR_BASE + "HumanName" in models._models and FHIR_BASE + "Observation" not in models._models
    assert models.resource("Observation") is models.resource("Observation")
    assert models.resource("Resource") is None and models.resource("Nope") is None


def test_model_elements(definitions):
    models = Models(definitions)
    obs = models.resource("Observation")
    value = obs.elements["value[x]"]
    assert value.is_choice and "valueQuantity" in value.json_names and "valueDateTime" in value.json_names
    assert value.min == 0 and value.max == 1 and not value.is_array and value.is_summary
    assert obs.elements["status"].min == 1 and obs.elements["status"].is_modifier
    low = obs.element("Observation.referenceRange.low")
    assert low.types[0].url == FHIR_BASE + "SimpleQuantity"
    assert low.child_elements()["comparator"].max == 0
    slots = obs.structure.slots
    assert slots["valueQuantity"].kind == COMPLEX and slots["status"].kind == PRIMITIVE
    assert slots["id"].kind == SYSTEM and slots["contained"].kind == RESOURCE
    assert slots["component"].structure is obs.element("Observation.component").inline
    q = models.resource("Questionnaire")
    item = q.element("Questionnaire.item")
    assert q.element("Questionnaire.item.item").inline is item.inline
    assert "linkId" in item.child_elements() and item.child_elements()["item"].content_reference == "#Questionnaire.item"
    ext = models.type_model("Extension")
    assert ext.elements["url"].types[0].code == "uri" and ext.elements["url"].types[0].system
    assert models.type_model("Age").elements["value"].types[0].code == "decimal"


@pytest.mark.parametrize("name, base", [("Age", "Quantity"), ("Duration", "Quantity"), ("Count", "Quantity"),
                                        ("Distance", "Quantity"), ("SimpleQuantity", "Quantity"),
                                        ("MoneyQuantity", "Quantity")])
def test_quantity_constraints_use_their_own_definitions(definitions, name, base):
    models = Models(definitions)
    model = models.type_model(name)
    assert model.url == FHIR_BASE + name and model.kind == "complex-type"
    assert models.derives_from(model, FHIR_BASE + base)
    assert set(model.elements) == {"id", "extension", "value", "comparator", "unit", "system", "code"}


def test_models_are_shared_per_definitions(definitions, validator):
    assert models_for(definitions) is models_for(definitions) is validator.models


def test_primitive_types_from_definitions(definitions):
    models = Models(definitions)
    kinds = {name: models.primitive(FHIR_BASE + name, None).json_kind
             for name in ("boolean", "integer", "positiveInt", "unsignedInt", "decimal", "string", "date",
                          "instant", "code", "xhtml", "base64Binary")}
    assert kinds == {"boolean": "boolean", "integer": "integer", "positiveInt": "integer", "unsignedInt": "integer",
                     "decimal": "number", "string": "string", "date": "string", "instant": "string",
                     "code": "string", "xhtml": "string", "base64Binary": "string"}
    markdown = models.primitive(FHIR_BASE + "markdown", None)
    assert markdown.max_length == 1024 * 1024 and markdown.check("x") is None
    assert models.primitive(FHIR_BASE + "instant", None).calendar
    assert models.primitive(FHIR_BASE + "xhtml", None).xhtml


def test_thread_safe_first_use(definitions):
    validator = StructuralValidator(definitions)  # fresh models? no: shared per Definitions
    validator.models = Models(definitions)  # force a cold cache for this test
    resources = [VALID["rich patient"], VALID["contained and Bundle"], observation(valueQuantity={"value": "x"})]
    expected = [[], [], [("value", "Observation.valueQuantity.value")]]
    results, errors = [], []

    def work():
        try:
            for _ in range(20):
                results.append([found(validator, r) for r in resources])
        except Exception as exc:  # noqa: BLE001 - any failure in a thread is reported below
            errors.append(exc)

    threads = [threading.Thread(target=work) for _ in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert not errors and all(r == expected for r in results)
