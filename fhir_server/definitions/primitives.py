"""Value checks for FHIR primitive types, built from their StructureDefinitions.

For a primitive type `T`, everything comes from the `T.value` element of its definition and
of its primitive ancestors (`positiveInt` → `integer`):

* the JSON kind: that of the root primitive (the one derived from Element), read from the
  FHIRPath System type of its `.value` (`System.Boolean` → JSON true/false, `System.Integer`
  → JSON integer, `System.Decimal` → JSON number, anything else → JSON string). FHIR JSON
  writes integers as 32-bit signed numbers, so integers are also checked against that range.
* the regex of the `http://hl7.org/fhir/StructureDefinition/regex` extension on the type of
  `.value` (the nearest one in the ancestry), matched against the whole lexical form (for
  numbers, the literal text kept by `fhir_server.jsonio.Decimal`). The regexes are XML
  Schema regexes: they are compiled once, with `re.ASCII` so that `\\s`/`\\S` keep their XML
  meaning (ASCII white space only).
* `maxLength` of `.value` (string: 1 MB), inherited by string's specializations.
* a real calendar check when `.value` is a `System.Date`/`System.DateTime` (2020-02-30 is
  rejected although the regex accepts it).
* well-formed XHTML when `.value` has the `xhtml` representation (Narrative.div): one `div`
  root in the XHTML namespace, parsed with the standard library's expat; no DOCTYPE, entity
  declarations, processing instructions or `script` elements.
"""

from __future__ import annotations

import calendar
import math
import re
from collections.abc import Callable
from typing import TYPE_CHECKING, Any
from xml.parsers import expat

if TYPE_CHECKING:
    from fhir_server.definitions.model import TypeModel

EXT_REGEX = "http://hl7.org/fhir/StructureDefinition/regex"
SYSTEM_PREFIX = "http://hl7.org/fhirpath/System."
XHTML_NS = "http://www.w3.org/1999/xhtml"
INT32_MIN, INT32_MAX = -(2 ** 31), 2 ** 31 - 1

# FHIR strings are Unicode text without C0 controls other than tab, LF and CR (the XML character
# range the regexes of the definitions assume); unpaired surrogates could not be stored as UTF-8.
_FORBIDDEN_CHAR = re.compile(r"[\x00-\x08\x0b\x0c\x0e-\x1f\ud800-\udfff]").search

# The base64Binary regex of R4 repeats a group: Python's engine keeps ~150 bytes of backtracking
# state per character matched (1.5 GB and 2 s for a 10 MB Binary). The same language, checked in
# linear time and constant memory: only alphabet and white space, each run between white space a
# whole number of 4-character groups, at least one group.
_BASE64_REGEX = r"(\s*([0-9a-zA-Z\+/=]){4}\s*)+"
_BASE64_TEXT = re.compile(r"[0-9a-zA-Z+/=\s]+", re.ASCII).fullmatch
_BASE64_RUNS = re.compile(r"[0-9a-zA-Z+/=]+", re.ASCII).finditer


def _base64_fullmatch(text: str) -> bool | None:
    """`fullmatch` of the base64Binary regex: True or None."""
    if _BASE64_TEXT(text) is None:
        return None
    runs = 0
    for run in _BASE64_RUNS(text):
        if (run.end() - run.start()) % 4:
            return None
        runs += 1
    return True if runs else None


# Memo of valid string values per type: bounded, cleared when full (values are immutable).
_MEMO_SIZE, _MEMO_LENGTH = 4096, 128

# JSON kinds
BOOLEAN, INTEGER, NUMBER, STRING = "boolean", "integer", "number", "string"
_KIND_OF_SYSTEM = {"Boolean": BOOLEAN, "Integer": INTEGER, "Decimal": NUMBER}
_KIND_TEXT = {BOOLEAN: "a JSON boolean (true or false)", INTEGER: "a JSON integer (no quotes, no fraction)",
              NUMBER: "a JSON number (no quotes)", STRING: "a JSON string"}


def describe(value: Any) -> str:
    """A short description of a JSON value for messages."""
    if value is None:
        return "null"
    if value is True or value is False:
        return "the boolean " + ("true" if value else "false")
    if isinstance(value, str):
        text = value if len(value) <= 40 else value[:37] + "..."
        return f"the string {text!r}"
    if isinstance(value, (int, float)):
        return f"the number {lexical_number(value)}"
    if isinstance(value, list):
        return "an array"
    if isinstance(value, dict):
        return "an object"
    return type(value).__name__


def lexical_number(value: float) -> str:
    text = getattr(value, "text", None)  # fhir_server.jsonio.Decimal keeps its literal
    if text is not None:
        return text
    return str(value) if isinstance(value, int) else repr(float(value))


def _value_type(model: TypeModel) -> dict[str, Any] | None:
    element = model.root.children.get("value")
    if element is None:
        return None
    types = element.definition.get("type") or []
    return types[0] if types else None


def _regex_of(model: TypeModel) -> str | None:
    type_ = _value_type(model)
    if not type_:
        return None
    for ext in type_.get("extension") or ():
        if ext.get("url") == EXT_REGEX and isinstance(ext.get("valueString"), str):
            return ext["valueString"]
    return None


def _value_element(model: TypeModel) -> dict[str, Any]:
    element = model.root.children.get("value")
    return element.definition if element is not None else {}


class PrimitiveType:
    """The checks of one primitive type. `check(value)` returns None or a message."""

    __slots__ = ("calendar", "check", "json_kind", "max_length", "name", "pattern", "xhtml")

    def __init__(self, name: str, json_kind: str, pattern: str | None = None, max_length: int | None = None,
                 calendar_check: bool = False, xhtml: bool = False):
        self.name = name
        self.json_kind = json_kind
        self.pattern = pattern
        self.max_length = max_length
        self.calendar = calendar_check
        self.xhtml = xhtml
        self.check: Callable[[Any], str | None] = self._build()

    def __repr__(self) -> str:
        return f"PrimitiveType({self.name}: {self.json_kind}, /{self.pattern}/)"

    @classmethod
    def from_models(cls, ancestry: list[TypeModel]) -> PrimitiveType:
        """From a primitive's model and its ancestors (most specific first)."""
        primitives = [m for m in ancestry if m.kind == "primitive-type"]
        own = primitives[0]
        root_type = _value_type(primitives[-1]) or {}
        system = root_type.get("code", "")
        # `System.Integer` → integer…; anything else (System.String, Date, Time…) is a JSON string
        kind = _KIND_OF_SYSTEM.get(system.removeprefix(SYSTEM_PREFIX), STRING)
        pattern = next((p for p in (_regex_of(m) for m in primitives) if p is not None), None)
        max_length = next((int(v) for v in (_value_element(m).get("maxLength") for m in primitives)
                           if isinstance(v, int)), None)
        dates = (SYSTEM_PREFIX + "Date", SYSTEM_PREFIX + "DateTime")
        calendar_check = any((_value_type(m) or {}).get("code") in dates for m in primitives)
        xhtml = "xhtml" in (_value_element(own).get("representation") or ())
        return cls(own.name, kind, pattern, max_length, calendar_check, xhtml)

    @classmethod
    def for_system_type(cls, system: str) -> PrimitiveType:
        """A bare FHIRPath System type (no FHIR type given): only the JSON kind is known."""
        name = system.removeprefix(SYSTEM_PREFIX)
        return cls(system, _KIND_OF_SYSTEM.get(name, STRING))

    # -- the check function, specialised once per type ------------------------------------------
    def _build(self) -> Callable[[Any], str | None]:
        name = self.name
        kind = self.json_kind
        regex = re.compile(self.pattern, re.ASCII) if self.pattern else None
        fullmatch = _base64_fullmatch if self.pattern == _BASE64_REGEX else regex.fullmatch if regex else None
        max_length = self.max_length
        calendar_check = self.calendar
        xhtml = self.xhtml
        expected = _KIND_TEXT[kind]
        pattern = self.pattern

        def wrong_kind(value: Any) -> str:
            return f"A {name} must be {expected}, not {describe(value)}"

        def no_match(text: str) -> str:
            shown = text if len(text) <= 60 else text[:57] + "..."
            return f"{shown!r} is not a valid {name} (it must match the regular expression {pattern})"

        if kind == STRING:
            # Values repeat a lot (codes, systems, units…): remember recent short valid ones.
            memo: dict[str, None] = {}

            def check(value: Any) -> str | None:
                if not isinstance(value, str):
                    return wrong_kind(value)
                if value in memo:
                    return None
                if not value:
                    return f"A {name} must not be an empty string: leave the element out instead"
                if max_length is not None and len(value) > max_length:
                    return f"A {name} must not be longer than {max_length} characters (it has {len(value)})"
                if fullmatch is not None and fullmatch(value) is None:
                    return no_match(value)
                if not value.isprintable():  # cheap test first: only then look for forbidden characters
                    bad = _FORBIDDEN_CHAR(value)
                    if bad is not None:
                        return (f"A {name} must not contain the character U+{ord(bad.group()):04X} at "
                                f"position {bad.start()} (control characters other than tab, CR and LF, and "
                                "unpaired surrogates, are not allowed)")
                if calendar_check:
                    message = _check_calendar(value, name)
                    if message is not None:
                        return message
                if xhtml:
                    return _check_xhtml(value)
                if len(value) <= _MEMO_LENGTH:
                    if len(memo) >= _MEMO_SIZE:
                        memo.clear()
                    memo[value] = None
                return None
        elif kind == BOOLEAN:
            def check(value: Any) -> str | None:
                if value is True or value is False:
                    return None
                return wrong_kind(value)
        elif kind == INTEGER:
            def check(value: Any) -> str | None:
                if type(value) is not int and (isinstance(value, bool) or not isinstance(value, int)):
                    return wrong_kind(value)
                if value < INT32_MIN or value > INT32_MAX:
                    return (f"{value} is out of range for a {name} "
                            f"(FHIR integers are 32-bit: {INT32_MIN}..{INT32_MAX})")
                if fullmatch is not None and fullmatch(str(value)) is None:
                    return no_match(str(value)) + ("" if value >= 0 else ": negative values are not allowed")
                return None
        else:  # NUMBER
            def check(value: Any) -> str | None:
                if isinstance(value, bool) or not isinstance(value, (int, float)):
                    return wrong_kind(value)
                text = getattr(value, "text", None)  # the literal, when parsed by fhir_server.jsonio
                if text is None:
                    if isinstance(value, float) and not math.isfinite(value):
                        return f"A {name} must be a finite number, not {value!r}"
                    text = lexical_number(value)
                if fullmatch is not None and fullmatch(text) is None:
                    return no_match(text)
                return None
        return check


def _check_calendar(text: str, name: str) -> str | None:
    """The regex allows day 31 in every month; check the day exists (text already matched)."""
    if len(text) < 10:
        return None
    year, month, day = int(text[0:4]), int(text[5:7]), int(text[8:10])
    if day > 28 and day > calendar.monthrange(year, month)[1]:
        return (f"{text!r} is not a valid {name}: {calendar.month_name[month]} {year} has "
                f"{calendar.monthrange(year, month)[1]} days")
    return None


_UNDEFINED_ENTITY = expat.errors.codes[expat.errors.XML_ERROR_UNDEFINED_ENTITY]


class _XhtmlProblem(Exception):
    pass


def _forbid(what: str) -> Callable[..., None]:
    def handler(*_args: Any) -> None:
        raise _XhtmlProblem(what)
    return handler


def _check_xhtml(text: str) -> str | None:
    """Narrative XHTML: well-formed XML, a `div` root in the XHTML namespace, nothing active."""
    parser = expat.ParserCreate(namespace_separator=" ")
    depth = 0

    def start(tag: str, _attrs: Any) -> None:
        nonlocal depth
        if depth == 0 and tag != XHTML_NS + " div":
            ns, _, local = tag.rpartition(" ")
            where = f" in namespace {ns!r}" if ns else " without namespace"
            raise _XhtmlProblem(f"the root element must be <div xmlns=\"{XHTML_NS}\">, not <{local}>{where}")
        if tag.rpartition(" ")[2].lower() == "script":
            raise _XhtmlProblem("<script> is not allowed in a narrative")
        depth += 1

    parser.StartElementHandler = start
    parser.StartDoctypeDeclHandler = _forbid("a DOCTYPE declaration is not allowed")
    parser.EntityDeclHandler = _forbid("entity declarations are not allowed")
    parser.ProcessingInstructionHandler = _forbid("processing instructions are not allowed")
    try:
        parser.Parse(text, True)
    except _XhtmlProblem as exc:
        return f"Invalid narrative XHTML: {exc}"
    except expat.ExpatError as exc:
        hint = ""
        if exc.code == _UNDEFINED_ENTITY:
            hint = ("; XML knows only &lt; &gt; &amp; &quot; &apos;: write other HTML entities such as "
                    "&nbsp; as characters or numeric references (&#160;)")
        return (f"The narrative is not well-formed XHTML: {expat.ErrorString(exc.code)} at line "
                f"{exc.lineno}, column {exc.offset + 1}{hint}")
    return None
