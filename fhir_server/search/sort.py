"""`_sort`: order matches by one or more parameters, read from their stored search values.

Ascending order uses a parameter's lowest value (the start of a date range), descending its
highest; resources without a value come last either way, and `_id` breaks ties so that the
order, and with it paging, is stable. A `_sort` names at most `FHIR_MAX_SORT_KEYS` keys (each
key is one pass over the matches); a key named twice adds nothing and is folded into the first.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

from fhir_server import budget
from fhir_server.errors import FhirError, Issue
from fhir_server.search.params import quantity
from fhir_server.search.terms import values
from fhir_server.storage.records import Record


def parse(value: str, max_keys: int) -> list[tuple[str, bool]]:
    """`_sort=a,-b` → [(code, descending)], duplicates folded (the first occurrence decides);
    422 beyond `max_keys` keys as written."""
    written = [v for v in value.split(",") if v]
    if len(written) > max_keys:
        raise FhirError(422, Issue("error", "too-costly", (
            f"_sort names {len(written)} keys; this server sorts on at most {max_keys} (FHIR_MAX_SORT_KEYS): "
            f"keep the most significant keys")))
    keys: dict[str, bool] = {}
    for item in written:
        code, descending = (item[1:], True) if item.startswith("-") else (item, False)
        keys.setdefault(code, descending)
    return list(keys.items())


def sort_key_value(doc: Record, code: str, type_: str, descending: bool) -> Any:
    if code == "_id":
        return doc.id
    if code == "_lastUpdated":
        return doc.last_updated
    stored = values(doc, code)
    if not stored:
        return None
    if type_ == "quantity":
        stored = quantity.as_written(stored)
    if type_ in ("date", "number", "quantity"):
        bounds = [v["h"] if descending else v["l"] for v in stored if isinstance(v, dict)]
        bounds = [b for b in bounds if b is not None]
        return (max if descending else min)(bounds) if bounds else None
    if type_ == "token":
        stored = [v for v in stored if "|" not in v] or stored
    strings = [v for v in stored if isinstance(v, str)]
    return (max if descending else min)(strings) if strings else None


def order(docs: list[Record], keys: list[tuple[str, str, bool]]) -> list[Record]:
    """Sort `docs` by `keys` = [(code, parameter type, descending)], most significant first:
    one stable pass per key, least significant first, each key's value read once per resource."""
    docs = sorted(docs, key=lambda d: (d.id, d.type))
    for code, type_, descending in reversed(keys):
        budget.check()
        valued = [(sort_key_value(d, code, type_, descending), d) for d in budget.checked(docs, every=1024)]
        present = [(v, d) for v, d in valued if v is not None]
        present.sort(key=lambda pair: _comparable(pair[0]), reverse=descending)
        docs = [d for _, d in present] + [d for v, d in valued if v is None]
    return docs


def _comparable(value: Any) -> Any:
    if isinstance(value, datetime):
        return value.timestamp()
    return value
