"""token: codes, identifiers, booleans — `[system]|[code]`, `code`, `|code`, `system|`.

Stored keys are flat strings, one multikey index answers every form: a Coding `s#c` gives
`c`, `s|c` and `s|`; a code with no system gives `c` and `|c`. `:text` uses the folded
display/text (`<code>:text`), `:of-type` the identifier type keys (`<code>:of-type`).
"""

from __future__ import annotations

import re
from decimal import Decimal
from typing import Any

from fhir_server.search.terms import EXACT, PREFIX, SCAN, Term, values
from fhir_server.text import fold

_BAR = re.compile(r"(?<!\\)\|")


def keys_of(value: Any) -> list[str]:
    """Index keys of one value: Coding, CodeableConcept, Identifier, ContactPoint, code, boolean."""
    if isinstance(value, bool):
        return ["true" if value else "false"]
    if isinstance(value, str):
        return [value, f"|{value}"]
    if isinstance(value, (int, float, Decimal)):
        return [str(value)]
    if not isinstance(value, dict):
        return []
    if "coding" in value or ("text" in value and "code" not in value and "value" not in value):
        return [k for coding in value.get("coding") or () for k in keys_of(coding)]
    code = value.get("code", value.get("value"))
    system = value.get("system")
    out = []
    if isinstance(code, (str, bool)):
        code = code if isinstance(code, str) else ("true" if code else "false")
        out += [code, f"{system}|{code}" if system else f"|{code}"]
    if isinstance(system, str):
        out.append(f"{system}|")
    return out


def _texts(value: Any) -> list[str]:
    if not isinstance(value, dict):
        return []
    out = []
    for key in ("text", "display"):
        if isinstance(value.get(key), str):
            out.append(fold(value[key]))
    for coding in value.get("coding") or ():
        if isinstance(coding, dict) and isinstance(coding.get("display"), str):
            out.append(fold(coding["display"]))
    type_ = value.get("type")
    if isinstance(type_, dict) and isinstance(type_.get("text"), str):  # Identifier.type.text
        out.append(fold(type_["text"]))
    return out


def _of_type(value: Any) -> list[str]:
    if not isinstance(value, dict) or not isinstance(value.get("type"), dict) or "value" not in value:
        return []
    return [f"{c.get('system', '')}|{c.get('code', '')}|{value['value']}"
            for c in value["type"].get("coding") or () if isinstance(c, dict)]


def index(code: str, items: list[tuple[Any, str | None]], implied_system: str | None = None) -> dict[str, list[Any]]:
    """`implied_system`: the code system of plain codes (from the element's required binding)."""
    keys, texts, types = set(), set(), set()
    for value, _ in items:
        keys.update(keys_of(value))
        if implied_system and isinstance(value, str):
            keys.update((f"{implied_system}|{value}", f"{implied_system}|"))
        texts.update(_texts(value))
        types.update(_of_type(value))
    out: dict[str, list[Any]] = {}
    if keys:
        out[code] = sorted(keys)
    if texts:
        out[f"{code}:text"] = sorted(texts)
    if types:
        out[f"{code}:of-type"] = sorted(types)
    return out


def unescape(text: str) -> str:
    return text.replace("\\,", ",").replace("\\|", "|").replace("\\$", "$").replace("\\\\", "\\")


def query_keys(text: str) -> list[str]:
    """`s|c` → [`s|c`], `|c` → [`|c`], `s|` → [`s|`], `c` → [`c`]."""
    parts = _BAR.split(text, maxsplit=1)
    if len(parts) == 1:
        return [unescape(text)]
    system, code = unescape(parts[0]), unescape(parts[1])
    if not system:
        return [f"|{code}"]
    return [f"{system}|{code}" if code else f"{system}|"]


def term(code: str, modifier: str | None, texts: list[str], ctx) -> Term:
    """A term for one parameter occurrence (`texts` are the comma-separated alternatives)."""
    if modifier == "text":
        folded = [fold(unescape(t)) for t in texts]
        return prefix_term(f"{code}:text", folded)
    if modifier == "of-type":  # driven by the identifier value's key, then the type is checked
        wanted, plain = set(), set()
        for t in texts:
            parts = [unescape(p) for p in _BAR.split(t)]
            if len(parts) != 3:
                raise ctx.error(f"{code}:of-type needs system|code|value, got {t!r}")
            wanted.add("|".join(parts))
            plain.add(parts[2])
        return Term(f"{code}", sorted(plain),
                    lambda doc: any(v in wanted for v in values(doc, f"{code}:of-type")), EXACT)
    if modifier in ("in", "not-in", "above", "below"):
        wanted = set()
        for t in texts:
            wanted.update(ctx.codes_for(modifier, unescape(t) if modifier in ("in", "not-in") else t))
        if modifier == "not-in":
            return Term(None, [], lambda doc: not any(k in wanted for k in values(doc, code)), SCAN)
        return keys_term(code, wanted)
    keys = {k for t in texts for k in query_keys(t)}
    if modifier == "not":
        return Term(None, [], lambda doc: not any(k in keys for k in values(doc, code)), SCAN)
    if modifier is not None:
        raise ctx.unsupported_modifier(code, modifier)
    return keys_term(code, keys)


def keys_term(code: str, keys: set[str]) -> Term:
    """Any of these exact keys in `ix.<code>`."""
    return Term(f"{code}", sorted(keys), lambda doc: any(k in keys for k in values(doc, code)), EXACT)


def prefix_term(code: str, prefixes: list[str]) -> Term:
    """Any stored value of `ix.<code>` starting with one of the prefixes."""
    conditions = [{"$gte": p, "$lt": p + "\U0010ffff"} for p in prefixes]

    def match(doc) -> bool:
        return any(v.startswith(p) for v in values(doc, code) for p in prefixes)

    return Term(f"{code}", conditions, match, PREFIX)
