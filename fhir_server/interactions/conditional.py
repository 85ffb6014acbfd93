"""The search behind conditional create, update and delete.

A condition is a search query (`identifier=http://sys|123&_id=abc`). It is evaluated inside the
write's transaction, so the decision (create, update which one, refuse) is taken on the same
snapshot the write commits on. Several matches always mean 412: the client's condition is not
selective enough.
"""

from __future__ import annotations

import hashlib
import re
from dataclasses import dataclass
from typing import Any
from urllib.parse import parse_qsl, urlencode

from fhir_server.errors import FhirError, Issue, bad_request
from fhir_server.storage.store import Version

_UNESCAPED_COMMA = re.compile(r"(?<!\\),")
_UNESCAPED_BAR = re.compile(r"(?<!\\)\|")


@dataclass(frozen=True)
class Condition:
    code: str
    field: str | None  # the indexed field, None for _id
    keys: frozenset[str]  # OR of these


# Parameters about the response's form, not about which resources match.
_RESULT_PARAMS = frozenset({"_format", "_pretty", "_summary", "_elements"})


def query_string(params: list[tuple[str, str]]) -> str:
    """The condition in a `[type]?query` URL, without the response-shaping parameters."""
    return urlencode([(k, v) for k, v in params if k not in _RESULT_PARAMS], safe="|:/,$")


def parse(server, type_: str, text: str | None, where: str) -> list[Condition]:
    if not text or not text.strip():
        raise bad_request(f"{where} holds no search parameters: a conditional interaction needs a "
                          f"query such as identifier=system|value", code="required")
    text = text.split("?", 1)[1] if "?" in text else text  # accept "Patient?identifier=…"
    pairs = parse_qsl(text, keep_blank_values=True)
    if not pairs:
        raise bad_request(f"{where} is not a search query: {text!r}", code="invalid")
    conditions = []
    params = server.search_parameters
    for name, value in pairs:
        if not value:
            raise bad_request(f"parameter {name!r} in {where} has no value", code="value")
        values = [_unescape(v) for v in _UNESCAPED_COMMA.split(value)]
        if name == "_id":
            conditions.append(Condition("_id", None, frozenset(values)))
            continue
        param = params.get(type_, name)
        if param is None or param.type != "token" or ":" in name:
            raise bad_request(
                f"conditional interactions accept _id and token parameters such as identifier for now; "
                f"{name!r} is not one of them for {type_}", code="not-supported")
        keys = frozenset(k for v in values for k in _token_query(v))
        conditions.append(Condition(name, param.field, keys))
    return conditions


def _token_query(value: str) -> list[str]:
    parts = _UNESCAPED_BAR.split(value, maxsplit=1)
    if len(parts) == 1:
        return [_unescape(parts[0])]
    system, code = (_unescape(p) for p in parts)
    return [f"{system}|{code}" if code else f"{system}|"] if system else [f"|{code}"]


def _unescape(value: str) -> str:
    return value.replace("\\,", ",").replace("\\|", "|").replace("\\$", "$").replace("\\\\", "\\")


def matches(server, type_: str, conditions: list[Condition], session: Any) -> list[Version]:
    """Current, non-deleted resources of the type meeting every condition."""
    collection = server.store.db[type_]
    first, rest = conditions[0], conditions[1:]
    if first.field is None:
        query: dict[str, Any] = {"_id": {"$in": sorted(first.keys)}}
    else:
        query = {first.field: {"$in": sorted(first.keys)}}
    found = []
    for doc in collection.find(query, session=session):
        if doc.get("del") or not all(_meets(doc, c) for c in rest):
            continue
        found.append(Version(type_, doc["_id"], doc["v"], doc["ts"], False, doc.get("json")))
    return found


def _meets(doc: dict[str, Any], condition: Condition) -> bool:
    if condition.field is None:
        return doc["_id"] in condition.keys
    values = doc.get("ix", {}).get(condition.code, ())
    return any(v in condition.keys for v in values)


def at_most_one(found: list[Version], type_: str, text: str | None) -> None:
    if len(found) > 1:
        raise FhirError(412, Issue("error", "multiple-matches",
                                   f"{len(found)} {type_} resources match {text!r}; make the condition "
                                   f"selective enough to match one"))


def guard_key(type_: str, conditions: list[Condition]) -> str:
    """Same conditions → same key, so racing conditional writes serialise on it."""
    canonical = "&".join(f"{c.code}={','.join(sorted(c.keys))}" for c in sorted(conditions, key=lambda c: c.code))
    return f"{type_}?" + hashlib.sha256(canonical.encode()).hexdigest()[:32]

