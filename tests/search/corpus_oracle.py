"""An independent, brute-force search oracle for the corpus test (tests/search/test_corpus.py).

It knows nothing of the server's code: values come from the SearchParameter's FHIRPath
expression evaluated by fhirpathpy, and matching follows the R4 search page (3.1.1.4) written
out plainly here. Two documented adaptations make fhirpathpy usable on R4 expressions:

- `X.where(resolve() is T)`: fhirpathpy has no `resolve()`; the oracle reads it as "the
  references in X whose literal reference names type T" (`T/id`, `…/T/id`), as DESIGN.md says.
- `Resource.meta.tag`: fhirpathpy selects nothing from a root named after a base type; the
  oracle evaluates `<the resource's type>.meta.tag`.
- `X as T`: fhirpathpy refuses `as` on a collection of several items (R4 expressions use it as
  `ofType`, e.g. `Observation.component.value as Quantity`); the oracle evaluates `X.ofType(T)`,
  and reads the FHIRPath system type names some expressions use (`value.as(DateTime)`) as the
  FHIR types they mean (`dateTime`), which is what fhirpathpy's R4 model knows.

Composite parameters evaluate each component on each element of the base expression through
an indexed path (`(Observation.component)[1].value.ofType(Quantity)`), so fhirpathpy keeps the
element's type and can resolve the choice `value[x]`.
"""

from __future__ import annotations

import math
import re
import unicodedata
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta, timezone
from decimal import Decimal, InvalidOperation
from typing import Any

import fhirpathpy
from fhirpathpy.models import models

MODEL = models["r4"]
CONTACT_SYSTEMS = {"phone", "fax", "email", "pager", "url", "sms", "other"}
_RESOLVE_IS = re.compile(r"\.where\(resolve\(\) is (\w+)\)")
_AS = re.compile(r"([A-Za-z][\w.]*(?:\[\d+\])?) as (\w+)")
_AS_CALL = re.compile(r"\.as\((\w+)\)")
_REL_REF = re.compile(r"^(?:(?P<base>.+)/)?(?P<type>[A-Z][A-Za-z]+)/(?P<id>[A-Za-z0-9\-.]{1,64})"
                      r"(?:/_history/[A-Za-z0-9\-.]{1,64})?$")
_COMPILED: dict[str, Any] = {}
# FHIRPath system type names some R4 expressions cast to (`value.as(DateTime)`): the FHIR types meant
_FHIR_TYPE = {"DateTime": "dateTime", "String": "string", "Boolean": "boolean", "Integer": "integer",
              "Decimal": "decimal", "Date": "date", "Time": "time"}


# -- FHIRPath ----------------------------------------------------------------------------------
def rewrite(expression: str) -> str:
    """The oracle's reading of an R4 expression (see the module docstring)."""
    out = _RESOLVE_IS.sub(lambda m: f".where(reference.startsWith('{m[1]}/') or "
                                    f"reference.contains('/{m[1]}/'))", expression)
    out = _AS.sub(lambda m: f"{m[1]}.ofType({_FHIR_TYPE.get(m[2], m[2])})", out)
    return _AS_CALL.sub(lambda m: f".ofType({_FHIR_TYPE.get(m[1], m[1])})", out)


def evaluate(resource: dict[str, Any], expression: str) -> list[Any]:
    """fhirpathpy on the rewritten expression; [] where fhirpathpy fails."""
    if expression.startswith(("Resource.", "DomainResource.")):
        expression = resource["resourceType"] + expression[expression.index("."):]
    fn = _COMPILED.get(expression)
    if fn is None:
        try:
            fn = fhirpathpy.compile(rewrite(expression), MODEL)
        except Exception:  # noqa: BLE001 - fhirpathpy raises bare exceptions
            fn = False
        _COMPILED[expression] = fn
    if fn is False:
        return []
    try:
        return [v for v in fn(resource, {"resource": resource, "rootResource": resource}) if v is not None]
    except Exception:  # noqa: BLE001
        return []


def split_union(expression: str) -> list[str]:
    """Top-level `|` alternatives of an expression."""
    out, depth, start = [], 0, 0
    for i, ch in enumerate(expression):
        if ch == "(":
            depth += 1
        elif ch == ")":
            depth -= 1
        elif ch == "|" and depth == 0:
            out.append(expression[start:i].strip())
            start = i + 1
    out.append(expression[start:].strip())
    return [e for e in out if e]


def composite_elements(resource: dict[str, Any], expression: str,
                       components: list[str]) -> list[list[list[Any]]]:
    """For each element the base expression selects: the values of each component."""
    out = []
    for path in split_union(expression):
        for i in range(len(evaluate(resource, path))):
            row = []
            for comp in components:
                values: list[Any] = []
                for branch in split_union(comp):  # `value.as(Quantity) | value.as(Range)`: both relative
                    if branch.startswith("%resource"):
                        values += evaluate(resource, branch)
                    else:
                        values += evaluate(resource, f"({path})[{i}].{branch}")
                row.append(values)
            out.append(row)
    return out


# -- folding, dates, numbers -------------------------------------------------------------------
def fold(text: str) -> str:
    decomposed = unicodedata.normalize("NFKD", text)
    return "".join(c for c in decomposed if not unicodedata.combining(c)).casefold()


_DATE = re.compile(r"^(\d{4})(?:-(\d{2})(?:-(\d{2})(?:T(\d{2}):(\d{2})(?::(\d{2})(\.\d+)?)?"
                   r"(Z|[+-]\d{2}:\d{2})?)?)?)?$")
EARLIEST = datetime(1, 1, 1, tzinfo=UTC)
LATEST = datetime(9999, 12, 31, 23, 59, 59, tzinfo=UTC)


def date_range(text: str) -> tuple[datetime, datetime] | None:
    """[low, high) of a date/dateTime/instant; no time zone is read as UTC (the server's rule)."""
    m = _DATE.match(text.strip())
    if not m:
        return None
    y, mo, d, hh, mi, ss, frac, tz = m.groups()
    zone = UTC
    if tz and tz != "Z":
        sign = 1 if tz[0] == "+" else -1
        zone = timezone(sign * timedelta(hours=int(tz[1:3]), minutes=int(tz[4:6])))
    if mo is None:
        low = datetime(int(y), 1, 1, tzinfo=zone)
        high = datetime(int(y) + 1, 1, 1, tzinfo=zone)
    elif d is None:
        low = datetime(int(y), int(mo), 1, tzinfo=zone)
        high = datetime(int(y) + (mo == "12"), 1 if mo == "12" else int(mo) + 1, 1, tzinfo=zone)
    elif hh is None:
        low = datetime(int(y), int(mo), int(d), tzinfo=zone)
        high = low + timedelta(days=1)
    elif ss is None:
        low = datetime(int(y), int(mo), int(d), int(hh), int(mi), tzinfo=zone)
        high = low + timedelta(minutes=1)
    else:
        digits = (frac or ".")[1:]
        micro = int((digits + "000000")[:6]) if digits else 0
        low = datetime(int(y), int(mo), int(d), int(hh), int(mi), int(ss), micro, tzinfo=zone)
        high = low + (timedelta(microseconds=10 ** (6 - min(len(digits), 6))) if digits else timedelta(seconds=1))
    return low.astimezone(UTC), high.astimezone(UTC)


def target_date_ranges(value: Any) -> list[tuple[datetime, datetime]]:
    """date, dateTime, instant: their range; Period: start..end (open ends unbounded);
    Timing: its outer limits (R4: "only the outer limits matter")."""
    if isinstance(value, str):
        r = date_range(value)
        return [r] if r else []
    if not isinstance(value, dict):
        return []
    if "start" in value or "end" in value:
        start = date_range(value["start"]) if isinstance(value.get("start"), str) else None
        end = date_range(value["end"]) if isinstance(value.get("end"), str) else None
        return [(start[0] if start else EARLIEST, end[1] if end else LATEST)]
    if "event" in value or "repeat" in value:
        ranges = [r for e in value.get("event") or () if (r := date_range(e))]
        bounds = (value.get("repeat") or {}).get("boundsPeriod")
        if isinstance(bounds, dict):
            ranges += target_date_ranges(bounds)
        if ranges:
            return [(min(r[0] for r in ranges), max(r[1] for r in ranges))]
    return []


def date_matches(prefix: str, query: tuple[datetime, datetime], target: tuple[datetime, datetime]) -> bool:
    """R4 3.1.1.4.4 prefixes on ranges: [a, b) the search value, [lo, hi) the target."""
    a, b = query
    lo, hi = target
    contained = lo >= a and hi <= b
    return {
        "eq": contained,
        "ne": not contained,
        "gt": hi > b,
        "lt": lo < a,
        "ge": hi > b or contained,
        "le": lo < a or contained,
        "sa": lo >= b,
        "eb": hi <= a,
    }[prefix]


def precision_range(text: str) -> tuple[Decimal, Decimal]:
    """`100` → [99.5, 100.5), `1.50` → [1.495, 1.505): the implicit precision of a number."""
    number = Decimal(text)
    half = Decimal(5) * Decimal(10) ** (number.as_tuple().exponent - 1)
    return number - half, number + half


def as_decimal(value: Any) -> Decimal | None:
    if isinstance(value, bool) or not isinstance(value, (int, float, Decimal)):
        return None
    return Decimal(str(value))


def number_text(value: Any) -> str | None:
    d = as_decimal(value)
    return None if d is None else str(d)


def haversine_km(lat1: float, lon1: float, lat2: float, lon2: float) -> float:
    r = 6371.0
    p1, p2 = math.radians(lat1), math.radians(lat2)
    a = math.sin((p2 - p1) / 2) ** 2 + math.cos(p1) * math.cos(p2) * math.sin(math.radians(lon2 - lon1) / 2) ** 2
    return 2 * r * math.asin(math.sqrt(a))


# -- one matcher per parameter type ------------------------------------------------------------
@dataclass
class Query:
    """A query value (`text`, for the URL) and the oracle's predicate on one extracted value."""

    modifier: str | None
    text: str
    matches: Callable[[Any], bool]


def _escape(text: str) -> str:
    return text.replace("\\", "\\\\").replace(",", "\\,").replace("|", "\\|").replace("$", "\\$")


def token_pairs(value: Any) -> list[tuple[str | None, str, str]]:
    """(system, code, kind) of a token value; kind tells how the query may be written."""
    if isinstance(value, bool):
        return [(None, "true" if value else "false", "primitive")]
    if isinstance(value, str):
        return [(None, value, "primitive")]
    if not isinstance(value, dict):
        return []
    if "coding" in value or ("text" in value and not {"code", "value", "system"} & set(value)):
        return [p for c in value.get("coding") or () for p in token_pairs(c)]
    if "value" in value and value.get("system") in CONTACT_SYSTEMS:
        return [(None, value["value"], "contact")] if isinstance(value.get("value"), str) else []
    code = value.get("code", value.get("value"))
    if isinstance(code, str):
        return [(value.get("system") if isinstance(value.get("system"), str) else None, code, "coded")]
    return []


def token_queries(value: Any) -> list[Query]:
    out = []
    for system, code, kind in token_pairs(value):
        if system:
            out.append(Query(None, f"{_escape(system)}|{_escape(code)}",
                             lambda v, s=system, c=code: any(ps == s and pc == c for ps, pc, _ in token_pairs(v))))
        else:
            out.append(Query(None, _escape(code),
                             lambda v, c=code: any(pc == c for _, pc, _ in token_pairs(v))))
            if kind == "coded":
                out.append(Query(None, f"|{_escape(code)}",
                                 lambda v, c=code: any(pc == c and ps is None and k == "coded"
                                                       for ps, pc, k in token_pairs(v))))
    return out


def string_parts(value: Any) -> list[str]:
    if isinstance(value, str):
        return [value]
    if not isinstance(value, dict):
        return []
    keys = ("text", "family", "given", "prefix", "suffix", "line", "city", "district", "state",
            "postalCode", "country")
    out = []
    for key in keys:
        part = value.get(key)
        out += [p for p in (part if isinstance(part, list) else [part]) if isinstance(p, str)]
    return out


def string_queries(value: Any) -> list[Query]:
    out = []
    for part in string_parts(value)[:1]:
        prefix = part[:3]
        if not prefix.strip():
            continue
        out.append(Query(None, _escape(prefix),
                         lambda v, p=fold(prefix): any(fold(s).startswith(p) for s in string_parts(v))))
        out.append(Query("exact", _escape(part), lambda v, p=part: p in string_parts(v)))
        needle = part[1:4]
        if len(needle) == 3 and needle.strip() == needle:
            out.append(Query("contains", _escape(needle),
                             lambda v, n=fold(needle): any(n in fold(s) for s in string_parts(v))))
    return out


def date_queries(value: Any, prefix: str = "eq") -> list[Query]:
    text = value if isinstance(value, str) else None
    if isinstance(value, dict):
        text = value.get("start") or value.get("end") or next(iter(value.get("event") or ()), None)
    if not isinstance(text, str) or date_range(text) is None:
        return []
    query = date_range(text)
    return [Query(None, f"{prefix}{text}", lambda v, q=query, p=prefix: any(
        date_matches(p, q, t) for t in target_date_ranges(v)))]


def reference_keys(value: Any, base: str) -> list[str]:
    """What a reference value can be searched by: `Type/id` for references to this server
    (relative, or absolute under its base), the URL as written otherwise (canonicals also
    without their `|version`)."""
    ref = value if isinstance(value, str) else value.get("reference") if isinstance(value, dict) else None
    if not isinstance(ref, str) or ref.startswith("#"):
        return []
    m = _REL_REF.match(ref)
    if m and (m["base"] is None or m["base"].rstrip("/") == base):
        return [f"{m['type']}/{m['id']}"]
    if m:
        return [ref.split("/_history/")[0]]
    return [ref, ref.split("|")[0]] if "|" in ref else [ref]


def reference_queries(value: Any, base: str) -> list[Query]:
    out = []
    for key in reference_keys(value, base)[:1]:
        out.append(Query(None, _escape(key), lambda v, k=key: k in reference_keys(v, base)))
    identifier = value.get("identifier") if isinstance(value, dict) else None
    if isinstance(identifier, dict):
        for system, code, _ in token_pairs(identifier)[:1]:
            text = f"{_escape(system)}|{_escape(code)}" if system else _escape(code)

            def by_identifier(v, s=system, c=code):
                ident = v.get("identifier") if isinstance(v, dict) else None
                return any((s is None or ps == s) and pc == c for ps, pc, _ in token_pairs(ident))
            out.append(Query("identifier", text, by_identifier))
    return out


def quantity_parts(value: Any) -> tuple[Decimal, Decimal, str | None, str | None, str | None] | None:
    """(low, high, system, code, unit) of a Quantity, Money or Range value."""
    if not isinstance(value, dict):
        return None
    number = as_decimal(value.get("value"))
    if number is not None:
        unit = value.get("unit") if "currency" not in value else value.get("currency")
        return number, number, value.get("system"), value.get("code"), unit
    if isinstance(value.get("low"), dict) or isinstance(value.get("high"), dict):  # Range
        low = quantity_parts(value.get("low"))
        high = quantity_parts(value.get("high"))
        unit = low or high
        if unit is None:
            return None
        return (low[0] if low else Decimal("-Infinity"), high[1] if high else Decimal("Infinity"),
                unit[2], unit[3], unit[4])
    return None


def quantity_queries(value: Any) -> list[Query]:
    parts = quantity_parts(value)
    if parts is None:
        return []
    number, _, system, code, unit = parts
    text = str(number)
    low, high = precision_range(text)
    if system and code:
        unit_text, unit_ok = f"|{_escape(system)}|{_escape(code)}", (lambda p, s=system, c=code: p[2] == s and p[3] == c)
    elif code or unit:
        u = code or unit
        unit_text, unit_ok = f"||{_escape(u)}", (lambda p, u=u: u in (p[3], p[4]))
    else:
        unit_text, unit_ok = "", (lambda p: True)

    def matches(v):
        p = quantity_parts(v)
        return p is not None and low <= p[0] and p[1] < high and unit_ok(p)
    return [Query(None, text + unit_text, matches)]


def number_bounds(value: Any) -> tuple[Decimal, Decimal] | None:
    """A number as (value, value); a Range as (low, high), open ends unbounded."""
    d = as_decimal(value)
    if d is not None:
        return d, d
    parts = quantity_parts(value) if isinstance(value, dict) and ("low" in value or "high" in value) else None
    return (parts[0], parts[1]) if parts else None


def number_queries(value: Any) -> list[Query]:
    text = number_text(value)
    if text is None:
        return []
    low, high = precision_range(text)

    def matches(v):
        bounds = number_bounds(v)
        return bounds is not None and low <= bounds[0] and bounds[1] < high
    return [Query(None, text, matches)]


def uri_queries(value: Any) -> list[Query]:
    if not isinstance(value, str):
        return []
    return [Query(None, _escape(value), lambda v, u=value: v == u or (isinstance(v, str) and "|" in v
                                                                       and v.split("|")[0] == u))]


def near_queries(value: Any) -> list[Query]:
    if not isinstance(value, dict):
        return []
    lat, lon = as_decimal(value.get("latitude")), as_decimal(value.get("longitude"))
    if lat is None or lon is None:
        return []

    def matches(v):
        if not isinstance(v, dict):
            return False
        la, lo = as_decimal(v.get("latitude")), as_decimal(v.get("longitude"))
        return la is not None and lo is not None and haversine_km(float(lat), float(lon), float(la), float(lo)) <= 1.0
    return [Query(None, f"{lat}|{lon}|1|km", matches)]


def queries_for(type_: str, value: Any, base: str, date_prefix: str = "eq") -> list[Query]:
    if type_ == "token":
        return token_queries(value)
    if type_ == "string":
        return string_queries(value)
    if type_ == "date":
        return date_queries(value, date_prefix)
    if type_ == "reference":
        return reference_queries(value, base)
    if type_ == "quantity":
        return quantity_queries(value)
    if type_ == "number":
        return number_queries(value)
    if type_ == "uri":
        return uri_queries(value)
    if type_ == "special":
        return near_queries(value)
    return []


def has_value(type_: str, value: Any, base: str) -> bool:
    """Whether a value the expression selects is a searchable value of the parameter's type."""
    if type_ == "token":
        return bool(token_pairs(value))
    if type_ == "string":
        return bool(string_parts(value))
    if type_ == "date":
        return bool(target_date_ranges(value))
    if type_ == "reference":  # any reference, also to a contained resource (`#id`), or an identifier
        ref = value if isinstance(value, str) else value.get("reference") if isinstance(value, dict) else None
        return bool(ref) or (isinstance(value, dict) and bool(token_pairs(value.get("identifier"))))
    if type_ == "quantity":
        return quantity_parts(value) is not None
    if type_ == "number":
        return number_bounds(value) is not None
    if type_ == "uri":
        return isinstance(value, str)
    if type_ == "special":
        return bool(near_queries(value))
    return False


def spread(items: Iterable[Any], n: int) -> list[Any]:
    """Up to n items spread over a sorted sequence: first, last and evenly in between."""
    items = list(items)
    if len(items) <= n:
        return items
    step = (len(items) - 1) / (n - 1) if n > 1 else 0
    return [items[round(i * step)] for i in range(n)]


def decimal_text(value: Any) -> str:
    try:
        return str(Decimal(value))
    except (InvalidOperation, TypeError):
        return str(value)
