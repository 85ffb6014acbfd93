"""Helpers shared by the API tests: ids, responses, OperationOutcome checks, JSON comparison.

Everything here talks HTTP through the `httpx.Client` a test passes in; nothing reaches into
the server's process.
"""

from __future__ import annotations

import re
import uuid
from email.utils import parsedate_to_datetime
from pathlib import Path
from typing import Any

import httpx

from fhir_server import jsonio

FHIR_JSON_UTF8 = "application/fhir+json; charset=utf-8"
INSTANT_RE = re.compile(r"^\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}(\.\d+)?(Z|[+-]\d{2}:\d{2})$")


def new_id(prefix: str = "t") -> str:
    """A fresh resource id nobody else in the session uses (≤ 64 chars, FHIR id alphabet)."""
    return f"{prefix}-{uuid.uuid4().hex}"


def identifier_system() -> str:
    return f"urn:test:{uuid.uuid4().hex}"


def patient(id_: str | None = None, **fields: Any) -> dict[str, Any]:
    out: dict[str, Any] = {"resourceType": "Patient"}
    if id_ is not None:
        out["id"] = id_
    out.update(fields)
    return out


def body_of(response: httpx.Response) -> Any:
    """The response body parsed the way the server parses (decimals keep their text)."""
    return jsonio.loads(response.content)


def assert_fhir_json(response: httpx.Response) -> None:
    assert response.headers["content-type"] == FHIR_JSON_UTF8, response.headers


def assert_outcome(response: httpx.Response, status: int, code: str | None = None,
                   expression: str | list[str] | None = None, severity: str = "error") -> dict[str, Any]:
    """`response` is `status` with an OperationOutcome body; optionally one issue with `code`
    (and `expression`) at `severity`. Returns the OperationOutcome."""
    assert response.status_code == status, (response.status_code, response.text)
    assert_fhir_json(response)
    outcome = response.json()
    assert outcome["resourceType"] == "OperationOutcome", outcome
    assert outcome["issue"], outcome
    for issue in outcome["issue"]:
        assert issue["severity"] in ("fatal", "error", "warning", "information"), issue
        assert isinstance(issue["code"], str) and issue["code"], issue
        assert isinstance(issue["diagnostics"], str) and issue["diagnostics"], issue
    if code is not None or expression is not None:
        wanted = [expression] if isinstance(expression, str) else expression
        matching = [i for i in outcome["issue"]
                    if (code is None or i["code"] == code)
                    and (wanted is None or i.get("expression") == wanted)
                    and i["severity"] == severity]
        assert matching, f"no {severity} issue with code={code} expression={wanted} in {outcome}"
    return outcome


def etag_version(response: httpx.Response) -> str:
    tag = response.headers["etag"]
    match = re.fullmatch(r'W/"(\d+)"', tag)
    assert match, tag
    return match.group(1)


def http_date(value: str):
    return parsedate_to_datetime(value)


def without_server_meta(resource: Any) -> Any:
    """The resource without `meta.versionId`/`meta.lastUpdated` (and `meta` if nothing else is left)."""
    if not isinstance(resource, dict):
        return resource
    out = dict(resource)
    meta = out.get("meta")
    if isinstance(meta, dict):
        meta = {k: v for k, v in meta.items() if k not in ("versionId", "lastUpdated")}
        if meta:
            out["meta"] = meta
        else:
            del out["meta"]
    return out


def exact(value: Any) -> Any:
    """A comparable form of parsed JSON in which decimals compare by their text (1.50 ≠ 1.5),
    integers are not equal to decimals (1 ≠ 1.0) and booleans are not equal to numbers."""
    if isinstance(value, dict):
        return {k: exact(v) for k, v in value.items()}
    if isinstance(value, list):
        return [exact(v) for v in value]
    if isinstance(value, jsonio.Decimal):
        return ("decimal", value.text)
    if isinstance(value, bool):
        return ("bool", value)
    if isinstance(value, int):
        return ("int", value)
    if isinstance(value, float):
        return ("float", repr(value))
    return value


def history_entries(client: httpx.Client, url: str, params: dict | None = None) -> tuple[list[dict], list[dict]]:
    """All entries of a history, following `next` links; also returns every page's Bundle."""
    pages = []
    response = client.get(url, params=params)
    while True:
        assert response.status_code == 200, response.text
        bundle = response.json()
        assert bundle["resourceType"] == "Bundle" and bundle["type"] == "history", bundle
        pages.append(bundle)
        nxt = link(bundle, "next")
        if nxt is None:
            break
        response = client.get(nxt)
    return [e for p in pages for e in p.get("entry", [])], pages


def link(bundle: dict, relation: str) -> str | None:
    urls = [x["url"] for x in bundle.get("link", []) if x["relation"] == relation]
    assert len(urls) <= 1, bundle["link"]
    return urls[0] if urls else None


def start_server(request, data_dir, **kwargs):
    """Start a dedicated `fhir-server serve` with the session conftest's `start_server`.

    The helper is looked up as a fixture first (should the conftest expose it that way), then as
    the function of the top-level conftest module, found among pytest's registered plugins (the
    module name `conftest` is shared by every conftest.py, so it cannot simply be imported)."""
    import pytest  # noqa: PLC0415

    try:
        return request.getfixturevalue("start_server")(data_dir, **kwargs)
    except pytest.FixtureLookupError:
        pass
    conftest_path = Path(__file__).resolve().parent.parent / "conftest.py"
    module = request.config.pluginmanager.get_plugin(str(conftest_path))
    assert module is not None, f"{conftest_path} is not loaded"
    return module.start_server(data_dir, **kwargs)
