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
from typing import TYPE_CHECKING, Any

from fhir_server import jsonio
from fhir_server.errors import FhirError, Issue
from fhir_server.interactions.request import FhirRequest, FhirResponse
from fhir_server.search.execute import stored_types
from fhir_server.search.index import index_values
from fhir_server.storage.jobs import Jobs, Marker
from fhir_server.storage.store import format_instant, now

if TYPE_CHECKING:
    from fhir_server.server import FhirServer

log = logging.getLogger(__name__)
BATCH = 500
# The format of the stored search values: raise it when `index_values` computes something new.
# 2: UCUM quantities in canonical units, `_content`/`_text` words, ligatures folded.
# 3: date keys of years before 1000 zero-padded (they sorted after later years); dates pushed past
#    year 1 or 9999 by their time zone clamped to the edges (were not indexed).
# 4: our guide's Task `due-date` on the due date (Task.restriction.period.end), not the whole Period;
#    its Slot `end` (the shared agenda's overlap check reads it).
FORMAT = 4
SEARCH_INDEX_MARKER = "search-index"


def reindex(server: FhirServer, req: FhirRequest) -> FhirResponse:
    if req.method == "GET":
        return _status(server, req)
    types = [req.type] if req.type else stored_types(server)
    job = _start(server, types)
    url = f"{req.base_url}/{req.type + '/' if req.type else ''}$reindex?_job={job['id']}"
    return FhirResponse(202, _report(job), content_location=url)


def upgrade(server: FhirServer) -> str | None:
    """At start: reindex everything in the background if the stored search values are of an
    older format (one worker claims it); returns the job id, or None when nothing is to do."""
    marker = Marker(server.database, SEARCH_INDEX_MARKER)
    stored, claimed = marker.read()
    if stored == FORMAT or claimed == FORMAT:
        return None
    types = stored_types(server)
    if not marker.claim(FORMAT, claimed, exists=stored is not None or claimed is not None):
        return None  # another worker took it
    if not types:
        marker.write(FORMAT)
        return None
    job = _start(server, types, upgrade_to=FORMAT)
    log.warning("stored search values are of format %s, this server writes format %s: reindexing %s in the "
                "background (GET [base]/$reindex?_job=%s for progress)", stored or 1, FORMAT,
                ", ".join(types), job["id"])
    return job["id"]


def _start(server: FhirServer, types: list[str], upgrade_to: int | None = None) -> dict[str, Any]:
    job = Jobs(server.database).create("reindex", types=types, processed=0, total=0, done=[])
    threading.Thread(target=_run, args=(server, job["id"], types, upgrade_to), name=f"reindex-{job['id'][:8]}",
                     daemon=True).start()
    return job


def _status(server: FhirServer, req: FhirRequest) -> FhirResponse:
    job_id = req.param("_job")
    job = Jobs(server.database).get(job_id) if job_id else None
    if job is None:
        raise FhirError(404, Issue("error", "not-found", "no such $reindex job; POST $reindex to start one"))
    return FhirResponse(200 if job["status"] != "in-progress" else 202, _report(job))


def _report(job: dict[str, Any]) -> dict[str, Any]:
    params = [{"name": "job", "valueString": job["id"]},
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


def _run(server: FhirServer, job_id: str, types: list[str], upgrade_to: int | None = None) -> None:
    jobs = Jobs(server.database)
    try:
        jobs.update(job_id, set_={"total": sum(server.store.estimated_count(t) for t in types)})
        for type_ in types:
            server.prepare_type(type_)
            _reindex_type(server, jobs, job_id, type_)
            jobs.update(job_id, append={"done": type_})
        jobs.update(job_id, set_={"status": "completed", "finished": now()})
        if upgrade_to is not None:
            Marker(server.database, SEARCH_INDEX_MARKER).write(upgrade_to)
            log.warning("search values reindexed to format %s", upgrade_to)
    except Exception as exc:  # noqa: BLE001 - reported through the job, not lost in a thread
        log.exception("$reindex failed" + ("; POST [base]/$reindex to finish the upgrade" if upgrade_to else ""))
        try:
            jobs.update(job_id, set_={"status": "failed", "finished": now(), "error": f"{type(exc).__name__}: {exc}"})
        except FhirError:
            log.warning("$reindex job %s could not be marked failed: the database is unavailable", job_id)


def _reindex_type(server: FhirServer, jobs: Jobs, job_id: str, type_: str) -> None:
    base_urls = (server.settings.base_url,) if server.settings.base_url else ()
    for rows in server.store.current_json(type_, BATCH):
        # only if the version is unchanged: a concurrent write has indexed itself already
        server.store.replace_index(type_, [(id_, version, index_values(server.search_parameters,
                                                                       jsonio.loads(json), base_urls))
                                           for id_, version, json in rows if json])
        jobs.update(job_id, add={"processed": len(rows)})
