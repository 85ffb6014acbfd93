"""UCUM unit codes: a syntactic check only.

The table of UCUM units is not in any loaded package, so whether `mg/dL` names real units
cannot be told here; but a code that does not follow the UCUM grammar (`kg//m`, `(mg`, `m g`)
is certainly not a UCUM code. `syntax_error` says what is wrong, or None when the code parses.

Grammar (UCUM §2): main-term = ["/"] term; term = component {("." | "/") component};
component = "(" term ")" | annotation | factor | simple-unit [exponent] [annotation];
exponent = [+-] digits; annotation = "{" printable ASCII but braces "}"; a simple unit is a
run of printable ASCII outside `./(){}`, where square brackets pair up (`mm[Hg]`, `[in_i]`).
"""

from __future__ import annotations

import re

SYSTEM = "http://unitsofmeasure.org"
_EXPONENT = re.compile(r"^(.*?)([+-]?\d+)$")
_STOP = set("./(){}")
_BRACKETED = re.compile(r"\[[^\]]*\]")


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
            self.pos += 1
            self.term()
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
