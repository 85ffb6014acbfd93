"""special: `near` on Location.position (`lat|long|distance|unit`, distance in km by default).

Stored: `[{"lat", "lon"}]`; the query drives with a latitude band, then checks the distance.
`_text` and `_content` are `search/fulltext.py`'s, `_filter` is `search/filter.py`'s; `_query`
has no expression and is reported as unknown by the query layer.
"""

from __future__ import annotations

import math
import re
from typing import Any

from fhir_server.search.params.number import number_of
from fhir_server.search.params.token import unescape
from fhir_server.search.terms import RANGE, Term, values

_BAR = re.compile(r"(?<!\\)\|")
_EARTH_KM = 6371.0088
_UNITS_KM = {"km": 1.0, "[mi_i]": 1.609344, "mi": 1.609344, "m": 0.001}


def index(code: str, items: list[tuple[Any, str | None]]) -> dict[str, list[Any]]:
    points = []
    for value, _ in items:
        if isinstance(value, dict):
            lat, lon = number_of(value.get("latitude")), number_of(value.get("longitude"))
            if lat is not None and lon is not None:
                points.append({"lat": lat, "lon": lon})
    return {code: points} if points else {}


def distance_km(lat1: float, lon1: float, lat2: float, lon2: float) -> float:
    p1, p2 = math.radians(lat1), math.radians(lat2)
    dp, dl = p2 - p1, math.radians(lon2 - lon1)
    h = math.sin(dp / 2) ** 2 + math.cos(p1) * math.cos(p2) * math.sin(dl / 2) ** 2
    return 2 * _EARTH_KM * math.asin(min(1.0, math.sqrt(h)))


def term(code: str, modifier: str | None, texts: list[str], ctx) -> Term:
    if modifier is not None:
        raise ctx.unsupported_modifier(code, modifier)
    circles = []
    for text in texts:
        parts = [unescape(p) for p in _BAR.split(text)]
        try:
            lat, lon = float(parts[0]), float(parts[1])
            radius = float(parts[2]) if len(parts) > 2 and parts[2] else 1.0
        except (ValueError, IndexError):
            raise ctx.error(f"{code} needs latitude|longitude|distance|unit, got {text[:80]!r}") from None
        if not (abs(lat) <= 90 and abs(lon) <= 180 and 0 <= radius < math.inf):  # (NaN fails too)
            raise ctx.error(f"{code}: latitude is within ±90, longitude within ±180 and the distance a finite "
                            f"positive number, got {text[:80]!r}")
        unit = parts[3] if len(parts) > 3 and parts[3] else "km"
        if unit not in _UNITS_KM:
            raise ctx.error(f"{code}: unit {unit!r} is not one of {', '.join(_UNITS_KM)}")
        circles.append((lat, lon, radius * _UNITS_KM[unit]))
    conditions = [{"$gte": lat - km / 111.0, "$lte": lat + km / 111.0} for lat, _, km in circles]

    def match(doc) -> bool:
        return any(distance_km(lat, lon, p["lat"], p["lon"]) <= km
                   for p in values(doc, code) for lat, lon, km in circles)

    return Term(f"{code}.lat", conditions, match, RANGE)
