"""UCUM unit codes: their syntax, and their conversion to canonical units for quantity search.

`syntax_error(code)` says what is wrong with a code that does not follow the UCUM grammar
(`kg//m`, `(mg`, `m g`), or None when it parses; it needs no unit table.

`canonical(value, code)` turns a value in a UCUM unit into its value in the SI base units of
that unit's dimension, with a key naming that dimension: 5.4 mg and 5400 ug both become
(5.4e-06, "kilogram"), 37 Cel and 98.6 [degF] both about 310.15 kelvin. The unit table is
UCUM's own `ucum-essence.xml`, read at run time by `ucumvert` (which ships it) into a `pint`
registry on first use (under a second), one conversion cached per unit code. Values are
rounded to 12 significant digits so that the same quantity written in two units gives the
same number. A code that cannot be converted (an unknown unit, or one with an arbitrary unit
such as `[iU]`, which UCUM makes comparable with nothing else, or one too long or with a number
of four digits or more, which the library takes ages over) gives None: it is then only
compared as written.

Grammar (UCUM §2): main-term = ["/"] term; term = component {("." | "/") component};
component = "(" term ")" | annotation | factor | simple-unit [exponent] [annotation];
exponent = [+-] digits; annotation = "{" printable ASCII but braces "}"; a simple unit is a
run of printable ASCII outside `./(){}`, where square brackets pair up (`mm[Hg]`, `[in_i]`).
Parentheses nest at most `MAX_NESTING` deep (real units use one or two levels): the parser
recurses, and a unit is a client's text.
"""

from __future__ import annotations

import functools
import logging
import re
import threading
from typing import Any

log = logging.getLogger(__name__)

SYSTEM = "http://unitsofmeasure.org"
_EXPONENT = re.compile(r"^(.*?)([+-]?\d+)$")
_STOP = set("./(){}")
_BRACKETED = re.compile(r"\[[^\]]*\]")
MAX_NESTING = 20
_ANNOTATION = re.compile(r"\{[^}]*\}")
_LONG_NUMBER = re.compile(r"\d{4,}")
MAX_CONVERTED = 64  # characters of a unit, annotations aside, that conversion reads


_registry: Any = None
_arbitrary: tuple[str, ...] = ()
_registry_lock = threading.Lock()
_ARBITRARY = re.compile(r'\sCode="([^"]+)"[^>]*\sisArbitrary="yes"')


def _units() -> Any:
    """The UCUM registry (built once); False when it cannot be built. Also reads which units
    UCUM calls arbitrary (`[iU]`, `[arb'U]`…): they compare with nothing but themselves."""
    global _registry, _arbitrary
    with _registry_lock:
        if _registry is None:
            try:
                from importlib.resources import files

                from ucumvert import PintUcumRegistry

                essence = (files("ucumvert") / "vendor" / "ucum-essence.xml").read_text(encoding="utf-8")
                _arbitrary = tuple(_ARBITRARY.findall(essence))
                _registry = PintUcumRegistry()
            except Exception as exc:  # noqa: BLE001 — without it, quantities are compared as written
                log.warning("UCUM units cannot be converted (%s): quantities are compared as written", exc)
                _registry = False
        return _registry


@functools.lru_cache(maxsize=4096)
def converter(code: str) -> tuple[float, float, str] | None:
    """(scale, offset, canonical unit) with canonical value = scale × value + offset, or None."""
    if not isinstance(code, str) or syntax_error(code) is not None or not _convertible(code):
        return None
    registry = _units()
    if not registry or any(atom in code for atom in _arbitrary):
        return None
    try:
        with _registry_lock:  # pint registries are not documented as thread-safe
            unit = registry.from_ucum(code)
            zero = registry.Quantity(0 * unit.magnitude, unit.units).to_base_units()
            one = registry.Quantity(1 * unit.magnitude, unit.units).to_base_units()
        scale = float(one.magnitude) - float(zero.magnitude)
        if not scale > 0:
            return None
        return scale, float(zero.magnitude), str(one.units)
    except Exception:  # noqa: BLE001 — whatever the library cannot read stays as written
        return None


def _convertible(code: str) -> bool:
    """Short, and no number of four digits or more: the unit library computes `10*999999999`
    as an integer power (it never ends) and slows down with the length of a unit."""
    bare = _ANNOTATION.sub("", code)
    return len(bare) <= MAX_CONVERTED and _LONG_NUMBER.search(bare) is None


def canonical(value: float, code: str) -> tuple[float, str] | None:
    """(value in canonical units, canonical unit), or None when `code` cannot be converted."""
    found = converter(code)
    if found is None:
        return None
    scale, offset, unit = found
    return float(f"{scale * value + offset:.12g}"), unit  # (infinities pass through)


def syntax_error(code: str) -> str | None:
    if not code:
        return "an empty unit"
    bad = next((ch for ch in code if not 33 <= ord(ch) <= 126), None)
    if bad is not None:
        return f"{bad!r} cannot appear in a UCUM code"
    parser = _Parser(code)
    try:
        if code.startswith("/"):
            parser.pos = 1
        parser.term()
        if parser.pos != len(code):
            raise ValueError(f"unexpected {code[parser.pos]!r} at {parser.pos + 1}")
    except ValueError as exc:
        return str(exc)
    return None


class _Parser:
    def __init__(self, text: str):
        self.text = text
        self.pos = 0
        self.depth = 0

    def _peek(self) -> str:
        return self.text[self.pos] if self.pos < len(self.text) else ""

    def term(self) -> None:
        self.component()
        while self._peek() in (".", "/") and self._peek():
            self.pos += 1
            self.component()

    def component(self) -> None:
        ch = self._peek()
        if ch == "(":
            self.depth += 1
            if self.depth > MAX_NESTING:
                raise ValueError(f"parentheses nest more than {MAX_NESTING} deep at {self.pos + 1}")
            self.pos += 1
            self.term()
            self.depth -= 1
            if self._peek() != ")":
                raise ValueError(f"a '(' at {self.pos} is not closed")
            self.pos += 1
            return
        if ch == "{":
            self.annotation()
            return
        start = self.pos
        while self._peek() and self._peek() not in _STOP:
            if self._peek() == "[":
                end = self.text.find("]", self.pos + 1)
                if end < 0 or "[" in self.text[self.pos + 1:end]:
                    raise ValueError(f"a '[' at {self.pos + 1} is not closed")
                self.pos = end + 1
            elif self._peek() == "]":
                raise ValueError(f"a ']' at {self.pos + 1} closes nothing")
            else:
                self.pos += 1
        unit = self.text[start:self.pos]
        if not unit:
            raise ValueError(f"a unit is missing at {start + 1}")
        if not unit.isdigit():
            match = _EXPONENT.match(unit)
            atom = match.group(1) if match else unit
            outside = _BRACKETED.sub("", atom)
            if not atom or "+" in outside or "-" in outside:
                raise ValueError(f"{unit!r} is not a unit with an exponent")
        if self._peek() == "{":
            self.annotation()

    def annotation(self) -> None:
        end = self.text.find("}", self.pos + 1)
        if end < 0 or "{" in self.text[self.pos + 1:end]:
            raise ValueError(f"a '{{' at {self.pos + 1} is not closed")
        self.pos = end + 1
