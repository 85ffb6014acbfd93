"""FHIR_MAX_PATCH_OPERATIONS and the size a patched resource may reach (FHIR_MAX_BODY_BYTES), on a
server started with small limits: too many operations is a 413, an operation that would grow the
resource past the limit is a 422 `too-costly` naming it — refused before it is done, so the
copy-doubling bomb costs nothing — and in every case nothing is stored."""

from __future__ import annotations

import httpx
import pytest

from tests.conftest import start_server

from .support import (
    FHIR_JSON,
    assert_error,
    binary,
    entry,
    fhirpath_patch,
    json_patch,
    new_id,
    op,
    parameters,
    put,
    read,
    response_bundle,
    status,
    transact,
    unchanged,
)

MAX_OPERATIONS = 20
MAX_BYTES = 200_000


@pytest.fixture(scope="module")
def limited(tmp_path_factory, r4_examples):
    running = start_server(tmp_path_factory.mktemp("patch-limits"), extra_env={
        "FHIR_MAX_PATCH_OPERATIONS": str(MAX_OPERATIONS), "FHIR_MAX_BODY_BYTES": str(MAX_BYTES)})
    yield running
    running.stop()


@pytest.fixture
def http(limited):
    with httpx.Client(base_url=limited.base_url, timeout=120, headers={"Accept": FHIR_JSON}) as c:
        yield c


def _patient(http, names: int = 2, text: str = "") -> dict:
    resource = {"resourceType": "Patient", "id": new_id("pl"), "active": True,
                "name": [{"family": f"Doe{i}", "given": ["Jane"]} for i in range(names)]}
    if text:
        resource["name"][0]["text"] = text
    return put(http, resource)


def _ref(patient: dict) -> str:
    return f"Patient/{patient['id']}"


def test_operations_up_to_the_limit_apply(http):
    patient = _patient(http)
    ops = [{"op": "replace", "path": "/active", "value": i % 2 == 0} for i in range(MAX_OPERATIONS)]
    response = json_patch(http, f"/{_ref(patient)}", ops)
    assert response.status_code == 200, response.text
    assert response.json()["meta"]["versionId"] == "2"


@pytest.mark.parametrize("kind", ["json", "fhirpath"])
def test_one_operation_more_is_413(http, kind):
    patient = _patient(http)
    if kind == "json":
        response = json_patch(http, f"/{_ref(patient)}",
                              [{"op": "replace", "path": "/active", "value": False}] * (MAX_OPERATIONS + 1))
    else:
        response = fhirpath_patch(http, f"/{_ref(patient)}", parameters(
            *[op("replace", "Patient.active", valueBoolean=False)] * (MAX_OPERATIONS + 1)))
    text = assert_error(response, 413)
    assert "FHIR_MAX_PATCH_OPERATIONS" in text and str(MAX_OPERATIONS + 1) in text, text
    unchanged(http, _ref(patient), patient)


def test_copy_doubling_is_refused_at_the_operation_that_crosses_the_limit(http):
    """The 1 KB bomb: each copy appends the whole array to itself, doubling the resource."""
    patient = _patient(http)
    response = json_patch(http, f"/{_ref(patient)}", [{"op": "copy", "from": "/name", "path": "/name/-"}] * 20)
    text = assert_error(response, 422)
    assert response.json()["issue"][0]["code"] == "too-costly"
    assert "FHIR_MAX_BODY_BYTES" in text, text
    crossing = int(text.split("operation ")[1].split()[0])
    # ~100 bytes doubled each time: over 200 KB between the 10th and the 13th copy
    assert 9 <= crossing <= 13, text
    unchanged(http, _ref(patient), patient)


def test_a_large_array_copied_is_refused_at_once(http):
    patient = _patient(http, names=1500)  # ~60 KB
    response = json_patch(http, f"/{_ref(patient)}", [{"op": "copy", "from": "/name", "path": "/name/-"}] * 20)
    text = assert_error(response, 422)
    assert "operation 1 " in text, text  # the first copy fits (120 KB), the second would not
    unchanged(http, _ref(patient), patient)


def test_what_is_removed_makes_room_again(http):
    """Copy a large element then remove it, many times: the resource never grows past the limit."""
    patient = _patient(http, text="x" * 60_000)
    ops = []
    for _ in range(5):
        ops += [{"op": "copy", "from": "/name/0", "path": "/name/-"}, {"op": "remove", "path": "/name/2"}]
    response = json_patch(http, f"/{_ref(patient)}", ops)
    assert response.status_code == 200, response.text
    assert len(response.json()["name"]) == 2


def test_replace_with_a_large_value_within_the_limit_applies(http):
    patient = _patient(http, text="x" * 90_000)
    response = json_patch(http, f"/{_ref(patient)}", [{"op": "replace", "path": "/name/0/text", "value": "y" * 90_000}])
    assert response.status_code == 200, response.text


def test_fhirpath_add_to_many_elements_is_bounded(http):
    """One FHIRPath `add` writes its value into every element its path matches."""
    patient = _patient(http, names=60)
    response = fhirpath_patch(http, f"/{_ref(patient)}", parameters(
        op("add", "Patient.name", name="text", valueString="z" * 5_000)))
    text = assert_error(response, 422)
    assert "operation 0 (add)" in text and "FHIR_MAX_BODY_BYTES" in text, text
    unchanged(http, _ref(patient), patient)


def test_fhirpath_values_added_to_several_elements_are_independent(http):
    patient = _patient(http, names=2)
    response = fhirpath_patch(http, f"/{_ref(patient)}", parameters(
        op("add", "Patient.name", name="period", parts=[{"name": "start", "valueDateTime": "2020-01-01"}]),
        op("replace", "Patient.name[0].period.start", valueDateTime="2021-01-01")))
    assert response.status_code == 200, response.text
    assert [n["period"]["start"] for n in response.json()["name"]] == ["2021-01-01", "2020-01-01"]


def test_a_bomb_in_a_transaction_fails_it_whole(limited, http):
    patient = _patient(http)
    other = new_id("pl")
    response = transact(http, limited.base_url, [
        entry("PUT", f"Patient/{other}", {"resourceType": "Patient", "id": other}),
        entry("PATCH", _ref(patient), binary([{"op": "copy", "from": "/name", "path": "/name/-"}] * 20))])
    text = assert_error(response, 422)
    assert "entry 1" in text and "FHIR_MAX_BODY_BYTES" in text, text
    unchanged(http, _ref(patient), patient)
    assert http.get(f"/Patient/{other}").status_code == 404


def test_a_bomb_in_a_batch_fails_its_entry(limited, http):
    patient = _patient(http)
    response = http.post(limited.base_url, json={"resourceType": "Bundle", "type": "batch", "entry": [
        entry("PATCH", _ref(patient), binary([{"op": "copy", "from": "/name", "path": "/name/-"}] * 20)),
        entry("PATCH", _ref(patient), binary([{"op": "replace", "path": "/active", "value": False}] * 21))]},
        headers={"Content-Type": FHIR_JSON})
    items = response_bundle(response, "batch-response", 2)
    assert [status(i) for i in items] == [422, 413]
    assert read(http, _ref(patient)) == patient
