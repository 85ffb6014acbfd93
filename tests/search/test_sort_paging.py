"""`_sort` (R4 search.html#sort) on several keys, `-` descending, any parameter type, missing values
last; `_count` with a configurable maximum (FHIR_MAX_COUNT); paging links self/first/next/
previous/last that stay stable while data changes (no shifted or duplicated pages)."""

from __future__ import annotations

import httpx
import pytest

from .support import Data, entries, link, matches, observation, patient

UCUM = "http://unitsofmeasure.org"


# -- sorting -------------------------------------------------------------------------------------
@pytest.fixture
def people(data):
    spec = [("carter", "1980-05-01", "male"), ("Adams", "1990-01-01", "female"), ("baker", "1970-12-31", "other"),
            ("adams", "1985-06-15", "male"), ("Émile", None, "female")]
    ids = {}
    for i, (family, birth, gender) in enumerate(spec):
        fields = {"name": [{"family": family}], "gender": gender}
        if birth:
            fields["birthDate"] = birth
        ids[f"{family}{i}"] = data.create(patient(**fields))["id"]
    return ids


def _order(data, path, sort, **extra):
    return data.id_list(path, {"_sort": sort, **extra})


def test_sort_by_date_ascending_and_descending_missing_last(data, people):
    asc = _order(data, "/Patient", "birthdate")
    assert asc == [people[k] for k in ("baker2", "carter0", "adams3", "Adams1", "Émile4")]
    desc = _order(data, "/Patient", "-birthdate")
    assert desc == [people[k] for k in ("Adams1", "adams3", "carter0", "baker2", "Émile4")]


def test_sort_by_string_is_case_and_accent_insensitive(data, people):
    order = _order(data, "/Patient", "family")
    first_two = set(order[:2])
    assert first_two == {people["Adams1"], people["adams3"]}
    assert order[2:] == [people["baker2"], people["carter0"], people["Émile4"]]


def test_sort_on_several_keys(data, people):
    order = _order(data, "/Patient", "family,-birthdate")
    assert order == [people[k] for k in ("Adams1", "adams3", "baker2", "carter0", "Émile4")]
    order = _order(data, "/Patient", "family,birthdate")
    assert order[:2] == [people["adams3"], people["Adams1"]]
    order = _order(data, "/Patient", "gender,-birthdate")
    assert order == [people[k] for k in ("Adams1", "Émile4", "adams3", "carter0", "baker2")]


def test_sort_by_token(data, people):
    order = _order(data, "/Patient", "-gender")
    genders = [data.client.get(f"/Patient/{i}").json()["gender"] for i in order]
    assert genders == sorted(genders, reverse=True)


def test_sort_by_id_and_last_updated(data, people):
    assert _order(data, "/Patient", "_id") == sorted(people.values())
    stamps = {i: data.client.get(f"/Patient/{i}").json()["meta"]["lastUpdated"] for i in people.values()}
    by_time = _order(data, "/Patient", "_lastUpdated")
    assert sorted(by_time) == sorted(people.values())
    assert [stamps[i] for i in by_time] == sorted(stamps.values())
    latest_first = _order(data, "/Patient", "-_lastUpdated")
    assert [stamps[i] for i in latest_first] == sorted(stamps.values(), reverse=True)


def test_sort_by_quantity_and_number(data):
    ids = [data.create(observation(valueQuantity={"value": v, "system": UCUM, "code": "mg"}))["id"]
           for v in (5, 0.5, 50, -1)]
    assert _order(data, "/Observation", "value-quantity") == [ids[3], ids[1], ids[0], ids[2]]
    assert _order(data, "/Observation", "-value-quantity") == [ids[2], ids[0], ids[1], ids[3]]


def test_sort_by_reference(data):
    data.placeholders("Patient/a-sort", "Patient/b-sort", "Patient/c-sort")
    a = data.create(observation(subject={"reference": "Patient/a-sort"}))["id"]
    c = data.create(observation(subject={"reference": "Patient/c-sort"}))["id"]
    b = data.create(observation(subject={"reference": "Patient/b-sort"}))["id"]
    assert _order(data, "/Observation", "subject") == [a, b, c]
    assert _order(data, "/Observation", "-subject") == [c, b, a]


def test_sort_by_period_uses_start_ascending_and_end_descending(data):
    long_ = data.create(observation(effectivePeriod={"start": "2020-01-01", "end": "2020-12-31"}))["id"]
    short = data.create(observation(effectivePeriod={"start": "2020-03-01", "end": "2020-03-02"}))["id"]
    point = data.create(observation(effectiveDateTime="2020-06-01"))["id"]
    assert _order(data, "/Observation", "date") == [long_, short, point]
    assert _order(data, "/Observation", "-date") == [long_, point, short]


@pytest.mark.parametrize("sort", ["nosuchparam", "-nosuch", "family,nosuch"])
def test_sort_by_unknown_parameter_is_400(data, sort):
    r = data.get("/Patient", {"_sort": sort})
    assert r.status_code == 400, r.text


# -- paging --------------------------------------------------------------------------------------
@pytest.fixture
def seven(data):
    return [data.create(patient(birthDate=f"2000-01-0{i + 1}"))["id"] for i in range(7)]


def _page_ids(bundle):
    return matches(bundle)


def _follow(client: httpx.Client, url: str) -> dict:
    r = client.get(url)
    assert r.status_code == 200, (url, r.status_code, r.text)
    return r.json()


def test_links_and_pages(data, seven):
    first = data.bundle("/Patient", {"_sort": "birthdate", "_count": "3"})
    assert first["total"] == 7
    assert _page_ids(first) == seven[:3]
    rels = {lk["relation"] for lk in first["link"]}
    assert {"self", "first", "next", "last"} <= rels and "previous" not in rels
    assert "_count=3" in link(first, "self") and "_sort=birthdate" in link(first, "self")
    second = _follow(data.client, link(first, "next"))
    assert _page_ids(second) == seven[3:6]
    assert second["total"] == 7
    assert {"self", "first", "next", "previous", "last"} <= {lk["relation"] for lk in second["link"]}
    third = _follow(data.client, link(second, "next"))
    assert _page_ids(third) == seven[6:]
    assert link(third, "next") is None and link(third, "previous") is not None
    assert _page_ids(_follow(data.client, link(third, "previous"))) == seven[3:6]
    assert _page_ids(_follow(data.client, link(second, "previous"))) == seven[:3]
    assert _page_ids(_follow(data.client, link(second, "first"))) == seven[:3]
    assert _page_ids(_follow(data.client, link(first, "last"))) == seven[6:]


def test_walking_next_gives_every_match_once(data, seven):
    assert data.id_list("/Patient", {"_sort": "-birthdate", "_count": "2"}) == list(reversed(seven))
    unsorted = data.id_list("/Patient", {"_count": "2"})
    assert sorted(unsorted) == sorted(seven) and len(unsorted) == 7


def test_pages_are_stable_while_data_changes(data, client, seven):
    first = data.bundle("/Patient", {"_sort": "birthdate", "_count": "3"})
    assert _page_ids(first) == seven[:3]
    # new matches that would sort first, and a deletion on the second page
    for day in ("1999-01-01", "1999-01-02"):
        data.create(patient(birthDate=day))
    assert client.delete(f"/Patient/{seven[4]}").status_code in (200, 204)
    client.put(f"/Patient/{seven[5]}", json=data.tagged(patient(id=seven[5], birthDate="1990-01-01")))
    second = _follow(client, link(first, "next"))
    third = _follow(client, link(second, "next"))
    got = _page_ids(second) + _page_ids(third)
    # the pages of the first search: no shift, no duplicate, no new resource; the deleted one gone
    assert got == [seven[3], seven[5], seven[6]]
    assert not set(got) & set(_page_ids(first))
    # a new search sees the new data
    assert data.id_list("/Patient", {"_sort": "birthdate"})[:3] == \
        [seven[5], *data.id_list("/Patient", {"birthdate": "1999", "_sort": "birthdate"})]


def test_count_limits_the_page(data, seven):
    b = data.bundle("/Patient", {"_count": "5"})
    assert len(_page_ids(b)) == 5 and b["total"] == 7


def test_count_zero_returns_no_resources(data, seven):
    b = data.bundle("/Patient", {"_count": "0"})
    assert _page_ids(b) == []
    assert b.get("total", 7) == 7


@pytest.mark.parametrize("count", ["-1", "abc", "1.5"])
def test_invalid_count_is_400(data, count):
    r = data.get("/Patient", {"_count": count})
    assert r.status_code == 400, r.text


def test_unknown_page_token_is_an_error_not_a_500(data):
    r = data.client.get("/Patient", params={"_page": "0123456789abcdef0123456789abcdef.3"})
    assert 400 <= r.status_code < 500, r.text
    assert r.json()["resourceType"] == "OperationOutcome"
    r = data.client.get("/Patient", params={"_page": "../../etc.0"})
    assert 400 <= r.status_code < 500, r.text


# -- FHIR_MAX_COUNT ------------------------------------------------------------------------------
@pytest.fixture(scope="module")
def small_pages(tmp_path_factory, r4_examples):
    from tests.conftest import start_server

    running = start_server(tmp_path_factory.mktemp("max-count"),
                           extra_env={"FHIR_MAX_COUNT": "4", "FHIR_DEFAULT_COUNT": "2"})
    yield running
    running.stop()


def test_max_count_caps_the_page_size(small_pages):
    with httpx.Client(base_url=small_pages.base_url, timeout=60) as client:
        data = Data(client)
        made = [data.create(patient())["id"] for _ in range(6)]
        big = data.bundle("/Patient", {"_count": "100"})
        assert len(_page_ids(big)) == 4 and big["total"] == 6
        assert link(big, "next") is not None
        default = data.bundle("/Patient")
        assert len(_page_ids(default)) == 2
        assert sorted(data.id_list("/Patient", {"_count": "100"})) == sorted(made)
        assert len(entries(big, "match")) == 4
