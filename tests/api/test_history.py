"""history at instance, type and system level (FHIR R4 http.html#history): `_count`, `_since`,
`_at`, and paging links that stay stable while the history grows.

These tests run against dedicated servers, so that a type's (or the system's) history holds
exactly what the test wrote and can be compared entry by entry.
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import httpx
import pytest

from .support import assert_outcome, history_entries, link, new_id, start_server

EPOCH_2000 = "2000-01-01T00:00:00Z"


@pytest.fixture(scope="module")
def hserver(request, tmp_path_factory, r4_examples):
    running = start_server(request, tmp_path_factory.mktemp("history"))
    yield running
    running.stop()


@pytest.fixture
def hc(hserver):
    with httpx.Client(base_url=hserver.base_url, timeout=60, headers={"Accept": "application/fhir+json"}) as c:
        yield c


def _instant(text: str) -> datetime:
    return datetime.fromisoformat(text.replace("Z", "+00:00"))


def _fmt(ts: datetime) -> str:
    return ts.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%S.") + f"{ts.microsecond // 1000:03d}Z"


class Recorder:
    """Writes through HTTP and remembers every version it made: (type, id, version, lastUpdated,
    method, resource or None)."""

    def __init__(self, client: httpx.Client):
        self.client = client
        self.versions: list[dict] = []

    def _keep(self, r: httpx.Response, method: str, type_: str, id_: str | None = None) -> dict:
        assert r.status_code in (200, 201), r.text
        body = r.json()
        if method == "DELETE":
            version = int(r.headers["etag"][3:-1])
            previous = [v for v in self.versions if v["type"] == type_ and v["id"] == id_]
            entry = {"type": type_, "id": id_, "version": version, "method": "DELETE", "resource": None,
                     "lastUpdated": None}
            # a tombstone's time is only visible in the history; fill it in below
            hist = self.client.get(f"/{type_}/{id_}/_history/{version}")
            assert hist.status_code == 410
            entry["lastUpdated"] = self._tombstone_time(type_, id_, version)
            assert version == previous[-1]["version"] + 1
        else:
            entry = {"type": type_, "id": body["id"], "version": int(body["meta"]["versionId"]),
                     "method": method, "resource": body, "lastUpdated": body["meta"]["lastUpdated"]}
        self.versions.append(entry)
        return entry

    def _tombstone_time(self, type_, id_, version):
        bundle = self.client.get(f"/{type_}/{id_}/_history").json()
        for e in bundle["entry"]:
            if e["response"]["etag"] == f'W/"{version}"':
                return e["response"]["lastModified"]
        raise AssertionError(f"no tombstone {version} in {bundle}")

    def post(self, resource: dict) -> dict:
        return self._keep(self.client.post(f"/{resource['resourceType']}", json=resource), "POST",
                          resource["resourceType"])

    def put(self, resource: dict) -> dict:
        type_ = resource["resourceType"]
        return self._keep(self.client.put(f"/{type_}/{resource['id']}", json=resource), "PUT", type_)

    def delete(self, type_: str, id_: str) -> dict:
        return self._keep(self.client.delete(f"/{type_}/{id_}"), "DELETE", type_, id_)

    def expected(self, type_: str | None = None, id_: str | None = None) -> list[tuple[str, str, int]]:
        """Keys newest first (ties in lastUpdated: any order, compared as sets per instant)."""
        chosen = [v for v in self.versions if (type_ is None or v["type"] == type_)
                  and (id_ is None or v["id"] == id_)]
        return [(v["type"], v["id"], v["version"]) for v in
                sorted(chosen, key=lambda v: (v["lastUpdated"], v["type"], v["id"], v["version"]), reverse=True)]


def _key(entry: dict) -> tuple[str, str, int]:
    full = entry["fullUrl"].split("/")
    return full[-2], full[-1], int(entry["response"]["etag"][3:-1])


def _check_entry(entry: dict, recorded: dict, base_url: str) -> None:
    type_, id_ = recorded["type"], recorded["id"]
    assert entry["fullUrl"] == f"{base_url}/{type_}/{id_}"
    assert entry["response"]["etag"] == f'W/"{recorded["version"]}"'
    assert entry["response"]["lastModified"] == recorded["lastUpdated"]
    method = recorded["method"]
    assert entry["request"] == {"method": method, "url": type_ if method == "POST" else f"{type_}/{id_}"}
    status = entry["response"]["status"].split()[0]
    if method == "DELETE":
        assert "resource" not in entry
        assert status in ("200", "204")
    else:
        assert entry["resource"] == recorded["resource"]
        assert status == ("201" if recorded["version"] == 1 else "200")


def _assert_newest_first(entries: list[dict]) -> None:
    times = [e["response"]["lastModified"] for e in entries]
    assert times == sorted(times, reverse=True), times
    keys = [_key(e) for e in entries]
    assert len(keys) == len(set(keys)), "duplicate entries"


def _same_order(entries: list[dict], expected: list[tuple]) -> None:
    """Entries hold exactly `expected`, newest first; entries sharing a lastModified may come in any order."""
    assert sorted(_key(e) for e in entries) == sorted(expected)
    _assert_newest_first(entries)


# -- instance history -------------------------------------------------------------------------

def test_instance_history_has_every_version_newest_first(hc, hserver):
    rec = Recorder(hc)
    first = rec.post({"resourceType": "Patient", "active": True})
    id_ = first["id"]
    rec.put({"resourceType": "Patient", "id": id_, "active": False})
    rec.put({"resourceType": "Patient", "id": id_, "gender": "unknown"})
    rec.delete("Patient", id_)
    rec.put({"resourceType": "Patient", "id": id_, "gender": "female"})
    r = hc.get(f"/Patient/{id_}/_history")
    assert r.status_code == 200
    assert r.headers["content-type"] == "application/fhir+json; charset=utf-8"
    bundle = r.json()
    assert bundle["resourceType"] == "Bundle" and bundle["type"] == "history"
    assert bundle["total"] == 5
    assert link(bundle, "self") == f"{hserver.base_url}/Patient/{id_}/_history"
    assert link(bundle, "first") is not None
    assert link(bundle, "next") is None and link(bundle, "previous") is None
    assert [_key(e) for e in bundle["entry"]] == [("Patient", id_, v) for v in (5, 4, 3, 2, 1)]
    for entry, recorded in zip(bundle["entry"], reversed(rec.versions), strict=False):
        _check_entry(entry, recorded, hserver.base_url)
    for entry in bundle["entry"]:
        if "resource" in entry:
            v = entry["resource"]["meta"]["versionId"]
            assert hc.get(f"/Patient/{id_}/_history/{v}").json() == entry["resource"]
    # the `first` link gives the same page
    assert hc.get(link(bundle, "first")).json()["entry"] == bundle["entry"]


def test_instance_history_paging(hc):
    id_ = new_id("page")
    rec = Recorder(hc)
    for i in range(7):
        rec.put({"resourceType": "Patient", "id": id_, "birthDate": f"200{i}"})
    entries, pages = history_entries(hc, f"/Patient/{id_}/_history", {"_count": "3"})
    assert [[_key(e)[2] for e in p["entry"]] for p in pages] == [[7, 6, 5], [4, 3, 2], [1]]
    assert all(p["total"] == 7 for p in pages)
    assert link(pages[0], "previous") is None and link(pages[-1], "next") is None
    # back from the last page with `previous`
    back = [pages[-1]]
    while (prev := link(back[-1], "previous")) is not None:
        r = hc.get(prev)
        assert r.status_code == 200
        back.append(r.json())
    assert [p["entry"] for p in reversed(back)] == [p["entry"] for p in pages]
    # writes after the first page do not shift the pages being walked
    first = hc.get(f"/Patient/{id_}/_history", params={"_count": "3"}).json()
    rec.put({"resourceType": "Patient", "id": id_, "birthDate": "2010"})
    second = hc.get(link(first, "next")).json()
    assert [_key(e)[2] for e in second["entry"]] == [4, 3, 2]
    assert [_key(e)[2] for e in hc.get(link(first, "first")).json()["entry"]] == [7, 6, 5]
    fresh = hc.get(f"/Patient/{id_}/_history", params={"_count": "3"}).json()
    assert [_key(e)[2] for e in fresh["entry"]] == [8, 7, 6] and fresh["total"] == 8


def test_instance_history_since(hc):
    id_ = new_id("since")
    rec = Recorder(hc)
    for i in range(4):
        rec.put({"resourceType": "Patient", "id": id_, "birthDate": f"199{i}"})
    v3 = rec.versions[2]["lastUpdated"]
    bundle = hc.get(f"/Patient/{id_}/_history", params={"_since": v3}).json()
    assert [_key(e)[2] for e in bundle["entry"]] == [4, 3]
    assert bundle["total"] == 2
    assert "_since=" in link(bundle, "self")
    later = _fmt(_instant(rec.versions[-1]["lastUpdated"]) + timedelta(milliseconds=1))
    empty = hc.get(f"/Patient/{id_}/_history", params={"_since": later}).json()
    assert empty["total"] == 0 and "entry" not in empty
    everything = hc.get(f"/Patient/{id_}/_history", params={"_since": "2000"}).json()
    assert everything["total"] == 4


def _current_during(versions: list[dict], low: datetime, high: datetime) -> set[tuple]:
    """The spec's definition of `_at`: versions that were the current one at some moment of [low, high)."""
    out = set()
    by_resource: dict[tuple, list[dict]] = {}
    for v in versions:
        by_resource.setdefault((v["type"], v["id"]), []).append(v)
    for chain in by_resource.values():
        chain = sorted(chain, key=lambda v: v["version"])
        for i, v in enumerate(chain):
            start = _instant(v["lastUpdated"])
            end = _instant(chain[i + 1]["lastUpdated"]) if i + 1 < len(chain) else None
            if start < high and (end is None or end > low):
                out.add((v["type"], v["id"], v["version"]))
    return out


def test_instance_history_at(hc):
    id_ = new_id("at")
    rec = Recorder(hc)
    for i in range(3):
        rec.put({"resourceType": "Patient", "id": id_, "birthDate": f"198{i}"})
    rec.delete("Patient", id_)
    for v in rec.versions:
        ts = _instant(v["lastUpdated"])
        for low in (ts, ts - timedelta(milliseconds=1)):
            at = _fmt(low)
            bundle = hc.get(f"/Patient/{id_}/_history", params={"_at": at}).json()
            expected = _current_during(rec.versions, low, low + timedelta(milliseconds=1))
            assert {_key(e) for e in bundle.get("entry", [])} == expected, at
            assert bundle["total"] == len(expected)
    # a whole day covers every version; a day long ago covers none
    day = rec.versions[0]["lastUpdated"][:10]
    assert hc.get(f"/Patient/{id_}/_history", params={"_at": day}).json()["total"] == 4
    assert hc.get(f"/Patient/{id_}/_history", params={"_at": "2001-01-01"}).json()["total"] == 0


def test_instance_history_unknown_is_404(hc):
    assert_outcome(hc.get(f"/Patient/{new_id('nobody')}/_history"), 404, "not-found")


# -- type history ------------------------------------------------------------------------------

def _device(id_=None, **fields):
    out = {"resourceType": "Device"}
    if id_:
        out["id"] = id_
    out.update(fields)
    return out


def test_type_history_walk_is_complete_ordered_and_stable(hc, hserver):
    rec = Recorder(hc)
    ids = [rec.post(_device(distinctIdentifier=f"d{i}"))["id"] for i in range(6)]
    for round_ in range(3):
        for id_ in ids[: 6 - round_ * 2]:
            rec.put(_device(id_, distinctIdentifier=f"{id_}-r{round_}"))
    rec.delete("Device", ids[0])
    rec.delete("Device", ids[5])
    since = rec.versions[0]["lastUpdated"]
    expected = rec.expected("Device")
    assert len(expected) == 6 + 6 + 4 + 2 + 2

    params = {"_since": since, "_count": "5"}
    everything = hc.get("/Device/_history", params={"_since": since, "_count": "1000"}).json()
    _same_order(everything["entry"], expected)
    by_key = {(v["type"], v["id"], v["version"]): v for v in rec.versions}
    for entry in everything["entry"]:
        _check_entry(entry, by_key[_key(entry)], hserver.base_url)

    # walk forward; write more Devices after the first page
    first = hc.get("/Device/_history", params=params)
    assert first.status_code == 200
    pages = [first.json()]
    assert link(pages[0], "previous") is None
    rec.post(_device(distinctIdentifier="late"))
    rec.put(_device(ids[1], distinctIdentifier="late-update"))
    while (nxt := link(pages[-1], "next")) is not None:
        r = hc.get(nxt)
        assert r.status_code == 200, r.text
        pages.append(r.json())
    assert [len(p["entry"]) for p in pages] == [5, 5, 5, 5]
    walked = [e for p in pages for e in p["entry"]]
    assert walked == everything["entry"]  # same entries, same order, nothing shifted

    # and back with `previous`, from the last page
    back = [pages[-1]]
    while (prev := link(back[-1], "previous")) is not None:
        r = hc.get(prev)
        assert r.status_code == 200, r.text
        back.append(r.json())
    assert [p["entry"] for p in reversed(back)] == [p["entry"] for p in pages]
    # `first` is pinned to the moment of the walk as well
    assert hc.get(link(pages[-1], "first")).json()["entry"] == pages[0]["entry"]

    # a new walk sees the late writes
    fresh = hc.get("/Device/_history", params={"_since": since, "_count": "1000"}).json()
    _same_order(fresh["entry"], rec.expected("Device"))
    assert len(fresh["entry"]) == len(expected) + 2


def test_type_history_since_and_count(hc):
    rec = Recorder(hc)
    for i in range(5):
        rec.post({"resourceType": "Medication", "code": {"text": f"m{i}"}})
    since = rec.versions[2]["lastUpdated"]
    bundle = hc.get("/Medication/_history", params={"_since": since}).json()
    expected = {(v["type"], v["id"], v["version"]) for v in rec.versions if v["lastUpdated"] >= since}
    assert {_key(e) for e in bundle["entry"]} == expected
    _assert_newest_first(bundle["entry"])
    entries, pages = history_entries(hc, "/Medication/_history",
                                     {"_since": rec.versions[0]["lastUpdated"], "_count": "2"})
    assert [len(p["entry"]) for p in pages] == [2, 2, 1]
    _same_order(entries, rec.expected("Medication"))
    assert all("_since=" in link(p, "self") and "_count=2" in link(p, "self") for p in pages[:1])
    assert all("_since=" in link(p, "next") and "_count=2" in link(p, "next") for p in pages[:-1])


def test_type_history_at(hc):
    rec = Recorder(hc)
    a = rec.post({"resourceType": "Substance", "code": {"text": "a"}})
    b = rec.post({"resourceType": "Substance", "code": {"text": "b"}})
    rec.put({"resourceType": "Substance", "id": a["id"], "code": {"text": "a2"}})
    rec.delete("Substance", b["id"])
    rec.post({"resourceType": "Substance", "code": {"text": "c"}})
    since = rec.versions[0]["lastUpdated"]
    for v in rec.versions:
        ts = _instant(v["lastUpdated"])
        for low in (ts, ts - timedelta(milliseconds=1)):
            bundle = hc.get("/Substance/_history", params={"_at": _fmt(low), "_since": since})
            assert bundle.status_code == 200, bundle.text
            got = {_key(e) for e in bundle.json().get("entry", [])}
            assert got == _current_during(rec.versions, low, low + timedelta(milliseconds=1)), _fmt(low)


@pytest.mark.parametrize("params", [{"_count": "abc"}, {"_count": "-1"}, {"_count": "1.5"},
                                    {"_since": "yesterday"}, {"_since": "2020-13-01"},
                                    {"_at": "not-a-date"}, {"_page": "garbage"}])
def test_history_bad_parameters_are_400(hc, params):
    for path in ("/Patient/_history", "/_history"):
        assert_outcome(hc.get(path, params={**params, "_since": params.get("_since", EPOCH_2000)}), 400)


def test_history_unknown_parameter(hc):
    strict = hc.get("/Patient/_history", params={"_since": EPOCH_2000, "foo": "bar"},
                    headers={"Prefer": "handling=strict"})
    assert_outcome(strict, 400, "not-supported")
    lenient = hc.get("/Patient/_history", params={"_since": EPOCH_2000, "foo": "bar"},
                     headers={"Prefer": "handling=lenient"})
    assert lenient.status_code == 200


def test_type_history_of_a_short_history(hc):
    rec = Recorder(hc)
    rec.post({"resourceType": "Location", "name": "a"})
    rec.post({"resourceType": "Location", "name": "b"})
    r = hc.get("/Location/_history")
    assert r.status_code == 200, r.text
    _same_order(r.json()["entry"], rec.expected("Location"))


def test_type_history_walk_without_since_reaches_the_last_page(hc):
    rec = Recorder(hc)
    for i in range(5):
        rec.post({"resourceType": "Organization", "name": f"o{i}"})
    first = hc.get("/Organization/_history", params={"_count": "2"})
    assert first.status_code == 200, first.text
    entries, _ = history_entries(hc, "/Organization/_history", {"_count": "2"})
    _same_order(entries, rec.expected("Organization"))


def test_type_history_since_the_year_one(hc):
    rec = Recorder(hc)
    rec.post({"resourceType": "Person", "name": [{"family": "A"}]})
    r = hc.get("/Person/_history", params={"_since": "0001-01-01T00:00:00Z"})
    assert r.status_code == 200, r.text
    _same_order(r.json()["entry"], rec.expected("Person"))


# -- system history ----------------------------------------------------------------------------

@pytest.fixture
def fresh_server(request, tmp_path):
    # the system history here is exactly the writes the test makes: no audit trail beside them
    running = start_server(request, tmp_path / "system-history", extra_env={"FHIR_AUDIT": "false"})
    yield running
    running.stop()


def test_system_history_walk(fresh_server):
    base = fresh_server.base_url
    with httpx.Client(base_url=base, timeout=60) as c:
        rec = Recorder(c)
        p = rec.post({"resourceType": "Patient", "active": True})
        o = rec.post({"resourceType": "Observation", "status": "final", "code": {"text": "hb"},
                      "subject": {"reference": f"Patient/{p['id']}"}})
        d = rec.put({"resourceType": "Device", "id": new_id("dev")})
        rec.put({"resourceType": "Patient", "id": p["id"], "active": False})
        rec.delete("Observation", o["id"])
        rec.put({"resourceType": "Device", "id": d["id"], "distinctIdentifier": "x"})
        for i in range(5):
            rec.post({"resourceType": "Practitioner", "name": [{"family": f"P{i}"}]})
        expected = rec.expected()
        assert len(expected) == 11

        everything = c.get("/_history", params={"_since": EPOCH_2000, "_count": "100"}).json()
        _same_order(everything["entry"], expected)
        by_key = {(v["type"], v["id"], v["version"]): v for v in rec.versions}
        for entry in everything["entry"]:
            _check_entry(entry, by_key[_key(entry)], base)

        first = c.get("/_history", params={"_since": EPOCH_2000, "_count": "3"}).json()
        pages = [first]
        rec.post({"resourceType": "Patient", "gender": "male"})
        rec.delete("Patient", p["id"])
        while (nxt := link(pages[-1], "next")) is not None:
            r = c.get(nxt)
            assert r.status_code == 200, r.text
            pages.append(r.json())
        assert [len(pg["entry"]) for pg in pages] == [3, 3, 3, 2]
        assert [e for pg in pages for e in pg["entry"]] == everything["entry"]
        back = [pages[-1]]
        while (prev := link(back[-1], "previous")) is not None:
            back.append(c.get(prev).json())
        assert [pg["entry"] for pg in reversed(back)] == [pg["entry"] for pg in pages]

        fresh = c.get("/_history", params={"_since": EPOCH_2000, "_count": "100"}).json()
        _same_order(fresh["entry"], rec.expected())
        assert len(fresh["entry"]) == 13

        # _at at system level, with the spec's definition as the oracle
        for v in rec.versions:
            low = _instant(v["lastUpdated"])
            got = c.get("/_history", params={"_at": _fmt(low)}).json()
            assert {_key(e) for e in got.get("entry", [])} == \
                _current_during(rec.versions, low, low + timedelta(milliseconds=1))


def test_system_history_without_since(fresh_server):
    with httpx.Client(base_url=fresh_server.base_url, timeout=60) as c:
        rec = Recorder(c)
        rec.post({"resourceType": "Patient"})
        rec.post({"resourceType": "Device"})
        r = c.get("/_history")
        assert r.status_code == 200, r.text
        _same_order(r.json()["entry"], rec.expected())
