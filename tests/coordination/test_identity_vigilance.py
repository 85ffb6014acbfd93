"""Identity vigilance through HTTP, on a server of its own trusting a real OpenID provider: one INS,
one Patient (409 naming the holder — or not, when the caller does not reach it —, nothing
written; in a transaction; racing creates); the NIR against gender and birthDate (422);
a duplicate marked without $merge; Patient/$match scoring, its parameters, and the caller's reach."""

from __future__ import annotations

import json
import threading
import uuid

import httpx
import pytest

from fhir_server.validation.ins import nir_key
from tests.bundle.support import dump, dump_difference, mongo
from tests.oidc.provider import Client
from tests.security.conftest import bearer, http, provider, secured  # noqa: F401 — the module's server

TAG = uuid.uuid4().hex[:6]
ADMIN = "system/*.cruds"
USER = "user/*.cruds"
NIR_TEST = "urn:oid:1.2.250.1.213.1.4.10"
NIA = "urn:oid:1.2.250.1.213.1.4.9"
GRADE = "http://hl7.org/fhir/StructureDefinition/match-grade"
GP = f"gp-{TAG}"
CLIENTS = [Client("backend", scope=[ADMIN]),
           Client("gp", scope=[USER], claims={"fhirUser": f"Practitioner/{GP}"})]
_ORDER = iter(range(100, 1000))


def nir(sex: str, born: str, order: int | None = None) -> str:
    """A NIR with its key for sex digit `sex` and a birthDate `YYYY-MM-…`, unique per call."""
    body = f"{sex}{born[2:4]}{born[5:7]}75{next(_ORDER) if order is None else order:03d}{int(TAG, 16) % 1000:03d}"
    return f"{body}{nir_key(body):02d}"


def patient(family: str, given: str, born: str, gender: str, *, ins: str | None = None, use: str = "official",
            **more) -> dict:
    body = {"resourceType": "Patient", "name": [{"use": use, "family": family, "given": [given]}],
            "birthDate": born, "gender": gender, **more}
    if ins:
        body["identifier"] = [{"use": "official", "system": NIR_TEST, "value": ins}]
    return body


@pytest.fixture(scope="module")
def admin(provider) -> dict[str, str]:  # noqa: F811
    return bearer(provider.token("backend", scope=ADMIN))


@pytest.fixture(scope="module")
def gp(provider, http, admin) -> dict[str, str]:  # noqa: F811
    r = http.put(f"/Practitioner/{GP}", json={"resourceType": "Practitioner", "id": GP}, headers=admin)
    assert r.status_code in (200, 201), r.text
    return bearer(provider.token("gp", scope=USER))


@pytest.fixture(scope="module")
def database(secured):  # noqa: F811
    client = mongo(secured)
    yield client
    client.close()


def create(http, headers, body, status=201) -> httpx.Response:  # noqa: F811
    r = http.post("/Patient", json=body, headers=headers)
    assert r.status_code == status, r.text
    return r


def in_team(http, admin, patient_id: str) -> None:  # noqa: F811
    """The GP joins the patient's active care team."""
    team = {"resourceType": "CareTeam", "id": f"team-{patient_id}", "status": "active",
            "subject": {"reference": f"Patient/{patient_id}"},
            "participant": [{"member": {"reference": f"Practitioner/{GP}"}}]}
    assert http.put(f"/CareTeam/team-{patient_id}", json=team, headers=admin).status_code == 201


def issue_text(r: httpx.Response) -> str:
    return json.dumps(r.json(), ensure_ascii=False)


def expressions(r: httpx.Response) -> list[str]:
    return [e for issue in r.json()["issue"] for e in issue.get("expression", [])]


# -- the NIR against gender and birthDate ----------------------------------------------------------

def test_the_reported_man_of_1950_with_a_nir_of_a_woman_born_in_1979(http, admin):  # noqa: F811
    r = create(http, admin, patient("Lenoir", "Paul", "1950-06-02", "male", ins=nir("2", "1979-06")), 422)
    assert {"Patient.identifier[0].value", "Patient.gender", "Patient.birthDate"} <= set(expressions(r))
    text = issue_text(r)
    assert "says female" in text and "ending in 79" in text
    create(http, admin, patient("Lenoir", "Paul", "1950-06-02", "male", ins=nir("1", "1950-06")))


def test_a_nia_is_checked_like_a_nir(http, admin):  # noqa: F811
    value = nir("8", "1990-50")  # a temporary number, month unknown
    body = patient("Nia", "Awa", "1990-03-01", "male", identifier=[{"system": NIA, "value": value}])
    r = create(http, admin, body, 422)
    assert expressions(r) == ["Patient.identifier[0].value", "Patient.gender"]
    create(http, admin, {**body, "gender": "female"})
    bad = {**body, "gender": "female", "identifier": [{"system": NIA, "value": value[:-2] + "00"}]}
    assert "key" in issue_text(create(http, admin, bad, 422))


# -- one INS, one Patient --------------------------------------------------------------------------

def test_a_second_patient_with_an_ins_is_409_naming_the_first_and_nothing_is_written(http, admin, database):  # noqa: F811
    ins = nir("2", "1961-04")
    first = create(http, admin, patient("Durand", "Marie", "1961-04-12", "female", ins=ins)).json()["id"]
    before = dump(database)
    r = create(http, admin, patient("Durand", "Marie", "1961-04-12", "female", ins=ins), 409)
    assert f"Patient/{first}" in issue_text(r) and expressions(r) == ["Patient.identifier[0].value"]
    r = http.put(f"/Patient/other-{TAG}", json={**patient("Durand", "Marie", "1961-04-12", "female", ins=ins),
                                                 "id": f"other-{TAG}"}, headers=admin)
    assert r.status_code == 409 and f"Patient/{first}" in issue_text(r)
    after = dump(database)
    assert before == after, dump_difference(before, after)
    # an update keeping its own INS is no duplicate
    kept = {**patient("Durand", "Marie-Anne", "1961-04-12", "female", ins=ins), "id": first}
    assert http.put(f"/Patient/{first}", json=kept, headers=admin).status_code == 200
    found = http.get("/Patient", params={"identifier": f"{NIR_TEST}|{ins}"}, headers=admin).json()
    assert [e["resource"]["id"] for e in found["entry"]] == [first]


def test_a_patch_adding_a_held_ins_is_409_and_a_conditional_create_finds_the_holder(http, admin):  # noqa: F811
    ins = nir("2", "1959-11")
    holder = create(http, admin, patient("Lefebvre", "Rose", "1959-11-20", "female", ins=ins)).json()["id"]
    other = create(http, admin, patient("Lefebvre", "Rose", "1959-11-20", "female")).json()["id"]
    add = [{"op": "add", "path": "/identifier", "value": [{"system": NIR_TEST, "value": ins}]}]
    r = http.patch(f"/Patient/{other}", json=add, headers={**admin, "Content-Type": "application/json-patch+json"})
    assert r.status_code == 409 and f"Patient/{holder}" in issue_text(r)
    # the way to create without a duplicate: conditional on the INS
    r = http.post("/Patient", json=patient("Lefebvre", "Rose", "1959-11-20", "female", ins=ins),
                  headers={**admin, "If-None-Exist": f"identifier={NIR_TEST}|{ins}"})
    assert r.status_code == 200 and r.json()["id"] == holder


def test_a_deleted_patient_holds_no_ins(http, admin):  # noqa: F811
    ins = nir("1", "1970-01")
    gone = create(http, admin, patient("Ancien", "Luc", "1970-01-01", "male", ins=ins)).json()["id"]
    assert http.delete(f"/Patient/{gone}", headers=admin).status_code in (200, 204)
    create(http, admin, patient("Ancien", "Luc", "1970-01-01", "male", ins=ins))


def test_in_a_transaction_the_entry_is_named_and_nothing_is_written(http, admin, database):  # noqa: F811
    ins = nir("1", "1944-09")
    held = create(http, admin, patient("Bernard", "Jean", "1944-09-30", "male", ins=ins)).json()["id"]
    other = patient("Petit", "Jeanne", "1952-02-02", "female", ins=nir("2", "1952-02"))

    def transaction(*resources):
        return {"resourceType": "Bundle", "type": "transaction", "entry": [
            {"fullUrl": f"urn:uuid:{uuid.uuid4()}", "resource": r, "request": {"method": "POST", "url": "Patient"}}
            for r in resources]}

    before = dump(database)
    r = http.post("/", json=transaction(other, patient("Bernard", "Jean", "1944-09-30", "male", ins=ins)),
                  headers=admin)
    assert r.status_code == 409, r.text
    assert "entry 1" in issue_text(r) and f"Patient/{held}" in issue_text(r)
    r = http.post("/", json=transaction(other, other), headers=admin)  # two entries, one INS
    assert r.status_code == 409 and "entry 1" in issue_text(r) and "also written by this transaction" in issue_text(r)
    after = dump(database)
    assert before == after, dump_difference(before, after)


def test_racing_creates_of_one_ins_one_wins(http, admin):  # noqa: F811
    """Rounds of threads creating Patients with one INS each: one create per INS, the rest 409."""
    threads, rounds = 8, 5
    values = [nir("2", "1988-08") for _ in range(rounds)]
    statuses: dict[str, list[int]] = {value: [] for value in values}
    barrier = threading.Barrier(threads)

    def one():
        with httpx.Client(base_url=str(http.base_url), timeout=120, headers={"Accept": "application/fhir+json"}) as c:
            for value in values:
                barrier.wait()
                r = c.post("/Patient", json=patient("Course", "Léa", "1988-08-08", "female", ins=value), headers=admin)
                statuses[value].append(r.status_code)

    running = [threading.Thread(target=one) for _ in range(threads)]
    for t in running:
        t.start()
    for t in running:
        t.join()
    for value in values:
        assert sorted(statuses[value]) == [201] + [409] * (threads - 1), statuses
        found = http.get("/Patient", params={"identifier": f"{NIR_TEST}|{value}"}, headers=admin).json()
        assert found["total"] == 1


def test_a_duplicate_marked_replaced_by_keeps_its_ins_and_no_longer_counts(http, admin, database):  # noqa: F811
    ins = nir("1", "1977-07")
    # two records of one person, made before the INS was known
    old = create(http, admin, patient("Moreau", "Yves", "1977-07-07", "male")).json()["id"]
    kept = create(http, admin, patient("Moreau", "Yves", "1977-07-07", "male", ins=ins)).json()["id"]
    with_ins = {**patient("Moreau", "Yves", "1977-07-07", "male", ins=ins), "id": old}
    assert http.put(f"/Patient/{old}", json=with_ins, headers=admin).status_code == 409
    marked = {**with_ins, "active": False,
              "link": [{"other": {"reference": f"Patient/{kept}"}, "type": "replaced-by"}]}
    r = http.put(f"/Patient/{old}", json=marked, headers=admin)
    assert r.status_code == 200, r.text
    back = {**patient("Moreau", "Yves", "1977-07-07", "male", ins=ins), "id": kept,
            "link": [{"other": {"reference": f"Patient/{old}"}, "type": "replaces"}]}
    assert http.put(f"/Patient/{kept}", json=back, headers=admin).status_code == 200
    # active again while the kept record holds the INS: a duplicate again
    before = dump(database)
    r = http.put(f"/Patient/{old}", json={**marked, "active": True}, headers=admin)
    assert r.status_code == 409 and f"Patient/{kept}" in issue_text(r)
    assert dump(database) == before
    # $match answers the kept record, never the marked duplicate
    found = match(http, admin, patient("Moreau", "Yves", "1977-07-07", "male", ins=ins))
    assert [e["resource"]["id"] for e in found["entry"]] == [kept]


def test_one_transaction_marks_the_holder_and_gives_the_ins_to_another(http, admin):  # noqa: F811
    ins = nir("2", "1930-03")
    holder = create(http, admin, patient("Roux", "Anne", "1930-03-03", "female", ins=ins)).json()["id"]
    new = f"new-{TAG}"
    bundle = {"resourceType": "Bundle", "type": "transaction", "entry": [
        {"resource": {**patient("Roux", "Anne", "1930-03-03", "female", ins=ins), "id": new},
         "request": {"method": "PUT", "url": f"Patient/{new}"}},
        {"resource": {**patient("Roux", "Anne", "1930-03-03", "female", ins=ins), "id": holder, "active": False,
                      "link": [{"other": {"reference": f"Patient/{new}"}, "type": "replaced-by"}]},
         "request": {"method": "PUT", "url": f"Patient/{holder}"}}]}
    r = http.post("/", json=bundle, headers=admin)
    assert r.status_code == 200, r.text


def test_a_holder_out_of_reach_is_not_named(http, admin, gp):  # noqa: F811
    ins_hidden, ins_seen = nir("1", "1966-06"), nir("2", "1968-08")
    hidden = create(http, admin, patient("Cache", "Henri", "1966-06-06", "male", ins=ins_hidden)).json()["id"]
    seen = create(http, admin, patient("Vue", "Irene", "1968-08-08", "female", ins=ins_seen)).json()["id"]
    in_team(http, admin, seen)
    r = create(http, gp, patient("Cache", "Henri", "1966-06-06", "male", ins=ins_hidden), 409)
    assert hidden not in r.text and "does not reach" in issue_text(r)
    r = create(http, gp, patient("Vue", "Irene", "1968-08-08", "female", ins=ins_seen), 409)
    assert f"Patient/{seen}" in issue_text(r)


# -- Patient/$match --------------------------------------------------------------------------------

def match(http, headers, resource, **params) -> dict:  # noqa: F811
    parameters = [{"name": "resource", "resource": resource}]
    if "only_certain" in params:
        parameters.append({"name": "onlyCertainMatches", "valueBoolean": params["only_certain"]})
    if "count" in params:
        parameters.append({"name": "count", "valueInteger": params["count"]})
    r = http.post("/Patient/$match", json={"resourceType": "Parameters", "parameter": parameters}, headers=headers)
    assert r.status_code == 200, r.text
    bundle = r.json()
    assert bundle["resourceType"] == "Bundle" and bundle["type"] == "searchset"
    return bundle


def graded(bundle: dict) -> list[tuple[str, str, float]]:
    out = []
    for entry in bundle.get("entry", []):
        if entry["search"]["mode"] != "match":
            continue
        grade = next(e["valueCode"] for e in entry["search"]["extension"] if e["url"] == GRADE)
        out.append((entry["resource"]["id"], grade, entry["search"]["score"]))
    return out


@pytest.fixture(scope="module")
def people(http, admin) -> dict[str, str]:  # noqa: F811
    """Homonyms and near-homonyms of Hélène Martin-Dupont, born 1948-05-17 in Lyon (69123)."""
    place = {"url": "http://hl7.org/fhir/StructureDefinition/patient-birthPlace", "valueAddress": {
        "extension": [{"url": "https://hl7.fr/ig/fhir/core/StructureDefinition/fr-core-address-insee-code",
                       "valueCoding": {"system": "https://mos.esante.gouv.fr/NOS/TRE_R13-CommuneOM/FHIR/TRE-R13-CommuneOM",
                                       "code": "69123"}}], "city": "Lyon"}}
    bodies = {
        "ins": patient("Martin-Dupont", "Hélène", "1948-05-17", "female", ins=nir("2", "1948-05"), extension=[place]),
        "used": patient("MARTIN DUPONT", "Helene", "1948-05-17", "female", use="usual"),
        "typo": patient("Martin Dupont", "Helene", "1948-07-15", "female"),
        "brother": patient("Martin-Dupont", "Henri", "1948-05-17", "male"),
        "stranger": patient("Martin-Dupont", "Hélène", "1990-01-01", "male"),
        "other_ins": patient("Martin-Dupont", "Hélène", "1948-05-17", "female", ins=nir("2", "1948-05")),
    }
    return {name: create(http, admin, body).json()["id"] for name, body in bodies.items()}


def test_match_scores_by_ins_then_traits(http, admin, people):  # noqa: F811
    described = {k: v for k, v in http.get(f"/Patient/{people['ins']}", headers=admin).json().items()
                 if k not in ("id", "meta")}
    described["name"] = [{"use": "official", "family": "martin dupont", "given": ["HELENE"]}]  # accents, case, hyphen
    results = graded(match(http, admin, described))
    by_id = {id_: (grade, score) for id_, grade, score in results}
    assert results[0][:2] == (people["ins"], "certain") and results[0][2] == 1
    assert by_id[people["used"]][0] == "probable"  # the used name on one is the birth name on the other
    assert by_id[people["other_ins"]] == ("certainly-not", 0)  # another INS: another person
    assert by_id[people["typo"]][0] == "possible"
    assert people["stranger"] not in by_id  # same names, another birth date and gender
    scores = [score for _, _, score in results]
    assert scores == sorted(scores, reverse=True)


def test_match_without_ins_finds_the_birth_name_from_a_used_name(http, admin, people):  # noqa: F811
    results = graded(match(http, admin, patient("Martin-Dupont", "Hélène", "1948-05-17", "female", use="usual")))
    by_id = {id_: grade for id_, grade, _ in results}
    assert by_id[people["ins"]] == "probable" and by_id[people["used"]] == "probable"
    assert all(grade != "certain" for grade in by_id.values())  # traits never make a match certain
    undated = {k: v for k, v in patient("Martin-Dupont", "Hélène", "", "female").items() if k != "birthDate"}
    assert {grade for _, grade, _ in graded(match(http, admin, undated))} == {"possible"}  # no date: never probable


def test_only_certain_matches_and_count(http, admin, people):  # noqa: F811
    described = patient("Martin-Dupont", "Hélène", "1948-05-17", "female")
    described["identifier"] = http.get(f"/Patient/{people['ins']}", headers=admin).json()["identifier"]
    certain = graded(match(http, admin, described, only_certain=True))
    assert [(id_, grade) for id_, grade, _ in certain] == [(people["ins"], "certain")]
    assert len(graded(match(http, admin, described, count=2))) == 2
    assert graded(match(http, admin, patient("Martin-Dupont", "Hélène", "1948-05-17", "female"),
                        only_certain=True)) == []


def test_match_stays_within_the_callers_reach(http, admin, gp, people):  # noqa: F811
    described = patient("Martin-Dupont", "Hélène", "1948-05-17", "female")
    described["identifier"] = http.get(f"/Patient/{people['ins']}", headers=admin).json()["identifier"]
    r = http.post("/Patient/$match", json={"resourceType": "Parameters", "parameter": [
        {"name": "resource", "resource": described}]}, headers=gp)
    assert r.status_code == 200 and graded(r.json()) == [] and people["ins"] not in r.text
    in_team(http, admin, people["used"])
    assert [id_ for id_, _, _ in graded(match(http, gp, described))] == [people["used"]]


def test_match_refuses_bad_input(http, admin):  # noqa: F811
    def post(body):
        return http.post("/Patient/$match", json=body, headers=admin)

    assert post({"resourceType": "Parameters", "parameter": []}).status_code == 400
    r = post({"resourceType": "Parameters", "parameter": [
        {"name": "resource", "resource": patient("X", "Y", "1950-13-45", "male")}]})
    assert r.status_code == 400 and "Patient.birthDate" in expressions(r)
    r = post({"resourceType": "Parameters", "parameter": [
        {"name": "resource", "resource": patient("X", "Y", "1950-01-01", "male")}, {"name": "count", "valueInteger": 0}]})
    assert r.status_code == 400 and "count" in issue_text(r)
    assert http.get("/Patient/$match", headers=admin).status_code == 405
    cap = http.get("/metadata").json()
    ops = next(r for r in cap["rest"][0]["resource"] if r["type"] == "Patient").get("operation", [])
    assert any(op["name"] == "match" and op["definition"].endswith("Patient-match") for op in ops)
