"""Helpers for the search tests: data tagged per test, searches over HTTP, result ids.

Every resource a search test writes carries a tag unique to that test (`Data.tag`), and every
search made through `Data.ids` / `Data.bundle` adds `_tag=<that tag>` unless told otherwise,
so tests sharing the session server never see each other's resources.
"""

from __future__ import annotations

import uuid
from typing import Any

import httpx

TAG_SYSTEM = "urn:test:search"


def uid(prefix: str = "s") -> str:
    return f"{prefix}{uuid.uuid4().hex[:16]}"


def system() -> str:
    """A code or identifier system nobody else uses."""
    return f"urn:test:sys:{uuid.uuid4().hex}"


class Data:
    """Resources written for one test, and searches restricted to them."""

    def __init__(self, client: httpx.Client):
        self.client = client
        self.code = uid("tag")
        self.tag = f"{TAG_SYSTEM}|{self.code}"

    def tagged(self, resource: dict[str, Any]) -> dict[str, Any]:
        resource = dict(resource)
        meta = dict(resource.get("meta") or {})
        meta["tag"] = list(meta.get("tag") or []) + [{"system": TAG_SYSTEM, "code": self.code}]
        resource["meta"] = meta
        return resource

    def create(self, resource: dict[str, Any]) -> dict[str, Any]:
        """POST (or PUT when the resource has an id); returns the stored resource."""
        resource = self.tagged(resource)
        if "id" in resource:
            r = self.client.put(f"/{resource['resourceType']}/{resource['id']}", json=resource)
            assert r.status_code in (200, 201), r.text
        else:
            r = self.client.post(f"/{resource['resourceType']}", json=resource)
            assert r.status_code == 201, r.text
        return r.json()

    def placeholders(self, *references: str) -> None:
        """Bare, untagged resources for references a test needs only to resolve (referential
        integrity): `Patient/nobody` is made if missing."""
        for reference in references:
            type_, id_ = reference.split("/")
            r = self.client.put(f"/{type_}/{id_}", json={"resourceType": type_, "id": id_})
            assert r.status_code in (200, 201), r.text

    def create_later(self, resource: dict[str, Any], than: str) -> dict[str, Any]:
        """Create `resource` until its meta.lastUpdated is after the instant `than` (timestamps
        have millisecond precision: two quick writes may share one)."""
        for _ in range(50):
            made = self.create(resource)
            if made["meta"]["lastUpdated"] > than:
                return made
            assert self.client.delete(f"/{made['resourceType']}/{made['id']}").status_code in (200, 204)
        raise AssertionError(f"no lastUpdated after {than}")

    def ref(self, resource: dict[str, Any]) -> str:
        return f"{resource['resourceType']}/{resource['id']}"

    def get(self, path: str, params: Any = (), tagged: bool = True, headers: dict | None = None) -> httpx.Response:
        params = list(params.items()) if isinstance(params, dict) else list(params)
        if tagged:
            params.append(("_tag", self.tag))
        if path.strip("/") == "":  # the base itself (httpx would add a trailing slash)
            path = str(self.client.base_url).rstrip("/")
        return self.client.get(path, params=params, headers=headers)

    def bundle(self, path: str, params: Any = (), tagged: bool = True, headers: dict | None = None) -> dict[str, Any]:
        r = self.get(path, params, tagged, headers)
        assert r.status_code == 200, (r.status_code, r.text)
        bundle = r.json()
        assert bundle["resourceType"] == "Bundle" and bundle["type"] == "searchset", bundle
        return bundle

    def ids(self, path: str, params: Any = (), tagged: bool = True) -> set[str]:
        """Ids (`Type/id` for system-level searches, else bare ids) of every match, all pages."""
        return set(self.id_list(path, params, tagged))

    def id_list(self, path: str, params: Any = (), tagged: bool = True) -> list[str]:
        bundle = self.bundle(path, params, tagged)
        out = matches(bundle, typed=path.strip("/") == "" or path.startswith("/_search"))
        while (nxt := link(bundle, "next")) is not None:
            r = self.client.get(nxt)
            assert r.status_code == 200, r.text
            bundle = r.json()
            out += matches(bundle, typed=path.strip("/") == "" or path.startswith("/_search"))
        return out


def matches(bundle: dict[str, Any], typed: bool = False) -> list[str]:
    out = []
    for entry in bundle.get("entry") or ():
        if entry["search"]["mode"] == "match":
            res = entry["resource"]
            out.append(f"{res['resourceType']}/{res['id']}" if typed else res["id"])
    return out


def entries(bundle: dict[str, Any], mode: str) -> list[dict[str, Any]]:
    return [e for e in bundle.get("entry") or () if e["search"]["mode"] == mode]


def link(bundle: dict[str, Any], relation: str) -> str | None:
    return next((lk["url"] for lk in bundle.get("link") or () if lk["relation"] == relation), None)


def patient(**fields: Any) -> dict[str, Any]:
    return {"resourceType": "Patient", **fields}


def observation(code: Any = None, **fields: Any) -> dict[str, Any]:
    if code is None:
        code = {"text": "test"}
    elif isinstance(code, tuple):
        code = {"coding": [{"system": code[0], "code": code[1]}]}
    return {"resourceType": "Observation", "status": "final", "code": code, **fields}
