"""The patients a request concerns, found in the JSON it read or wrote: every Patient resource
and every reference to one. A scan of the serialised bytes, not a walk of the resources, since
it runs once per access on bodies of any size (a searchset, a transaction)."""

from __future__ import annotations

import re
from typing import Any

from fhir_server import jsonio

_ID = rb"([A-Za-z0-9\-.]{1,64})"
# `"reference": "Patient/1"`, `"…/fhir/Patient/1"`, `"Patient/1/_history/2"`
_REFERENCE = re.compile(rb'"reference"\s*:\s*"(?:[^"]*/)?Patient/' + _ID + rb'(?:/_history/[^"]*)?"')
# a Patient resource: the server writes resourceType then id (`resource.stamp`); bodies the
# clients send may have the id elsewhere, so both orders are looked for in one object
_RESOURCE = re.compile(rb'"resourceType"\s*:\s*"Patient"\s*,\s*"id"\s*:\s*"' + _ID + rb'"')
_RESOURCE_ID_FIRST = re.compile(rb'"id"\s*:\s*"' + _ID + rb'"\s*,\s*"resourceType"\s*:\s*"Patient"')
# `Patient/1` in a URL or query: compartments, `subject=Patient/1`
_IN_URL = re.compile(r"(?:^|[/=,|:])Patient/([A-Za-z0-9\-.]{1,64})(?=$|[/?&,|#])")


def patients_in(body: Any) -> set[str]:
    """Ids of the patients a request or response body names (bytes, str or parsed JSON)."""
    if body is None:
        return set()
    if isinstance(body, str):
        data = body.encode()
    elif isinstance(body, (bytes, bytearray, memoryview)):
        data = bytes(body)
    else:
        try:
            data = jsonio.dumps(body)
        except TypeError:
            return set()
    found = {m.decode() for m in _REFERENCE.findall(data)}
    found.update(m.decode() for m in _RESOURCE.findall(data))
    found.update(m.decode() for m in _RESOURCE_ID_FIRST.findall(data))
    return found


def patients_in_url(path: str) -> set[str]:
    """Ids of the patients named in a relative URL and its query."""
    return set(_IN_URL.findall(path))
