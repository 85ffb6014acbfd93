"""A new version of the server on a database indexed by an older one: the search values are
recomputed in the background at start, and what the new version indexes is found."""

from __future__ import annotations

import signal
from pathlib import Path

from pymongo import MongoClient

from fhir_server.operations.reindex import FORMAT
from fhir_server.storage.embedded import client_uri
from tests.conftest import start_server
from tests.lifecycle.support import db_processes, fhir_client, wait_until

UCUM = "http://unitsofmeasure.org"


def _database(server) -> MongoClient:
    (proc,) = db_processes(server.data_dir / "db")
    return MongoClient(client_uri(server.data_dir, proc.port), serverSelectionTimeoutMS=5000)


def test_search_values_of_an_older_format_are_recomputed_at_start(tmp_path: Path) -> None:
    data_dir = tmp_path / "data"
    server = start_server(data_dir)
    try:
        with fhir_client(server) as client:
            message = client.post("/Communication", json={"resourceType": "Communication", "status": "completed",
                                                          "payload": [{"contentString": "INR à 3,2"}]}).json()
            weight = client.post("/Observation", json={
                "resourceType": "Observation", "status": "final", "code": {"text": "poids"},
                "valueQuantity": {"value": 61000, "system": UCUM, "code": "g"}}).json()
            ancient = client.post("/Observation", json={
                "resourceType": "Observation", "status": "final", "code": {"text": "ancien"},
                "effectiveDateTime": "0999-06-15"}).json()
            # what an older version stored: no words, no canonical units, format 1
            with _database(server) as mongo:
                db = mongo["fhir"]
                db["Communication"].update_many({}, {"$unset": {"ix._content:words": ""}})
                db["Observation"].update_many({}, {"$pull": {"ix.value-quantity": {"c": True}}})
                # format 2 wrote years before 1000 unpadded: they sorted after every later year
                db["Observation"].update_one({"_id": ancient["id"]}, {"$set": {"k.$[key]": "date.l=999-06-15T00:00:00.000000Z"}},
                                             array_filters=[{"key": "date.l=0999-06-15T00:00:00.000000Z"}])
                # the marker as the release before this one wrote it
                db["_meta"].update_one({"_id": "search-index"},
                                       {"$set": {"format": 1, "claimed": 1}, "$unset": {"value": ""}})
            assert client.get("/Communication", params={"_content": "inr"}).json()["total"] == 0
            assert client.get("/Observation", params={"value-quantity": f"61|{UCUM}|kg"}).json()["total"] == 0
            assert client.get("/Observation", params={"date": "lt1000"}).json()["total"] == 0
    finally:
        server.stop()

    again = start_server(data_dir)
    try:
        with fhir_client(again) as client:
            def found() -> bool:
                return (client.get("/Communication", params={"_content": "inr"}).json()["total"] == 1
                        and client.get("/Observation", params={"value-quantity": f"61|{UCUM}|kg"}).json()["total"] == 1
                        and client.get("/Observation", params={"date": "lt1000"}).json()["total"] == 1)

            wait_until(found, 60, "the upgrade reindexed the stored resources")
            assert message["id"] and weight["id"]
            with _database(again) as mongo:
                assert mongo["fhir"]["_meta"].find_one({"_id": "search-index"})["value"] == FORMAT
        assert "reindexing" in again.log()
    finally:
        again.stop(signal.SIGTERM)

    third = start_server(data_dir)  # up to date: nothing more to do (each start logs to its own file)
    try:
        assert "reindexing" not in third.log()
    finally:
        third.stop()
