"""One index for every search parameter: flat, ordered string keys `code=value`.

MongoDB allows 64 indexes per collection and an Observation has more than 45 parameters; the
embedded database plans one single-field index well and little else. So the stored search
values are also flattened into one multikey array of strings whose byte order is the value
order: `gender=female`, `subject=Patient/123`, `name=durand` (folded),
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

from fhir_server.search.dates import shift
from fhir_server.storage.records import Key, KeyRange

_TOP = "\U0010ffff"
SHORT_TIME = timedelta(days=1)  # ranges up to this long are keyed by their low end only
_KEYED_SUFFIXES = (":identifier",)


def is_keyed(name: str) -> bool:
    """Whether a stored value (`code`, `code.l`, `code:text`…) is flattened into the keys."""
    if ":" not in name:
        return True
    return any(name.endswith(s) or s + "." in name for s in _KEYED_SUFFIXES)


def encode(value: Any) -> str | None:
    if isinstance(value, str):
        return value
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, datetime):
        return encode_instant(value)
    if isinstance(value, (int, float)):
        return sortable_number(float(value))
    return None


def encode_instant(value: datetime) -> str:
    """`YYYY-MM-DDThh:mm:ss.ffffffZ` in UTC, the year always four digits (strftime writes `999`
    for the year 999, which would sort after `1974`)."""
    v = value.astimezone(UTC) if value.tzinfo is not None else value
    return (f"{v.year:04d}-{v.month:02d}-{v.day:02d}T{v.hour:02d}:{v.minute:02d}:{v.second:02d}"
            f".{v.microsecond:06d}Z")


def sortable_number(number: float) -> str:
    """Hex of the IEEE double with the sign handled so that string order is numeric order."""
    (bits,) = struct.unpack(">Q", struct.pack(">d", number))
    bits = bits ^ 0xFFFFFFFFFFFFFFFF if bits >> 63 else bits | 0x8000000000000000
    return f"{bits:016x}"


def flatten(values: dict[str, Any]) -> list[str]:
    keys: set[str] = set()
    for name, stored in values.items():
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


def search_conditions(field: str, condition: Any) -> list[Key] | None:
    """The keys that together select a superset of `condition` on the stored values `field`
    (`code`, `code.l`…); None if the field is not keyed. A condition on a high end (`….h`)
    also reads the low ends."""
    main = key_condition(field, condition)
    if main is None or not field.endswith(".h"):
        return None if main is None else [main]
    shifted = condition
    if isinstance(condition, dict):
        shifted = {op: (shift(v, -SHORT_TIME) if isinstance(v, datetime) and op in ("$gt", "$gte") else v)
                   for op, v in condition.items()}
    low = key_condition(field[:-2] + ".l", shifted)
    return [main] if low is None else [main, low]


def key_condition(field: str, condition: Any) -> Key | None:
    """A term's condition on the stored values `field` as a key or key range; None if not keyed."""
    if not is_keyed(field):
        return None
    prefix = f"{field}="
    if not isinstance(condition, dict):
        encoded = encode(condition)
        if encoded is None:
            return None
        if encoded.endswith("|") and not encoded.startswith("|"):  # `system|`: any code in it
            return KeyRange(prefix + encoded, prefix + encoded + _TOP)
        if encoded.startswith("|"):  # `|code`: the code key, the missing system is checked after
            encoded = encoded[1:]
        return prefix + encoded
    low, high = prefix, prefix + _TOP
    low_closed, high_closed = True, False
    for op, value in condition.items():
        encoded = encode(value)
        if encoded is None:
            return None
        if op in ("$gt", "$gte"):
            low, low_closed = prefix + encoded, op == "$gte"
        elif op in ("$lt", "$lte"):
            high, high_closed = prefix + encoded, op == "$lte"
        else:
            return None
    return KeyRange(low, high, low_closed, high_closed)


def contained_prefix(resource_type: str) -> str:
    """Keys of a contained resource, stored among its container's: `#Medication:code=…`."""
    return f"#{resource_type}:"


def prefixed(key: Key, prefix: str) -> Key:
    """A key or key range moved under a prefix."""
    if isinstance(key, str):
        return prefix + key
    return KeyRange(prefix + key.low, prefix + key.high, key.low_closed, key.high_closed)
