"""`_include` and `_revinclude` (R4 search.html#include): `Type:param`, `Type:param:Target`, `*`,
`:iterate`; included resources have search.mode=include, appear once, are not counted in the
total, and follow each page."""

from __future__ import annotations

import pytest

from .support import entries, link, matches, observation, patient


def _included(bundle):
    return {f"{e['resource']['resourceType']}/{e['resource']['id']}" for e in entries(bundle, "include")}


@pytest.fixture
def meds(data):
    org = data.create({"resourceType": "Organization", "name": "org"})
    gp = data.create({"resourceType": "Practitioner", "name": [{"family": "gp"}]})
    pat = data.create(patient(managingOrganization={"reference": data.ref(org)},
                              generalPractitioner=[{"reference": data.ref(gp)}]))
    other = data.create(patient())
    med = data.create({"resourceType": "Medication", "code": {"text": "aspirin"}})

    def request(subject):
        return data.create({"resourceType": "MedicationRequest", "status": "active", "intent": "order",
                            "subject": {"reference": data.ref(subject)},
                            "medicationReference": {"reference": data.ref(med)},
                            "requester": {"reference": data.ref(gp)}})

    rq1, rq2, rq3 = request(pat), request(pat), request(other)
    disp = data.create({"resourceType": "MedicationDispense", "status": "completed",
                        "medicationReference": {"reference": data.ref(med)},
                        "subject": {"reference": data.ref(pat)},
                        "authorizingPrescription": [{"reference": data.ref(rq1)}]})
    prov = data.create({"resourceType": "Provenance", "recorded": "2021-01-01T00:00:00Z",
                        "target": [{"reference": data.ref(rq1)}],
                        "agent": [{"who": {"reference": data.ref(gp)}}]})
    return {k: data.ref(v) for k, v in dict(org=org, gp=gp, pat=pat, other=other, med=med, rq1=rq1, rq2=rq2,
                                             rq3=rq3, disp=disp, prov=prov).items()}


def test_include(data, meds):
    b = data.bundle("/MedicationRequest", {"_include": "MedicationRequest:subject"})
    assert set(matches(b)) == {meds[k].split("/")[1] for k in ("rq1", "rq2", "rq3")}
    assert _included(b) == {meds["pat"], meds["other"]}
    assert b["total"] == 3  # included resources are not counted
    # each included resource once, though two requests point to it
    refs = [f"{e['resource']['resourceType']}/{e['resource']['id']}" for e in entries(b, "include")]
    assert len(refs) == len(set(refs))
    for e in entries(b, "include"):
        assert e["fullUrl"].endswith(f"/{e['resource']['resourceType']}/{e['resource']['id']}")


def test_include_with_target_type(data, meds):
    b = data.bundle("/MedicationRequest", {"_include": "MedicationRequest:subject:Patient"})
    assert _included(b) == {meds["pat"], meds["other"]}
    b = data.bundle("/MedicationRequest", {"_include": "MedicationRequest:subject:Group"})
    assert _included(b) == set()


def test_several_includes(data, meds):
    b = data.bundle("/MedicationRequest", [("_include", "MedicationRequest:subject"),
                                           ("_include", "MedicationRequest:medication"),
                                           ("_include", "MedicationRequest:requester")])
    assert _included(b) == {meds["pat"], meds["other"], meds["med"], meds["gp"]}


def test_include_star(data, meds):
    b = data.bundle("/MedicationRequest", {"_id": meds["rq1"].split("/")[1], "_include": "*"})
    assert _included(b) == {meds["pat"], meds["med"], meds["gp"]}


def test_revinclude(data, meds):
    b = data.bundle("/MedicationRequest", {"_revinclude": "Provenance:target"})
    assert _included(b) == {meds["prov"]}
    b = data.bundle("/MedicationRequest", {"_revinclude": "MedicationDispense:prescription"})
    assert _included(b) == {meds["disp"]}
    b = data.bundle("/Patient", {"_id": meds["pat"].split("/")[1], "_revinclude": "MedicationRequest:subject"})
    assert _included(b) == {meds["rq1"], meds["rq2"]}


def test_revinclude_star(data, meds):
    b = data.bundle("/MedicationRequest", {"_id": meds["rq1"].split("/")[1], "_revinclude": "*"})
    assert _included(b) == {meds["prov"], meds["disp"]}


def test_include_iterate(data, meds):
    params = [("_include", "MedicationDispense:prescription"),
              ("_include:iterate", "MedicationRequest:subject")]
    b = data.bundle("/MedicationDispense", params)
    assert _included(b) == {meds["rq1"], meds["pat"]}
    # without :iterate, the second include does not apply to included requests
    b = data.bundle("/MedicationDispense", [("_include", "MedicationDispense:prescription"),
                                            ("_include", "MedicationRequest:subject")])
    assert _included(b) == {meds["rq1"]}


def test_iterate_several_levels(data, meds):
    b = data.bundle("/MedicationDispense", [("_include", "MedicationDispense:prescription"),
                                            ("_include:iterate", "MedicationRequest:subject"),
                                            ("_include:iterate", "Patient:organization")])
    assert _included(b) == {meds["rq1"], meds["pat"], meds["org"]}


def test_revinclude_iterate(data, meds):
    b = data.bundle("/Patient", [("_id", meds["pat"].split("/")[1]),
                                 ("_revinclude", "MedicationRequest:subject"),
                                 ("_revinclude:iterate", "Provenance:target")])
    assert _included(b) == {meds["rq1"], meds["rq2"], meds["prov"]}


def test_a_match_is_not_repeated_as_an_include(data):
    a = data.create(patient())
    b_ = data.create(patient(link=[{"other": {"reference": data.ref(a)}, "type": "seealso"}]))
    b = data.bundle("/Patient", {"_include": "Patient:link"})
    assert set(matches(b)) == {a["id"], b_["id"]}
    assert _included(b) == set()


def test_includes_follow_the_page(data, meds):
    b = data.bundle("/MedicationRequest", {"_include": "MedicationRequest:subject", "_count": "1", "_sort": "_id"})
    seen_matches, seen_included = [], set()
    while True:
        page_matches = matches(b)
        assert len(page_matches) == 1
        seen_matches += page_matches
        request = entries(b, "match")[0]["resource"]
        assert _included(b) == {request["subject"]["reference"]}
        seen_included |= _included(b)
        nxt = link(b, "next")
        if nxt is None:
            break
        b = data.client.get(nxt).json()
    assert len(seen_matches) == 3
    assert seen_included == {meds["pat"], meds["other"]}


@pytest.mark.parametrize("data", ["unchecked"], indirect=True)  # the requests still refer to what is deleted
def test_deleted_targets_are_not_included(data, meds):
    assert data.client.delete(f"/{meds['gp']}").status_code in (200, 204)
    b = data.bundle("/MedicationRequest", {"_include": "MedicationRequest:requester"})
    assert _included(b) == set()


@pytest.mark.parametrize("name, value", [
    ("_include", "MedicationRequest"), ("_include", "MedicationRequest:nosuch"),
    ("_include", "NotAType:subject"), ("_include", "MedicationRequest:status"),
    ("_revinclude", "Provenance:target:NotAType"), ("_include", "MedicationRequest:subject:Patient:extra"),
])
def test_invalid_includes_are_400(data, meds, name, value):
    r = data.get("/MedicationRequest", {name: value})
    assert r.status_code == 400, r.text


def test_self_link_keeps_includes(data, meds):
    b = data.bundle("/MedicationRequest", [("_include", "MedicationRequest:subject"),
                                           ("_revinclude:iterate", "Provenance:target")])
    self_link = link(b, "self")
    assert "_include=MedicationRequest:subject" in self_link
    assert "_revinclude:iterate=Provenance:target" in self_link or \
        "_revinclude%3Aiterate=Provenance%3Atarget" in self_link


def test_observation_has_member_iterate(data):
    leaf = data.create(observation())
    mid = data.create(observation(hasMember=[{"reference": data.ref(leaf)}]))
    top = data.create(observation(hasMember=[{"reference": data.ref(mid)}]))
    b = data.bundle("/Observation", {"_id": top["id"], "_include:iterate": "Observation:has-member"})
    assert _included(b) == {data.ref(mid), data.ref(leaf)}
    b = data.bundle("/Observation", {"_id": top["id"], "_include": "Observation:has-member"})
    assert _included(b) == {data.ref(mid)}
