"""One index for every search parameter: flat, ordered string keys `code=value`.

MongoDB allows 64 indexes per collection and an Observation has more than 45 parameters; the
embedded database plans one single-field index well and little else. So the stored search
values (`ix`) are also flattened into one multikey array `k` of strings whose byte order is the
value order: `gender=female`, `subject=Patient/123`, `name=durand` (folded),
`birthdate.l=1974-12-25T00:00:00.000000Z`, `value-quantity.l=<sortable hex of the double>`.
Every indexed condition of a search term becomes an equality or a range inside one key prefix.

Not keyed (answered by a scan, then the exact predicate): modifier-specific values
(`:text`, `:exact`, `:of-type`), and the derived token forms `|code` and `system|`, which the
`code` and `system|code` keys already answer.

Ranges keep few keys, since each key is an index entry every write pays for: a range's high
end (`.h`) is keyed only when the range is long (over a day for times, above a point for
numbers); a condition on the high end also looks at the low ends, shifted by that length
(`search_conditions`), and the exact predicate sorts out the rest.
"""

from __future__ import annotations

import struct
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from typing import Any

_TOP = "\U0010ffff"
SHORT_TIME = timedelta(days=1)  # ranges up to this long are keyed by their low end only
_KEYED_SUFFIXES = (":identifier",)


def is_keyed(name: str) -> bool:
    """Whether an `ix` field (`code`, `code.l`, `code:text`…) is flattened into `k`."""
    if ":" not in name:
        return True
    return any(name.endswith(s) or s + "." in name for s in _KEYED_SUFFIXES)


def encode(value: Any) -> str | None:
    if isinstance(value, str):
        return value
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, datetime):
        return value.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ")
    if isinstance(value, (int, float)):
        return sortable_number(float(value))
    return None


def sortable_number(number: float) -> str:
    """Hex of the IEEE double with the sign handled so that string order is numeric order."""
    (bits,) = struct.unpack(">Q", struct.pack(">d", number))
    bits = bits ^ 0xFFFFFFFFFFFFFFFF if bits >> 63 else bits | 0x8000000000000000
    return f"{bits:016x}"


def flatten(ix: dict[str, Any]) -> list[str]:
    keys: set[str] = set()
    for name, stored in ix.items():
        if is_keyed(name):
            keys.update(_flatten(name, stored))
    return sorted(keys)


def _flatten(prefix: str, stored: Any) -> Iterator[str]:
    if isinstance(stored, list):
        for item in stored:
            yield from _flatten(prefix, item)
    elif isinstance(stored, dict):
        short = _short_range(stored)
        for sub, value in stored.items():
            if (sub.isdigit() and sub != "0") or not is_keyed(sub):  # composites: first component
                continue
            if sub == "h" and short:
                continue
            yield from _flatten(f"{prefix}.{sub}", value)
    elif isinstance(stored, str):
        if not (stored.startswith("|") or stored.endswith("|")):
            yield f"{prefix}={stored}"
    else:
        encoded = encode(stored)
        if encoded is not None:
            yield f"{prefix}={encoded}"


def _short_range(stored: dict[str, Any]) -> bool:
    low, high = stored.get("l"), stored.get("h")
    if isinstance(low, datetime) and isinstance(high, datetime):
        return high - low <= SHORT_TIME
    if isinstance(low, (int, float)) and isinstance(high, (int, float)):
        return high == low
    return False


def search_conditions(field: str, condition: Any) -> list[Any] | None:
    """The `k` conditions that together select a superset of `condition` on `ix.<field>`;
    None if the field is not keyed. A condition on a high end (`….h`) also reads the low ends."""
    main = key_condition(field, condition)
    if main is None or not field.endswith(".h"):
        return None if main is None else [main]
    shifted = condition
    if isinstance(condition, dict):
        shifted = {op: (v - SHORT_TIME if isinstance(v, datetime) and op in ("$gt", "$gte") else v)
                   for op, v in condition.items()}
    low = key_condition(field[:-2] + ".l", shifted)
    return [main] if low is None else [main, low]


def key_condition(field: str, condition: Any) -> Any | None:
    """A term's condition on `ix.<field>` as a condition on `k`; None if not keyed."""
    name = field[3:] if field.startswith("ix.") else field
    if not is_keyed(name):
        return None
    prefix = f"{name}="
    if not isinstance(condition, dict):
        encoded = encode(condition)
        if encoded is None:
            return None
        if encoded.endswith("|") and not encoded.startswith("|"):  # `system|`: any code in it
            return {"$gte": prefix + encoded, "$lt": prefix + encoded + _TOP}
        if encoded.startswith("|"):  # `|code`: the code key, the missing system is checked after
            encoded = encoded[1:]
        return prefix + encoded
    low, high = prefix, prefix + _TOP
    low_op, high_op = "$gte", "$lt"
    for op, value in condition.items():
        encoded = encode(value)
        if encoded is None:
            return None
        if op in ("$gt", "$gte"):
            low, low_op = prefix + encoded, op
        elif op in ("$lt", "$lte"):
            high, high_op = prefix + encoded, op
        else:
            return None
    return {low_op: low, high_op: high}


def contained_prefix(resource_type: str) -> str:
    """Keys of a contained resource, stored in its container's `k`: `#Medication:code=…`."""
    return f"#{resource_type}:"


def prefixed(condition: Any, prefix: str) -> Any:
    """A `k` condition moved under a prefix (strings, ranges and `$elemMatch` alike)."""
    if isinstance(condition, str):
        return prefix + condition
    return {op: prefixed(value, prefix) for op, value in condition.items()}
