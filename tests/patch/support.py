"""Helpers of the PATCH tests (the bundle tests' helpers, plus patch documents)."""

from __future__ import annotations

import base64
import json
import sys
from pathlib import Path
from typing import Any

_ROOT = Path(__file__).resolve().parents[2]
if str(_ROOT) not in sys.path:
    sys.path.insert(0, str(_ROOT))

from tests.bundle.support import (  # noqa: E402,F401
    FHIR_JSON,
    JSON_PATCH,
    assert_error,
    batch,
    entry,
    history_versions,
    location,
    new_id,
    read,
    response_bundle,
    search_ids,
    status,
    system,
    transact,
    urn,
)


def op(kind: str, path: str, name: str | None = None, index: int | None = None, source: int | None = None,
       destination: int | None = None, parts: list[dict] | None = None, **value: Any) -> dict[str, Any]:
    """One FHIRPath Patch operation; `value` is one `valueX=…` keyword, or `parts` for a complex value."""
    out = [{"name": "type", "valueCode": kind}, {"name": "path", "valueString": path}]
    if name is not None:
        out.append({"name": "name", "valueString": name})
    for key, number in (("index", index), ("source", source), ("destination", destination)):
        if number is not None:
            out.append({"name": key, "valueInteger": number})
    if parts is not None:
        out.append({"name": "value", "part": parts})
    elif value:
        (key, v), = value.items()
        out.append({"name": "value", key: v})
    return {"name": "operation", "part": out}


def parameters(*ops: dict) -> dict[str, Any]:
    return {"resourceType": "Parameters", "parameter": list(ops)}


def binary(ops: list[dict]) -> dict[str, Any]:
    """A JSON Patch as a transaction/batch entry carries it."""
    return {"resourceType": "Binary", "contentType": JSON_PATCH,
            "data": base64.b64encode(json.dumps(ops).encode()).decode()}


def json_patch(client, url: str, ops: Any, **headers: str):
    content = ops if isinstance(ops, bytes) else json.dumps(ops).encode()
    return client.patch(url, content=content, headers={"Content-Type": JSON_PATCH, **headers})


def fhirpath_patch(client, url: str, params: Any, **headers: str):
    return client.patch(url, content=json.dumps(params).encode(), headers={"Content-Type": FHIR_JSON, **headers})


def put(client, resource: dict) -> dict:
    r = client.put(f"/{resource['resourceType']}/{resource['id']}", json=resource)
    assert r.status_code in (200, 201), r.text
    return r.json()


def unchanged(client, ref: str, before: dict) -> None:
    """Nothing was stored: same current version and content, no new history entry."""
    after = read(client, ref)
    assert after == before, (before, after)
    assert history_versions(client, ref) == list(range(1, int(before["meta"]["versionId"]) + 1))
