"""storage/searches.py: a search's matches stored in chunks of CHUNK keys, so a result set past
the database's 16 MB document limit is stored (it was a 500) and a page reads only its chunks.
Runs on the embedded database."""

from __future__ import annotations

import pytest

from fhir_server.storage import searches
from fhir_server.storage.database import Database
from fhir_server.storage.embedded import EmbeddedDatabase
from fhir_server.storage.searches import SearchResults


@pytest.fixture(scope="module")
def database(tmp_path_factory):
    embedded = EmbeddedDatabase(tmp_path_factory.mktemp("searches-db"))
    embedded.start()
    database = Database(embedded.uri, "searches", 3000)
    yield database
    database.close()
    embedded.stop()


def test_a_result_set_past_16_mb_is_stored_and_paged(database):
    keys = [f"Observation/{n:064d}" for n in range(250_000)]  # ~19 MB of keys
    results = SearchResults(database)
    search_id = results.save(keys, {"params": [["code", "x"]], "count": 50, "total": "accurate"})  # _total's mode
    stored, stored_keys = results.load(search_id)
    assert stored["params"] == [["code", "x"]] and len(stored_keys) == 250_000
    for start in (0, searches.CHUNK - 10, 3 * searches.CHUNK, 249_990, 250_000):
        assert stored_keys[start:start + 50] == keys[start:start + 50], start


def test_chunk_boundaries(database, monkeypatch):
    monkeypatch.setattr(searches, "CHUNK", 7)
    keys = [f"Patient/{n}" for n in range(30)]
    results = SearchResults(database)
    _, stored_keys = results.load(results.save(keys, {}))
    for start in range(0, 31):
        for size in (1, 6, 7, 8, 15, 40):
            assert stored_keys[start:start + size] == keys[start:start + size], (start, size)


def test_an_empty_list_and_an_unknown_search(database):
    results = SearchResults(database)
    _, stored_keys = results.load(results.save([], {}))
    assert len(stored_keys) == 0 and stored_keys[0:10] == []
    assert results.load("0" * 32) is None


def test_expired_results_are_gone(database):
    results = SearchResults(database, ttl_s=0)
    search_id = results.save(["Patient/1"], {})
    assert results.load(search_id) is None
    results.save(["Patient/2"], {})  # the next save purges the expired ones, chunks included
    assert database.db[searches.SEARCHES].count_documents({"_id": {"$regex": f"^{search_id}"}}) == 0
