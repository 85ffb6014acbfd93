"""patient/ and granular SMART scopes through HTTP, with tokens against a real OpenID provider.

A leak matrix: two patients, Alice (the token's patient) and Bob; every read, search, include,
chain, `_has`, compartment, history, paging, operation, bundle and conditional form a client
can try, with a `patient/` token for Alice, must show nothing of Bob (not his ids, not his name,
not a count), answer 404 for what is his exactly as for what does not exist, and refuse (403)
every write that would touch him. Granular scopes (`?category=…`) narrow the same way.
"""

from __future__ import annotations

import json
import uuid

import httpx
import pytest

from tests.oidc.provider import Client
from tests.security.conftest import bearer

CATEGORY = "http://terminology.hl7.org/CodeSystem/observation-category"
LAB = f"{CATEGORY}|laboratory"
ADMIN = "system/*.cruds"
BOB_NAME = "Secretbob"
CLIENTS = [Client("backend", scope=[ADMIN])]


@pytest.fixture(scope="module")
def admin(provider) -> dict[str, str]:
    return bearer(provider.token("backend", scope=ADMIN))


def _observation(id_: str, patient: str, category: str, code: str) -> dict:
    return {"resourceType": "Observation", "id": id_, "status": "final",
            "identifier": [{"system": "urn:test:obs", "value": id_}],
            "category": [{"coding": [{"system": CATEGORY, "code": category}]}],
            "code": {"coding": [{"system": "urn:test:code", "code": code}]},
            "subject": {"reference": f"Patient/{patient}"}}


@pytest.fixture(scope="module")
def world(http, admin) -> dict[str, str]:
    """Alice and Bob, each with a lab and a vital-signs Observation, a Condition and an Encounter;
    a patient record linked to Alice; a Practitioner; a List naming observations of both."""
    tag = uuid.uuid4().hex[:8]
    ids = {name: f"{name}-{tag}" for name in ("alice", "bob", "alias", "a-lab", "a-vital", "b-lab", "b-vital",
                                             "a-cond", "b-cond", "a-enc", "b-enc", "gp", "list")}
    resources = [
        {"resourceType": "Patient", "id": ids["alice"], "name": [{"family": "Alicia"}], "gender": "female",
         "generalPractitioner": [{"reference": f"Practitioner/{ids['gp']}"}]},
        {"resourceType": "Patient", "id": ids["bob"], "name": [{"family": BOB_NAME}], "gender": "male",
         "generalPractitioner": [{"reference": f"Practitioner/{ids['gp']}"}]},
        {"resourceType": "Patient", "id": ids["alias"], "name": [{"family": "Alicia"}],
         "link": [{"other": {"reference": f"Patient/{ids['alice']}"}, "type": "seealso"}]},
        {"resourceType": "Practitioner", "id": ids["gp"], "name": [{"family": "Docteur"}]},
        _observation(ids["a-lab"], ids["alice"], "laboratory", "alice-code"),
        _observation(ids["a-vital"], ids["alice"], "vital-signs", "alice-code"),
        _observation(ids["b-lab"], ids["bob"], "laboratory", "bob-code"),
        _observation(ids["b-vital"], ids["bob"], "vital-signs", "bob-code"),
        {"resourceType": "Condition", "id": ids["a-cond"], "subject": {"reference": f"Patient/{ids['alice']}"},
         "code": {"text": "asthme"}},
        {"resourceType": "Condition", "id": ids["b-cond"], "subject": {"reference": f"Patient/{ids['bob']}"},
         "code": {"text": "diabete"}},
        {"resourceType": "Encounter", "id": ids["a-enc"], "status": "finished",
         "class": {"system": "http://terminology.hl7.org/CodeSystem/v3-ActCode", "code": "AMB"},
         "subject": {"reference": f"Patient/{ids['alice']}"}},
        {"resourceType": "Encounter", "id": ids["b-enc"], "status": "finished",
         "class": {"system": "http://terminology.hl7.org/CodeSystem/v3-ActCode", "code": "AMB"},
         "subject": {"reference": f"Patient/{ids['bob']}"}},
        {"resourceType": "List", "id": ids["list"], "status": "current", "mode": "working",
         "subject": {"reference": f"Patient/{ids['alice']}"},
         "entry": [{"item": {"reference": f"Observation/{ids['a-lab']}"}},
                   {"item": {"reference": f"Observation/{ids['b-lab']}"}}]},
    ]
    bundle = {"resourceType": "Bundle", "type": "transaction", "entry": [
        {"resource": r, "request": {"method": "PUT", "url": f"{r['resourceType']}/{r['id']}"}} for r in resources]}
    response = http.post("/", json=bundle, headers=admin)
    assert response.status_code == 200, response.text
    return ids


@pytest.fixture(scope="module")
def alice(provider, world) -> dict[str, str]:
    return bearer(provider.mint.token(scope="patient/*.rs", patient=world["alice"]))


def hides_bob(response: httpx.Response | dict | list, world: dict[str, str]) -> None:
    """Nothing of Bob in the answer: none of his resources' ids, not his name (a Bundle's links
    only repeat the query asked)."""
    body = response.json() if isinstance(response, httpx.Response) else response
    if isinstance(body, dict) and body.get("resourceType") == "Bundle":
        # Alice's List names one of Bob's observations because its author put it there: what
        # is hers is shown whole; the test is that nothing of his comes along
        body = {"total": body.get("total"), "entry": [e for e in body.get("entry", ())
                                                      if e.get("resource", {}).get("id") != world["list"]]}
    text = json.dumps(body)
    for name in ("bob", "b-lab", "b-vital", "b-cond", "b-enc"):
        assert world[name] not in text, (name, text[:2000])
    assert BOB_NAME not in text


def ids_in(bundle: dict) -> set[str]:
    return {e["resource"]["id"] for e in bundle.get("entry", ()) if e.get("search", {}).get("mode") != "outcome"}


def test_reads_of_what_is_out_of_reach_are_404_exactly_like_unknown_ids(http, alice, world):
    for type_, hidden in (("Patient", "bob"), ("Observation", "b-lab"), ("Condition", "b-cond"),
                          ("Encounter", "b-enc")):
        for suffix in ("", "/_history", "/_history/1"):
            shown = http.get(f"/{type_}/{world[hidden]}{suffix}", headers=alice)
            unknown_id = f"x{uuid.uuid4().hex[:len(world[hidden]) - 1]}"
            absent = http.get(f"/{type_}/{unknown_id}{suffix}", headers=alice)
            assert shown.status_code == absent.status_code == 404, (type_, suffix, shown.text)
            assert shown.text.replace(world[hidden], "ID") == absent.text.replace(unknown_id, "ID")
            assert set(shown.headers) - {"x-request-id", "date"} == set(absent.headers) - {"x-request-id", "date"}
    for type_, own in (("Patient", "alice"), ("Patient", "alias"), ("Observation", "a-lab"),
                       ("Practitioner", "gp")):
        assert http.get(f"/{type_}/{world[own]}", headers=alice).status_code == 200, (type_, own)
    assert http.get(f"/Patient/{world['alice']}/_history/1", headers=alice).status_code == 200


SEARCHES = [
    ("Observation", {}, {"a-lab", "a-vital"}),
    ("Observation", {"code": "urn:test:code|bob-code"}, set()),
    ("Observation", {"subject": "Patient/{bob}"}, set()),
    ("Observation", {"subject.name": BOB_NAME}, set()),
    ("Observation", {"subject:Patient.gender": "male"}, set()),
    ("Observation", {"_id": "{b-lab},{a-lab}"}, {"a-lab"}),
    ("Observation", {"_list": "{list}"}, {"a-lab"}),
    ("Observation", {"_filter": "subject eq Patient/{bob} or code eq urn:test:code|alice-code"}, {"a-lab", "a-vital"}),
    ("Observation", {"_content": BOB_NAME}, set()),
    ("Patient", {}, {"alice", "alias"}),
    ("Patient", {"gender": "male"}, set()),
    ("Patient", {"_has:Observation:subject:code": "urn:test:code|bob-code"}, set()),
    ("Patient", {"general-practitioner": "Practitioner/{gp}"}, {"alice"}),
    ("Condition", {"_text": "diabete"}, set()),
    ("Encounter", {"_sort": "-date"}, {"a-enc"}),
    ("Practitioner", {}, {"gp"}),
]


@pytest.mark.parametrize(("type_", "params", "expected"), SEARCHES,
                         ids=[f"{t}?{'&'.join(p)}" for t, p, _ in SEARCHES])
def test_searches_find_only_what_is_within_reach(http, alice, world, type_, params, expected):
    params = {k: v.format(**world) for k, v in params.items()}
    for answer in (http.get(f"/{type_}", params=params, headers=alice),
                   http.post(f"/{type_}/_search", data=params, headers=alice)):
        assert answer.status_code == 200, answer.text
        hides_bob(answer, world)
        found = ids_in(answer.json())
        if type_ == "Practitioner":
            assert {world[n] for n in expected} <= found
        else:
            assert found == {world[n] for n in expected}, params
            assert answer.json()["total"] == len(expected)
    count = http.get(f"/{type_}", params={**params, "_summary": "count"}, headers=alice).json()
    if type_ != "Practitioner":
        assert count["total"] == len(expected)


@pytest.mark.parametrize("query", [
    "Observation?_include=Observation:subject",
    "Patient?_revinclude=Observation:subject",
    "Patient?_revinclude=*&_include:iterate=Observation:subject",
    "Practitioner?_revinclude=Patient:general-practitioner",
    "Practitioner?_revinclude=Patient:general-practitioner&_revinclude:iterate=Observation:subject",
    "Patient/{bob}/*",
    "Patient/{bob}/Observation",
    "Patient/{alice}/*",
    "?_type=Patient,Observation,Condition,Encounter",
    "?_id={bob},{b-lab},{alice}",
    "Patient/{alice}/$everything",
    "Observation/_history",
    "Patient/_history",
    "Observation?_contained=both&code=urn:test:code|bob-code",
])
def test_includes_compartments_system_searches_and_histories_show_nothing_of_bob(http, alice, world, query):
    answer = http.get("/" + query.format(**world), headers=alice)
    assert answer.status_code == 200, answer.text
    hides_bob(answer, world)
    assert answer.json()["resourceType"] == "Bundle"


def test_everything_of_a_patient_out_of_reach_is_404(http, alice, world):
    assert http.get(f"/Patient/{world['bob']}/$everything", headers=alice).status_code == 404
    record = http.get(f"/Patient/{world['alice']}/$everything", headers=alice).json()
    assert {world["a-lab"], world["a-vital"], world["a-cond"], world["gp"]} <= ids_in(record)


def test_pages_hold_only_what_is_within_reach_and_belong_to_their_token(http, provider, alice, admin, world):
    first = http.get("/Observation", params={"_count": "1"}, headers=alice).json()
    assert first["total"] == 2
    seen, page = ids_in(first), first
    while next_link := next((link["url"] for link in page["link"] if link["relation"] == "next"), None):
        response = http.get(next_link, headers=alice)
        hides_bob(response, world)
        page = response.json()
        seen |= ids_in(page)
    assert seen == {world["a-lab"], world["a-vital"]}
    # another token holder cannot walk Alice's stored pages, even with more rights
    link = next(link["url"] for link in first["link"] if link["relation"] == "next")
    assert http.get(link, headers=admin).status_code == 410
    bob = bearer(provider.mint.token(scope="patient/*.rs", patient=world["bob"]))
    assert http.get(link, headers=bob).status_code == 410


def test_writes_stay_within_the_patient(http, provider, admin, world):
    writer = bearer(provider.mint.token(scope="patient/Observation.cruds patient/Patient.rs", patient=world["alice"]))
    bob_lab = http.get(f"/Observation/{world['b-lab']}", headers=admin).json()

    # create: only in Alice's compartment
    assert http.post("/Observation", json=_observation("x", world["bob"], "laboratory", "w"),
                     headers=writer).status_code == 403
    made = http.post("/Observation", json=_observation("x", world["alice"], "laboratory", "w"), headers=writer)
    assert made.status_code == 201, made.text
    mine = made.json()
    # update: not of Bob's resources, not moving Alice's to Bob
    moved = {**mine, "subject": {"reference": f"Patient/{world['bob']}"}}
    assert http.put(f"/Observation/{mine['id']}", json=moved, headers=writer).status_code == 403
    taken = {**bob_lab, "subject": {"reference": f"Patient/{world['alice']}"}}
    assert http.put(f"/Observation/{world['b-lab']}", json=taken, headers=writer).status_code == 403
    # patch and delete of Bob's: as if it did not exist
    patch = [{"op": "replace", "path": "/status", "value": "cancelled"}]
    patched = http.patch(f"/Observation/{world['b-lab']}", json=patch, headers={
        **writer, "Content-Type": "application/json-patch+json"})
    assert patched.status_code == 404
    deleted = http.delete(f"/Observation/{world['b-lab']}", headers=writer)
    assert deleted.status_code == 200 and "nothing to delete" in deleted.text
    # conditional forms: Bob's match is no match, and is never overwritten
    conditional = http.put("/Observation", params={"identifier": f"urn:test:obs|{world['b-lab']}"},
                           json=_observation(str(uuid.uuid4()), world["alice"], "laboratory", "cond"), headers=writer)
    assert conditional.status_code == 201, conditional.text
    assert http.delete("/Observation", params={"identifier": f"urn:test:obs|{world['b-vital']}"},
                       headers=writer).status_code == 200
    assert http.post("/Observation", json=_observation("y", world["alice"], "laboratory", "ine"),
                     headers={**writer, "If-None-Exist": f"identifier=urn:test:obs|{world['b-lab']}"}).status_code == 201
    # nothing of Bob's changed
    assert http.get(f"/Observation/{world['b-lab']}", headers=admin).json() == bob_lab
    assert http.get(f"/Observation/{world['b-vital']}", headers=admin).status_code == 200
    assert http.get(f"/Observation/{world['b-lab']}/_history", headers=admin).json()["total"] == 1


def test_bundles_run_each_entry_within_reach(http, provider, admin, world):
    writer = bearer(provider.mint.token(scope="patient/Observation.cruds patient/Patient.rs", patient=world["alice"]))
    before = http.get("/Observation", params={"_summary": "count"}, headers=admin).json()["total"]
    transaction = {"resourceType": "Bundle", "type": "transaction", "entry": [
        {"resource": _observation("t1", world["alice"], "laboratory", "t"), "request": {"method": "POST", "url": "Observation"}},
        {"resource": _observation("t2", world["bob"], "laboratory", "t"), "request": {"method": "POST", "url": "Observation"}},
    ]}
    refused = http.post("/", json=transaction, headers=writer)
    assert refused.status_code == 403, refused.text
    assert http.get("/Observation", params={"_summary": "count"}, headers=admin).json()["total"] == before
    batch = {"resourceType": "Bundle", "type": "batch", "entry": [
        {"request": {"method": "GET", "url": f"Observation/{world['b-lab']}"}},
        {"request": {"method": "GET", "url": f"Observation?subject=Patient/{world['bob']}"}},
        {"request": {"method": "GET", "url": f"Observation/{world['a-lab']}"}},
        {"request": {"method": "DELETE", "url": f"Observation/{world['b-vital']}"}},
    ]}
    answer = http.post("/", json=batch, headers=writer)
    assert answer.status_code == 200
    entries = answer.json()["entry"]
    hides_bob(entries[1]["resource"], world)  # the others are outcomes naming what was asked, nothing more
    statuses = [e["response"]["status"] for e in answer.json()["entry"]]
    assert statuses[0].startswith("404") and statuses[1].startswith("200") and statuses[2].startswith("200")
    assert http.get(f"/Observation/{world['b-vital']}", headers=admin).status_code == 200


def test_validate_and_conditional_references_do_not_reach_bob(http, provider, world):
    writer = bearer(provider.mint.token(scope="patient/Observation.cruds patient/Patient.rs", patient=world["alice"]))
    assert http.get(f"/Observation/{world['b-lab']}/$validate", headers=writer).status_code == 404
    transaction = {"resourceType": "Bundle", "type": "transaction", "entry": [
        {"resource": {**_observation("r", world["alice"], "laboratory", "ref"),
                      "hasMember": [{"reference": f"Observation?identifier=urn:test:obs|{world['b-lab']}"}]},
         "request": {"method": "POST", "url": "Observation"}}]}
    answer = http.post("/", json=transaction, headers=writer)
    assert answer.status_code == 404, answer.text  # the conditional reference matches nothing Alice may see


def test_granular_scopes_narrow_by_their_query(http, provider, world):
    lab_of_alice = bearer(provider.mint.token(scope=f"patient/Observation.rs?category={LAB} patient/Patient.rs",
                                              patient=world["alice"]))
    mine = set(world.values())  # other tests add observations of their own
    found = http.get("/Observation", headers=lab_of_alice).json()
    assert ids_in(found) & mine == {world["a-lab"]}
    assert http.get(f"/Observation/{world['a-vital']}", headers=lab_of_alice).status_code == 404
    everything = http.get(f"/Patient/{world['alice']}/$everything", headers=lab_of_alice).json()
    assert world["a-vital"] not in ids_in(everything) and world["a-lab"] in ids_in(everything)
    # system level: every patient's lab results, and nothing else
    lab = bearer(provider.mint.token(scope=f"system/Observation.rs?category={LAB} system/Patient.rs"))
    assert ids_in(http.get("/Observation", params={"code": "urn:test:code|bob-code,urn:test:code|alice-code"},
                           headers=lab).json()) == {world["a-lab"], world["b-lab"]}
    # two granular scopes on one type: their union
    both = bearer(provider.mint.token(scope=f"system/Observation.rs?category={LAB} "
                                            f"system/Observation.rs?code=urn:test:code|bob-code"))
    assert ids_in(http.get("/Observation", params={"code": "urn:test:code|bob-code,urn:test:code|alice-code"},
                           headers=both).json()) == {world["a-lab"], world["b-lab"], world["b-vital"]}
    # a granular write scope: creates only what its query matches
    lab_writer = bearer(provider.mint.token(scope=f"system/Observation.c?category={LAB}"))
    assert http.post("/Observation", json=_observation("g1", world["bob"], "vital-signs", "g"),
                     headers=lab_writer).status_code == 403
    assert http.post("/Observation", json=_observation("g2", world["bob"], "laboratory", "g"),
                     headers=lab_writer).status_code == 201
    # a query this server cannot evaluate grants nothing
    unknown = bearer(provider.mint.token(scope="system/Observation.rs?no-such-param=1"))
    assert ids_in(http.get("/Observation", headers=unknown).json()) == set()


def test_v1_scopes_and_a_token_without_its_patient(http, provider, world):
    v1 = bearer(provider.mint.token(scope="patient/Observation.read patient/Patient.read", patient=world["alice"]))
    found = ids_in(http.get("/Observation", headers=v1).json())
    assert found & set(world.values()) == {world["a-lab"], world["a-vital"]}
    reference_form = bearer(provider.mint.token(scope="patient/*.read", patient=f"Patient/{world['alice']}"))
    assert http.get(f"/Patient/{world['alice']}", headers=reference_form).status_code == 200
    no_patient = bearer(provider.mint.token(scope="patient/*.read"))
    refused = http.get("/Observation", headers=no_patient)
    assert refused.status_code == 403 and "no patient claim" in refused.text


def test_patient_data_outside_the_r4_compartment_is_limited_too(http, alice, admin, world):
    """R4 leaves Task out of the Patient compartment, yet `Task.for` names a patient; a Binary
    follows its securityContext."""
    tag = uuid.uuid4().hex[:8]
    for who in ("alice", "bob"):
        task = {"resourceType": "Task", "id": f"task-{who}-{tag}", "status": "requested", "intent": "order",
                "for": {"reference": f"Patient/{world[who]}"}}
        assert http.put(f"/Task/{task['id']}", json=task, headers=admin).status_code == 201
        binary = {"resourceType": "Binary", "id": f"bin-{who}-{tag}", "contentType": "text/plain", "data": "eA==",
                  "securityContext": {"reference": f"Patient/{world[who]}"}}
        assert http.put(f"/Binary/{binary['id']}", json=binary, headers=admin).status_code == 201
    loose = {"resourceType": "Binary", "id": f"bin-none-{tag}", "contentType": "text/plain", "data": "eA=="}
    assert http.put(f"/Binary/{loose['id']}", json=loose, headers=admin).status_code == 201
    found = http.get(f"/Task?_id=task-alice-{tag},task-bob-{tag}", headers=alice).json()
    assert ids_in(found) == {f"task-alice-{tag}"}
    assert http.get(f"/Task/task-bob-{tag}", headers=alice).status_code == 404
    assert http.get(f"/Binary/bin-alice-{tag}", headers=alice).status_code == 200
    assert http.get(f"/Binary/bin-bob-{tag}", headers=alice).status_code == 404
    assert http.get(f"/Binary/bin-none-{tag}", headers=alice).status_code == 404  # whose it is, nothing says
