"""storage/store.py: the unit of work. `transact` commits the current version and its history
entry together, or nothing; a stale read runs the work again on fresh data; `find` and `fetch`
return live resources only. Runs on the embedded database, started once for the module."""

from __future__ import annotations

import json

import pytest

from fhir_server.errors import FhirError
from fhir_server.search.keys import key_condition
from fhir_server.storage import store as store_module
from fhir_server.storage.database import GUARDS, Database
from fhir_server.storage.embedded import EmbeddedDatabase
from fhir_server.storage.records import Ids, IndexValues, KeyRange, Keys
from fhir_server.storage.store import ResourceStore, VersionConflict, Write, next_instant


@pytest.fixture(scope="module")
def embedded(tmp_path_factory):
    database = EmbeddedDatabase(tmp_path_factory.mktemp("unit-db"))
    database.start()
    yield database
    database.stop()


@pytest.fixture
def store(embedded):
    database = Database(embedded.uri, "unit", 3000)
    yield ResourceStore(database)
    database.client.drop_database("unit")
    database.close()


def body(type_, id_, version, **fields) -> bytes:
    return json.dumps({"resourceType": type_, "id": id_, "meta": {"versionId": str(version)}, **fields}).encode()


def write(type_, id_, version=1, expected=None, keys=(), method=None, delete=False, **fields) -> Write:
    """A version of a resource with the given index keys (`gender=female`…)."""
    index = None if delete else IndexValues({"k": list(keys)}, sorted(keys))
    return Write(type_, id_, version, expected, next_instant(None),
                 method or ("DELETE" if delete else "POST" if expected is None else "PUT"),
                 None if delete else body(type_, id_, version, **fields), index)


def following(current, **fields) -> Write:
    """The next version of what `read`/`read_in` found."""
    return write(current.type, current.id, current.version + 1, current.version, **fields)


def commit(store, *writes, guards=()):
    return store.transact(lambda session: list(writes), guards)


# -- commit ----------------------------------------------------------------------------------------
def test_commit_writes_the_current_version_and_its_history(store):
    w = write("Patient", "p1", keys=["gender=female"])
    (version,) = commit(store, w)
    assert (version.key, version.version, version.deleted, version.method) == ("Patient/p1", 1, False, "POST")
    current = store.read("Patient", "p1")
    assert (current.version, current.json, current.deleted) == (1, w.json, False)
    assert current.last_updated == w.last_updated
    history = store.vread("Patient", "p1", 1)
    assert (history.json, history.method) == (w.json, "POST")


def test_update_keeps_every_version_newest_first(store):
    commit(store, write("Patient", "p1", family="A"))
    commit(store, write("Patient", "p1", 2, 1, family="B"))
    assert store.read("Patient", "p1").version == 2
    assert [v.version for v in store.versions("Patient", "p1")] == [2, 1]
    assert json.loads(store.vread("Patient", "p1", 1).json)["family"] == "A"
    assert json.loads(store.vread("Patient", "p1", 2).json)["family"] == "B"


def test_delete_leaves_a_tombstone_and_history(store):
    commit(store, write("Patient", "p1"))
    (version,) = commit(store, write("Patient", "p1", 2, 1, delete=True))
    assert version.deleted and version.method == "DELETE"
    tombstone = store.read("Patient", "p1")
    assert tombstone.deleted and tombstone.json is None and tombstone.version == 2
    assert [(v.version, v.deleted) for v in store.versions("Patient", "p1")] == [(2, True), (1, False)]


def test_unknown_resource_reads_none(store):
    assert store.read("Patient", "nope") is None
    assert store.vread("Patient", "nope", 1) is None
    assert store.versions("Patient", "nope") == []


def test_several_writes_commit_together(store):
    commit(store, write("Patient", "p1"), write("Observation", "o1"), write("Patient", "p2"))
    assert {store.read(t, i).version for t, i in [("Patient", "p1"), ("Patient", "p2"), ("Observation", "o1")]} == {1}


def test_work_returning_nothing_commits_nothing(store):
    assert store.transact(lambda session: []) == []
    assert store.read("Patient", "p1") is None


# -- nothing or everything -------------------------------------------------------------------------
def test_work_raising_leaves_nothing_written(store):
    def work(session):
        commit(store, write("Patient", "other"))  # another writer: committed on its own
        store.read_in(session, "Patient", "p1")
        raise ValueError("the work gave up")

    with pytest.raises(ValueError):
        store.transact(work, guards=["Patient?identifier=1"])
    assert store.read("Patient", "p1") is None
    assert store.read("Patient", "other").version == 1
    assert store.db[GUARDS].find_one({"_id": "Patient?identifier=1"}) is None


def test_guards_are_kept_with_a_commit(store):
    commit(store, write("Patient", "p1"), guards=["Patient?identifier=1"])
    assert store.db[GUARDS].find_one({"_id": "Patient?identifier=1"})["n"] == 1


def test_a_stale_write_fails_the_whole_transaction(store, monkeypatch):
    monkeypatch.setattr(store_module, "_TXN_DEADLINE_S", 0)  # no retry: the work returns the same writes
    commit(store, write("Patient", "p1"))
    commit(store, write("Patient", "p1", 2, 1))
    with pytest.raises(FhirError) as raised:
        commit(store, write("Observation", "o1"), write("Patient", "p1", 2, 1))
    assert raised.value.status == 409
    assert isinstance(raised.value.__cause__, VersionConflict) and raised.value.__cause__.current == 2
    assert store.read("Observation", "o1") is None
    assert [v.version for v in store.versions("Patient", "p1")] == [2, 1]


# -- optimistic concurrency ------------------------------------------------------------------------
def test_stale_read_runs_the_work_again_on_fresh_data(store):
    commit(store, write("Patient", "p1", family="v1"))
    calls = []

    def work(session):
        current = store.read_in(session, "Patient", "p1")
        calls.append(current.version)
        if len(calls) == 1:  # another writer gets in between this read and this commit
            commit(store, following(store.read("Patient", "p1"), family="theirs"))
        return [following(current, family="mine")]

    (version,) = store.transact(work)
    assert calls == [1, 2]
    assert version.version == 3
    assert [v.version for v in store.versions("Patient", "p1")] == [3, 2, 1]
    assert json.loads(store.vread("Patient", "p1", 2).json)["family"] == "theirs"
    assert json.loads(store.read("Patient", "p1").json)["family"] == "mine"


def test_concurrent_create_makes_the_work_decide_again(store):
    calls = []

    def work(session):
        current = store.read_in(session, "Patient", "p1")
        calls.append(current)
        if current is None and len(calls) == 1:
            commit(store, write("Patient", "p1", family="first"))
        return [write("Patient", "p1", family="second") if current is None else following(current, family="second")]

    store.transact(work)
    assert calls[0] is None and calls[1].version == 1
    assert [v.version for v in store.versions("Patient", "p1")] == [2, 1]


# -- find / fetch ----------------------------------------------------------------------------------
@pytest.fixture
def patients(store):
    # as the server does before a type's first write; without the index of the keys, the embedded
    # database reads a range on the key array with array semantics (a superset)
    store.ensure_type_indexes("Patient")
    commit(store,
           write("Patient", "ann", keys=["gender=female", "name=ann"]),
           write("Patient", "bob", keys=["gender=male", "name=bob"]),
           write("Patient", "cat", keys=["gender=female", "name=cat"]),
           write("Patient", "gone", keys=["gender=female", "name=gone"]))
    commit(store, write("Patient", "gone", 2, 1, delete=True))
    return store


def found(store, selection, type_="Patient"):
    return sorted(r.id for r in store.find(type_, selection))


def test_find_by_ids(patients):
    assert found(patients, Ids(("ann",))) == ["ann"]
    assert found(patients, Ids(("ann", "bob", "nope"))) == ["ann", "bob"]


def test_find_by_keys(patients):
    assert found(patients, Keys(("gender=female",))) == ["ann", "cat"]
    assert found(patients, Keys(("name=bob", "gender=female"))) == ["ann", "bob", "cat"]
    assert found(patients, Keys(("gender=other",))) == []


def test_find_by_key_range(patients):
    assert found(patients, Keys((KeyRange("name=b", "name=d"),))) == ["bob", "cat"]
    assert found(patients, Keys((KeyRange("name=bob", "name=cat", False, True),))) == ["cat"]
    assert found(patients, Keys((KeyRange("name=bob", "name=cat", True, False),))) == ["bob"]
    assert found(patients, Keys((key_condition("gender", "female"),))) == ["ann", "cat"]


def test_find_everything_of_a_type(patients):
    assert found(patients, None) == ["ann", "bob", "cat"]
    assert found(patients, None, "Observation") == []


def test_find_leaves_tombstones_out(patients):
    assert found(patients, Ids(("gone",))) == []
    assert found(patients, Keys(("name=gone",))) == []


def test_find_returns_values_and_json_only_when_asked(patients):
    (record,) = patients.find("Patient", Ids(("ann",)))
    assert record.values == {"k": ["gender=female", "name=ann"]}
    assert record.json is None and record.version == 1 and record.key == "Patient/ann"
    (record,) = patients.find("Patient", Ids(("ann",)), json=True)
    assert json.loads(record.json)["id"] == "ann"


def test_a_record_is_found_once_whatever_the_keys_it_matches(patients):
    assert found(patients, Keys(("gender=female", "name=ann", KeyRange("name=a", "name=b")))) == ["ann", "cat"]


def test_updated_keys_replace_the_old_ones(patients):
    commit(patients, write("Patient", "ann", 2, 1, keys=["gender=male"]))
    assert found(patients, Keys(("gender=female",))) == ["cat"]
    assert found(patients, Keys(("gender=male",))) == ["ann", "bob"]


def test_fetch_by_type_and_id(patients):
    commit(patients, write("Observation", "o1"))
    fetched = patients.fetch(["Patient/ann", "Observation/o1", "Patient/gone", "Patient/nope"])
    assert sorted(fetched) == ["Observation/o1", "Patient/ann"]
    assert json.loads(fetched["Observation/o1"].json)["resourceType"] == "Observation"


def test_a_create_of_an_id_that_exists_is_a_conflict_not_a_loop(store, monkeypatch):
    monkeypatch.setattr(store_module, "_TXN_DEADLINE_S", 0)  # the work keeps returning the same create
    commit(store, write("Patient", "p1"))
    with pytest.raises(FhirError) as raised:
        commit(store, write("Patient", "p1"))
    assert raised.value.status == 409
    assert [v.version for v in store.versions("Patient", "p1")] == [1]
