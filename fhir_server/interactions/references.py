"""Reference rewriting in a transaction: references to other entries (`urn:uuid:…`, their
fullUrl, or a relative URL resolved against an entry's fullUrl) become the `Type/id` the server
assigns, and conditional references (`Patient?identifier=…`) the one resource they match.

Pure: the conditional references are resolved by a function the caller hands in (a search in
the transaction's snapshot), so the rules here are tested without a database.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from typing import Any

from fhir_server.errors import bad_request

_CONDITIONAL_REF = re.compile(r"^[A-Z][A-Za-z]+\?")
_RESTFUL = re.compile(r"^(?P<base>.+)/[A-Z][A-Za-z]+/[A-Za-z0-9\-.]{1,64}$")


def base_of(full_url: str | None) -> str | None:
    """`http://x/fhir/Patient/1` → `http://x/fhir`: relative references in that entry are
    relative to it (R4 bundle.html#references)."""
    match = _RESTFUL.match(full_url or "")
    return match["base"] if match and "://" in full_url else None


def rewrite(value: Any, ids: dict[str, str], base: str | None, conditional: Callable[[str], str]) -> Any:
    """Every `reference` (nested, in extensions, in contained resources) to a bundle entry or a
    conditional reference, replaced by the resource's `Type/id`; `ids` maps fullUrls (and
    absolute URLs of what the bundle writes) to `Type/id`."""
    if isinstance(value, list):
        return [rewrite(v, ids, base, conditional) for v in value]
    if not isinstance(value, dict):
        return value
    out = {k: rewrite(v, ids, base, conditional) for k, v in value.items()}
    ref = out.get("reference")
    if isinstance(ref, str):
        if ref in ids:
            out["reference"] = ids[ref]
        elif base and f"{base}/{ref}" in ids:
            out["reference"] = ids[f"{base}/{ref}"]
        elif _CONDITIONAL_REF.match(ref):
            out["reference"] = conditional(ref)
        elif ref.startswith(("urn:uuid:", "urn:oid:")):
            raise bad_request(f"the reference {ref!r} names no entry of this transaction", code="not-found")
    return out
