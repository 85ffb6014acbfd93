"""`$reindex` (`[base]/$reindex`, `[base]/[type]/$reindex`): recompute stored search values.

A SearchParameter added or changed applies to new writes at once; existing resources get its
values here. The work runs in the background: `POST` answers 202 with a job to poll, `GET
…/$reindex?_job=ID` reports progress (processed / total, per type) until it is completed.

`upgrade` runs one at start when the stored search values were computed by an older version of
the server (`FORMAT`, kept in the `_meta` collection): what a new version indexes (canonical
UCUM units, words for `_content`) reaches the resources already stored without anyone asking.
"""

from __future__ import annotations

import logging
import threading
import uuid
from typing import Any

from pymongo import UpdateOne
from pymongo.errors import DuplicateKeyError

from fhir_server import jsonio
from fhir_server.errors import FhirError, Issue
from fhir_server.interactions.request import FhirRequest, FhirResponse
from fhir_server.search.execute import stored_types
from fhir_server.search.index import index_values
from fhir_server.storage.store import format_instant, now

log = logging.getLogger(__name__)
JOBS = "_jobs"
META = "_meta"
BATCH = 500
# The format of the stored search values: raise it when `index_values` computes something new.
# 2: UCUM quantities in canonical units, `_content`/`_text` words, ligatures folded.
FORMAT = 2
_FORMAT_ID = "search-index"


def reindex(server, req: FhirRequest) -> FhirResponse:
    if req.method == "GET":
        return _status(server, req)
    types = [req.type] if req.type else stored_types(server)
    job = _start(server, types)
    url = f"{req.base_url}/{req.type + '/' if req.type else ''}$reindex?_job={job['_id']}"
    return FhirResponse(202, _report(job), content_location=url)


def upgrade(server) -> str | None:
    """At start: reindex everything in the background if the stored search values are of an
    older format (one worker claims it); returns the job id, or None when nothing is to do."""
    meta = server.store.db[META]
    found = meta.find_one({"_id": _FORMAT_ID}) or {}
    if found.get("format") == FORMAT or found.get("claimed") == FORMAT:
        return None
    types = stored_types(server)
    try:
        claim = meta.update_one({"_id": _FORMAT_ID, "claimed": found.get("claimed")},
                                {"$set": {"claimed": FORMAT}}, upsert=not found)
    except DuplicateKeyError:
        return None  # another worker created it first
    if not (claim.modified_count or claim.upserted_id):
        return None  # another worker took it
    if not types:
        meta.update_one({"_id": _FORMAT_ID}, {"$set": {"format": FORMAT}})
        return None
    job = _start(server, types, upgrade_to=FORMAT)
    log.warning("stored search values are of format %s, this server writes format %s: reindexing %s in the "
                "background (GET [base]/$reindex?_job=%s for progress)", found.get("format", 1), FORMAT,
                ", ".join(types), job["_id"])
    return job["_id"]


def _start(server, types: list[str], upgrade_to: int | None = None) -> dict[str, Any]:
    job = {"_id": uuid.uuid4().hex, "kind": "reindex", "status": "in-progress", "types": types,
           "processed": 0, "total": 0, "started": now(), "done": []}
    server.store.db[JOBS].insert_one(job)
    threading.Thread(target=_run, args=(server, job["_id"], types, upgrade_to), name=f"reindex-{job['_id'][:8]}",
                     daemon=True).start()
    return job


def _status(server, req: FhirRequest) -> FhirResponse:
    job_id = req.param("_job")
    job = server.store.db[JOBS].find_one({"_id": job_id}) if job_id else None
    if job is None:
        raise FhirError(404, Issue("error", "not-found", "no such $reindex job; POST $reindex to start one"))
    return FhirResponse(200 if job["status"] != "in-progress" else 202, _report(job))


def _report(job: dict[str, Any]) -> dict[str, Any]:
    params = [{"name": "job", "valueString": job["_id"]},
              {"name": "status", "valueCode": job["status"]},
              {"name": "processed", "valueInteger": job["processed"]},
              {"name": "total", "valueInteger": job["total"]},
              {"name": "started", "valueInstant": format_instant(job["started"])}]
    params += [{"name": "type", "valueString": t} for t in job.get("done", [])]
    if job.get("finished"):
        params.append({"name": "finished", "valueInstant": format_instant(job["finished"])})
    if job.get("error"):
        params.append({"name": "error", "valueString": job["error"]})
    return {"resourceType": "Parameters", "parameter": params}


def _run(server, job_id: str, types: list[str], upgrade_to: int | None = None) -> None:
    jobs = server.store.db[JOBS]
    try:
        total = sum(server.store.db[t].estimated_document_count() for t in types)
        jobs.update_one({"_id": job_id}, {"$set": {"total": total}})
        for type_ in types:
            server.prepare_type(type_)
            _reindex_type(server, job_id, type_)
            jobs.update_one({"_id": job_id}, {"$push": {"done": type_}})
        jobs.update_one({"_id": job_id}, {"$set": {"status": "completed", "finished": now()}})
        if upgrade_to is not None:
            server.store.db[META].update_one({"_id": _FORMAT_ID}, {"$set": {"format": upgrade_to}})
            log.warning("search values reindexed to format %s", upgrade_to)
    except Exception as exc:  # noqa: BLE001 - reported through the job, not lost in a thread
        log.exception("$reindex failed" + ("; POST [base]/$reindex to finish the upgrade" if upgrade_to else ""))
        jobs.update_one({"_id": job_id}, {"$set": {"status": "failed", "finished": now(),
                                                   "error": f"{type(exc).__name__}: {exc}"}})


def _reindex_type(server, job_id: str, type_: str) -> None:
    collection = server.store.db[type_]
    base_urls = (server.settings.base_url,) if server.settings.base_url else ()
    batch: list[UpdateOne] = []
    skipped = 0  # tombstones: counted as processed, nothing to index
    for doc in collection.find({}, {"json": 1, "v": 1, "del": 1}):
        if doc.get("del") or not doc.get("json"):
            skipped += 1
        else:
            fields = index_values(server.search_parameters, jsonio.loads(doc["json"]), base_urls)
            # only if the version is unchanged: a concurrent write has indexed itself already
            batch.append(UpdateOne({"_id": doc["_id"], "v": doc["v"]}, {"$set": fields}))
        if len(batch) + skipped >= BATCH:
            _flush(server, job_id, collection, batch, skipped)
            batch, skipped = [], 0
    _flush(server, job_id, collection, batch, skipped)


def _flush(server, job_id: str, collection, batch: list[UpdateOne], skipped: int) -> None:
    if batch:
        collection.bulk_write(batch, ordered=False)
    if batch or skipped:
        server.store.db[JOBS].update_one({"_id": job_id}, {"$inc": {"processed": len(batch) + skipped}})
