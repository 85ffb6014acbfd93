"""The search result Bundle (R4 search.html#return, #summary, #elements, #total): type searchset,
fullUrl, search.mode match/include/outcome, `self` showing the parameters applied, unknown
parameters (lenient: reported in an outcome entry; `Prefer: handling=strict`: 400), `_summary`,
`_elements` (SUBSETTED tag), `_total`, `_count`, and `POST [type]/_search`."""

from __future__ import annotations

from urllib.parse import parse_qsl, urlsplit

import pytest

from .support import entries, link, matches, observation, patient, uid

SUBSETTED = {"system": "http://terminology.hl7.org/CodeSystem/v3-ObservationValue", "code": "SUBSETTED"}


def _self_params(bundle):
    return parse_qsl(urlsplit(link(bundle, "self")).query, keep_blank_values=True)


@pytest.fixture
def two(data):
    u = uid("n")
    a = data.create(patient(name=[{"family": u, "given": ["Ann"]}], gender="female", birthDate="1970-01-01",
                            text={"status": "generated", "div": '<div xmlns="http://www.w3.org/1999/xhtml">Ann</div>'},
                            photo=[{"contentType": "image/png", "data": "iVBORw0KGgo="}],
                            communication=[{"language": {"text": "fr"}}]))
    b = data.create(patient(name=[{"family": u, "given": ["Bob"]}], gender="male"))
    return u, a, b


def test_searchset_bundle(data, two, base_url):
    u, a, b = two
    bundle = data.bundle("/Patient", {"family": u})
    assert bundle["type"] == "searchset" and bundle["total"] == 2
    for entry in bundle["entry"]:
        res = entry["resource"]
        assert entry["search"]["mode"] == "match"
        assert entry["fullUrl"] == f"{base_url}/Patient/{res['id']}"
    stored = {e["resource"]["id"]: e["resource"] for e in bundle["entry"]}
    assert stored[a["id"]] == a and stored[b["id"]] == b  # the stored resources, unchanged


def test_self_link_shows_the_parameters_applied(data, two):
    u, _, _ = two
    bundle = data.bundle("/Patient", [("family", u), ("given", "ann"), ("given", "an"), ("_count", "5")])
    params = _self_params(bundle)
    assert ("family", u) in params and ("given", "ann") in params and ("given", "an") in params
    assert ("_count", "5") in params
    assert urlsplit(link(bundle, "self")).path.endswith("/Patient")


def test_unknown_parameter_lenient_is_reported_and_ignored(data, two):
    u, a, b = two
    bundle = data.bundle("/Patient", [("family", u), ("nosuchparam", "x")])
    assert set(matches(bundle)) == {a["id"], b["id"]}  # ignored, not "match nothing"
    assert "nosuchparam" not in link(bundle, "self")
    outcome = entries(bundle, "outcome")
    assert len(outcome) == 1
    oo = outcome[0]["resource"]
    assert oo["resourceType"] == "OperationOutcome"
    assert any("nosuchparam" in i.get("diagnostics", "") and i["severity"] in ("warning", "information")
               for i in oo["issue"])
    assert bundle["total"] == 2  # the outcome is not a match


def test_unknown_parameter_strict_is_400(data, two):
    u, _, _ = two
    r = data.get("/Patient", [("family", u), ("nosuchparam", "x")], headers={"Prefer": "handling=strict"})
    assert r.status_code == 400, r.text
    oo = r.json()
    assert oo["resourceType"] == "OperationOutcome" and "nosuchparam" in str(oo)
    ok = data.get("/Patient", [("family", u)], headers={"Prefer": "handling=strict"})
    assert ok.status_code == 200


def test_known_parameters_produce_no_outcome(data, two):
    u, _, _ = two
    assert entries(data.bundle("/Patient", {"family": u}), "outcome") == []


# -- _summary / _elements -------------------------------------------------------------------------
def _only(bundle):
    (entry,) = entries(bundle, "match")
    return entry["resource"]


def test_summary_count(data, two):
    u, _, _ = two
    bundle = data.bundle("/Patient", {"family": u, "_summary": "count"})
    assert bundle["total"] == 2
    assert not entries(bundle, "match")


def test_summary_true(data, two):
    u, a, _ = two
    res = _only(data.bundle("/Patient", {"family": u, "given": "ann", "_summary": "true"}))
    assert res["name"] == a["name"] and res["gender"] == "female" and res["birthDate"] == "1970-01-01"
    assert "photo" not in res and "communication" not in res and "text" not in res
    assert SUBSETTED in res["meta"]["tag"]
    assert res["id"] == a["id"] and res["meta"]["versionId"] == a["meta"]["versionId"]


def test_summary_text(data, two):
    u, a, _ = two
    res = _only(data.bundle("/Patient", {"family": u, "given": "ann", "_summary": "text"}))
    assert res["text"] == a["text"]
    assert "name" not in res and "photo" not in res and "gender" not in res
    assert res["id"] == a["id"] and SUBSETTED in res["meta"]["tag"]


def test_summary_data(data, two):
    u, a, _ = two
    res = _only(data.bundle("/Patient", {"family": u, "given": "ann", "_summary": "data"}))
    assert "text" not in res
    assert res["photo"] == a["photo"] and res["communication"] == a["communication"]
    assert SUBSETTED in res["meta"]["tag"]


def test_summary_false(data, two):
    u, a, _ = two
    res = _only(data.bundle("/Patient", {"family": u, "given": "ann", "_summary": "false"}))
    assert res == a


def test_elements(data, two):
    u, a, _ = two
    res = _only(data.bundle("/Patient", {"family": u, "given": "ann", "_elements": "gender,birthDate"}))
    assert res["gender"] == "female" and res["birthDate"] == "1970-01-01"
    assert "name" not in res and "photo" not in res and "text" not in res
    assert res["resourceType"] == "Patient" and res["id"] == a["id"]
    assert SUBSETTED in res["meta"]["tag"]


def test_elements_keep_mandatory_elements(data):
    data.placeholders("Patient/x")
    obs = data.create(observation(("http://loinc.org", "1-8"), subject={"reference": "Patient/x"},
                                  valueString="v"))
    res = _only(data.bundle("/Observation", {"_id": obs["id"], "_elements": "subject"}))
    assert res["subject"] == {"reference": "Patient/x"}
    assert res["status"] == "final" and res["code"] == obs["code"]  # 1..1 elements stay
    assert "valueString" not in res


def test_summary_and_elements_do_not_change_the_stored_resource(data, client, two):
    u, a, _ = two
    data.bundle("/Patient", {"family": u, "_summary": "true"})
    assert client.get(f"/Patient/{a['id']}").json() == a


@pytest.mark.parametrize("param, value", [("_summary", "bogus"), ("_total", "bogus"), ("_count", "x")])
def test_invalid_result_parameters_are_400(data, param, value):
    r = data.get("/Patient", {param: value})
    assert r.status_code == 400, r.text


# -- _total / _count ------------------------------------------------------------------------------
def test_total(data, two):
    u, _, _ = two
    assert data.bundle("/Patient", {"family": u, "_total": "accurate"})["total"] == 2
    assert "total" not in data.bundle("/Patient", {"family": u, "_total": "none"})
    estimate = data.bundle("/Patient", {"family": u, "_total": "estimate"})
    assert estimate.get("total", 2) >= 2
    assert data.bundle("/Patient", {"family": u})["total"] == 2
    assert data.bundle("/Patient", {"family": u, "given": "zzz"})["total"] == 0


def test_count(data, two):
    u, _, _ = two
    bundle = data.bundle("/Patient", {"family": u, "_count": "1"})
    assert len(matches(bundle)) == 1 and bundle["total"] == 2
    assert link(bundle, "next") is not None


def test_empty_result(data):
    bundle = data.bundle("/Patient", {"family": uid("none")})
    assert bundle["total"] == 0 and not bundle.get("entry")


# -- POST _search ----------------------------------------------------------------------------------
def test_post_search_with_a_form_body(data, two):
    u, a, b = two
    r = data.client.post("/Patient/_search", data={"family": u, "_tag": data.tag})
    assert r.status_code == 200, r.text
    bundle = r.json()
    assert bundle["type"] == "searchset" and set(matches(bundle)) == {a["id"], b["id"]}
    assert ("family", u) in _self_params(bundle)
    get = data.bundle("/Patient", {"family": u})
    assert matches(get) == matches(bundle)


def test_post_search_merges_url_and_body_parameters(data, two):
    u, a, _ = two
    r = data.client.post("/Patient/_search", params={"family": u}, data={"given": "ann", "_tag": data.tag})
    assert r.status_code == 200, r.text
    assert matches(r.json()) == [a["id"]]


def test_post_search_repeated_body_parameters_are_and(data, two):
    u, a, _ = two
    body = f"family={u}&given=a&given=ann&_tag={data.tag.replace('|', '%7C')}"
    r = data.client.post("/Patient/_search", content=body,
                         headers={"Content-Type": "application/x-www-form-urlencoded"})
    assert r.status_code == 200, r.text
    assert matches(r.json()) == [a["id"]]


def test_post_search_with_a_json_body_is_refused(data):
    r = data.client.post("/Patient/_search", json={"family": "x"})
    assert r.status_code in (400, 415), r.text
