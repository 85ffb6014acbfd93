"""Codes behind the token modifiers `:in`, `:not-in`, `:below`, `:above`, from the server's
`Terminology` (ValueSets and CodeSystems of the loaded packages, or stored on this server).

What cannot be expanded here (a code system we do not hold, an unknown filter) is a 400 that
says so: a search must not silently match nothing.
"""

from __future__ import annotations

from fhir_server.terminology import TerminologyError

MAX_CODES = 10000  # codes of one :in value set turned into index keys


def codes_for(definitions, modifier: str, value: str, ctx) -> set[str]:
    """Token keys (`system|code`, or `code` for a code without system) for one modifier value.
    (`definitions` is unused: kept for the caller's signature.)"""
    terminology = ctx.server.terminology
    try:
        if modifier in ("in", "not-in"):
            if terminology.valueset(value) is None:
                raise ctx.error(f":{modifier} {value!r}: no ValueSet with this URL is known here")
            entries = terminology.entries(value)
            if len(entries) > MAX_CODES:
                raise ctx.error(f":{modifier} {value!r}: the value set has {len(entries)} codes, more than the "
                                f"{MAX_CODES} a search takes")
            return {f"{e.system}|{e.code}" if e.system else e.code for e in entries}
        system, bar, code = value.partition("|")
        if not bar or not system or not code:
            raise ctx.error(f":{modifier} needs system|code, got {value!r}")
        return {f"{system}|{c}" for c in terminology.hierarchy(system, code, modifier)}
    except TerminologyError as exc:
        raise ctx.error(f":{modifier} {value!r}: {exc}") from exc
