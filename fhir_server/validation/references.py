"""Reference targets: the type of resource a `Reference` points to, checked against the types
its element allows (`type.targetProfile`).

The target type is read, without fetching anything, from:
* `Reference.reference`: `Type/id`, `Type/id/_history/v`, an absolute URL ending so;
  `#id` → the contained resource with that id; `urn:uuid:`/`urn:oid:` → the entry of the
  enclosing Bundle with that `fullUrl`;
* otherwise `Reference.type` (a resource type, or the URL of its definition).
A reference whose target type cannot be told (a logical reference by identifier only, an
external URL of another shape, a urn not in the Bundle) is not checked.

`local_target` finds the target itself when it is in the same resource or Bundle (contained,
or an entry by `fullUrl`), so that its conformance to a target *profile* can be checked; a
target stored on the server or elsewhere is not fetched.
"""

from __future__ import annotations

import re
from typing import Any

from fhir_server.definitions.registry import FHIR_BASE

_RELATIVE = re.compile(r"(?:^|/)([A-Z][A-Za-z]+)/[A-Za-z0-9\-.]{1,64}(?:/_history/[A-Za-z0-9\-.]{1,64})?$")


def local_target(reference: dict[str, Any], context: Any) -> dict[str, Any] | None:
    """The resource a Reference points to when it is contained or an entry of the Bundle."""
    ref = reference.get("reference")
    if not isinstance(ref, str) or not ref:
        return None
    if ref.startswith("#"):
        return next((c for c in context.contained() if isinstance(c, dict) and c.get("id") == ref[1:]), None)
    return context.bundle_resource(ref)


def target_type(reference: dict[str, Any], context: Any, is_resource_type) -> str | None:
    """The resource type a Reference points to, when it can be told locally."""
    ref = reference.get("reference")
    if isinstance(ref, str) and ref:
        if ref.startswith("#"):
            for contained in context.contained():
                if isinstance(contained, dict) and contained.get("id") == ref[1:]:
                    return contained.get("resourceType")
            return None
        if ref.startswith(("urn:uuid:", "urn:oid:")):
            return context.bundle_type(ref)
        match = _RELATIVE.search(ref.split("?", 1)[0])
        if match and is_resource_type(match.group(1)):
            return match.group(1)
        if "?" in ref:  # a conditional reference (transactions): Type?query
            head = ref.split("?", 1)[0].rsplit("/", 1)[-1]
            if is_resource_type(head):
                return head
        found = context.bundle_type(ref)
        if found:
            return found
        return None
    declared = reference.get("type")
    if isinstance(declared, str):
        name = declared[len(FHIR_BASE):] if declared.startswith(FHIR_BASE) else declared
        return name if is_resource_type(name) else None
    return None
