"""JSON Patch (RFC 6902, `application/json-patch+json`), applied with the `jsonpatch` library."""

from __future__ import annotations

import copy
from typing import Any

import jsonpatch
import jsonpointer

from fhir_server.errors import FhirError, Issue


def apply(resource: dict[str, Any], operations: Any) -> dict[str, Any]:
    if not isinstance(operations, list):
        raise FhirError(400, Issue("error", "invalid", "a JSON Patch body is a JSON array of operations"))
    try:
        patch = jsonpatch.JsonPatch(operations)
        return patch.apply(copy.deepcopy(resource))
    except jsonpatch.JsonPatchTestFailed as exc:
        raise FhirError(422, Issue("error", "processing", f"JSON Patch test failed: {exc}")) from None
    except jsonpointer.JsonPointerException as exc:
        if "start with" in str(exc):  # not a JSON Pointer at all: the document is wrong
            raise FhirError(400, Issue("error", "invalid", f"not a valid JSON Patch: {exc}")) from None
        raise FhirError(422, Issue("error", "processing", f"JSON Patch cannot be applied: {exc}")) from None
    except jsonpatch.JsonPatchConflict as exc:
        raise FhirError(422, Issue("error", "processing", f"JSON Patch cannot be applied: {exc}")) from None
    except RecursionError:
        raise FhirError(400, Issue("error", "too-costly", "the JSON Patch is nested too deeply")) from None
    except (jsonpatch.InvalidJsonPatch, TypeError, AttributeError, KeyError) as exc:
        raise FhirError(400, Issue("error", "invalid", f"not a valid JSON Patch: {exc}")) from None
