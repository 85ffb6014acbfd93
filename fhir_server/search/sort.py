"""`_sort`: order matches by one or more parameters, read from their stored search values.

Ascending order uses a parameter's lowest value (the start of a date range), descending its
highest; resources without a value come last either way, and `_id` breaks ties so that the
order, and with it paging, is stable.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

from fhir_server.search.params import quantity
from fhir_server.search.terms import values
from fhir_server.storage.records import Record


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
    """Sort `docs` by `keys` = [(code, parameter type, descending)], most significant first."""
    docs = sorted(docs, key=lambda d: (d.id, d.type))
    for code, type_, descending in reversed(keys):
        present = [d for d in docs if sort_key_value(d, code, type_, descending) is not None]
        missing = [d for d in docs if sort_key_value(d, code, type_, descending) is None]
        present.sort(key=lambda d: _comparable(sort_key_value(d, code, type_, descending)), reverse=descending)
        docs = present + missing
    return docs


def _comparable(value: Any) -> Any:
    if isinstance(value, datetime):
        return value.timestamp()
    return value
