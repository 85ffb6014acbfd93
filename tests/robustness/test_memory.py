"""Memory under amplifying requests, read from the server process's resident set (/proc).

Each case resets the process's peak (VmHWM, through /proc/<pid>/clear_refs) before its request,
then compares the peak during the request with the resident memory before it: the patch bomb, a
batch of 30 reads of a 10 MB Binary, 10 MB Binary writes (and that repeating them does not grow
the process), a plain read of that Binary and of its content, a batch of 10,000 searches. Before the fixes these
cost 1.4 GB (bomb), +1.1 GB (batch), +1.5 GB per PUT (the base64 regex).
"""

from __future__ import annotations

import base64
import os
from collections.abc import Callable
from pathlib import Path

import httpx
import pytest

from .support import FHIR_JSON, JSON_PATCH, assert_outcome, client, new_id, rss_bytes, start_server

MB = 1024 * 1024


@pytest.fixture(scope="module")
def server(tmp_path_factory, r4_examples):
    running = start_server(tmp_path_factory.mktemp("memory"))
    yield running
    running.stop()


@pytest.fixture(scope="module")
def http(server):
    with client(server, timeout=300) as c:
        yield c


@pytest.fixture(scope="module")
def big_binary(http) -> tuple[str, int]:
    """A stored Binary of 10 MB of JSON (7.5 MB of content); (its reference, its stored size)."""
    id_ = new_id("big")
    response = http.put(f"/Binary/{id_}", content=_binary_body(id_), headers={"Content-Type": FHIR_JSON})
    assert response.status_code == 201, response.text[:500]
    return f"Binary/{id_}", len(response.content)


def _binary_body(id_: str) -> bytes:
    data = base64.b64encode(os.urandom(7_500_000)).decode()
    return (f'{{"resourceType":"Binary","id":"{id_}","contentType":"application/octet-stream",'
            f'"data":"{data}"}}').encode()


def _peak_growth(server, request: Callable[[], httpx.Response]) -> tuple[httpx.Response, int]:
    """(the response, how far the process's peak resident memory rose above its level before)."""
    pid = server.process.pid
    before = rss_bytes(pid)
    try:
        Path(f"/proc/{pid}/clear_refs").write_text("5")  # VmHWM := VmRSS
    except OSError:
        pytest.skip("cannot reset the server's peak memory (/proc/<pid>/clear_refs)")
    response = request()
    return response, _hwm(pid) - before


def _hwm(pid: int) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) * 1024
    raise AssertionError(f"no VmHWM for pid {pid}")


def _patch(http, ref: str, ops: list) -> httpx.Response:
    import json

    return http.patch(f"/{ref}", content=json.dumps(ops).encode(), headers={"Content-Type": JSON_PATCH})


@pytest.mark.parametrize("names", [2, 2000])
def test_patch_bomb(server, http, names):
    """22 copies of an array into itself (1 KB): refused at the copy that would cross
    FHIR_MAX_BODY_BYTES, before it is made."""
    ref = f"Patient/{new_id('bomb')}"
    patient = {"resourceType": "Patient", "id": ref.split("/")[1],
               "name": [{"family": f"Doe{i}", "given": ["Jane"]} for i in range(names)]}
    assert http.put(f"/{ref}", json=patient).status_code == 201
    ops = [{"op": "copy", "from": "/name", "path": "/name/-"}] * 22
    response, growth = _peak_growth(server, lambda: _patch(http, ref, ops))
    text = assert_outcome(response, (422,))
    assert "FHIR_MAX_BODY_BYTES" in text, text
    assert growth < 300 * MB, f"+{growth // MB} MB"
    assert http.get(f"/{ref}").json()["meta"]["versionId"] == "1"


def test_batch_of_binary_reads(server, http, big_binary):
    """30 reads of a 10 MB Binary (a 2.5 KB request): 422 once the answer would pass
    FHIR_MAX_RESPONSE_BYTES (32 MiB), after 4 entries, not 300 MB built."""
    ref, _ = big_binary
    bundle = {"resourceType": "Bundle", "type": "batch",
              "entry": [{"request": {"method": "GET", "url": ref}}] * 30}
    response, growth = _peak_growth(server, lambda: http.post(server.base_url, json=bundle))
    text = assert_outcome(response, (422,))
    assert "entry 3" in text and "FHIR_MAX_RESPONSE_BYTES" in text, text
    assert growth < 300 * MB, f"+{growth // MB} MB"


def test_binary_writes_are_bounded_and_do_not_accumulate(server, http):
    id_ = new_id("put")
    body = _binary_body(id_)
    after = []
    for attempt in range(3):
        response, growth = _peak_growth(server, lambda: http.put(
            f"/Binary/{id_}", content=body, headers={"Content-Type": FHIR_JSON, "Prefer": "return=minimal"}))
        assert response.status_code in (200, 201), response.text[:500]
        assert response.content == b""  # return=minimal: the 10 MB are not echoed
        assert growth < 200 * MB, f"PUT {attempt + 1}: +{growth // MB} MB"
        after.append(rss_bytes(server.process.pid))
    assert after[2] - after[0] < 64 * MB, [a // MB for a in after]


def test_binary_read_is_the_stored_bytes(server, http, big_binary):
    ref, size = big_binary
    response, growth = _peak_growth(server, lambda: http.get(f"/{ref}"))
    assert response.status_code == 200
    assert len(response.content) == size
    assert growth < 100 * MB, f"+{growth // MB} MB"


def test_binary_content_is_streamed_not_decoded_whole(server, http, big_binary):
    """The content itself (Accept: */*, ITI-68): its base64 decoded chunk by chunk while sent,
    so the peak stays near a FHIR read's, not the stored JSON plus the decoded 7.5 MB plus a
    response copy."""
    ref, _ = big_binary
    response, growth = _peak_growth(server, lambda: http.get(f"/{ref}", headers={"Accept": "*/*"}))
    assert response.status_code == 200, response.text[:500]
    assert response.headers["content-type"] == "application/octet-stream"
    assert len(response.content) == 7_500_000 == int(response.headers["content-length"])
    assert growth < 100 * MB, f"+{growth // MB} MB"


def test_batch_of_10000_searches_is_refused_before_running(server, http):
    bundle = {"resourceType": "Bundle", "type": "batch",
              "entry": [{"request": {"method": "GET", "url": f"Patient?family=x{i}"}} for i in range(10_000)]}
    response, growth = _peak_growth(server, lambda: http.post(server.base_url, json=bundle))
    text = assert_outcome(response, (413,))
    assert "10000 searches" in text and "FHIR_MAX_BATCH_SEARCHES" in text, text
    assert growth < 200 * MB, f"+{growth // MB} MB"
