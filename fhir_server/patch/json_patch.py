"""JSON Patch (RFC 6902, `application/json-patch+json`), applied with the `jsonpatch` library.

The operations apply one at a time, in place on one copy of the resource, so that what each
writes is measured before it is done (`limits.py`): a `copy` that would grow the resource past
the limit is refused, not performed. A failure anywhere leaves the caller's resource untouched.
"""

from __future__ import annotations

import copy
from typing import Any

import jsonpatch
import jsonpointer

from fhir_server.errors import FhirError, Issue
from fhir_server.patch.limits import Limits, Size, check_count, size_of

_MISSING = object()
_NEEDS = {"add": ("value",), "replace": ("value",), "copy": ("from",)}
_SHOWN = 200  # characters of a library message (some quote the whole document)


def apply(resource: dict[str, Any], operations: Any, limits: Limits = Limits(),
          start_size: int | None = None) -> dict[str, Any]:
    """The patched copy of `resource`; `start_size`: its stored JSON's length (estimated if None)."""
    if not isinstance(operations, list):
        raise FhirError(400, Issue("error", "invalid", "a JSON Patch body is a JSON array of operations"))
    check_count(len(operations), limits)
    size = Size(size_of(resource) if start_size is None else start_size, limits)
    document: Any = copy.deepcopy(resource)
    for number, operation in enumerate(operations):
        document = _apply_one(document, operation, number, size)
    return document


def _apply_one(document: Any, operation: Any, number: int, size: Size) -> Any:
    try:
        patch = jsonpatch.JsonPatch([operation])
        added, removed = _growth(document, operation, size)
        size.grow(added, removed, number, str(operation.get("op")))
        return patch.apply(document, in_place=True)
    except jsonpatch.JsonPatchTestFailed as exc:
        raise _failed(422, "processing", number, f"test failed: {exc}") from None
    except jsonpointer.JsonPointerException as exc:
        if "start with" in str(exc):  # not a JSON Pointer at all: the document is wrong
            raise _failed(400, "invalid", number, f"not a valid JSON Patch: {exc}") from None
        raise _failed(422, "processing", number, f"cannot be applied: {exc}") from None
    except jsonpatch.JsonPatchConflict as exc:
        raise _failed(422, "processing", number, f"cannot be applied: {exc}") from None
    except RecursionError:
        raise _failed(400, "too-costly", number, "the JSON Patch is nested too deeply") from None
    except (jsonpatch.InvalidJsonPatch, TypeError, AttributeError, KeyError) as exc:
        raise _failed(400, "invalid", number, f"not a valid JSON Patch: {exc}") from None


def _failed(status: int, code: str, number: int, text: str) -> FhirError:
    if len(text) > _SHOWN:
        text = text[:_SHOWN] + "…"
    return FhirError(status, Issue("error", code, f"JSON Patch operation {number}: {text}"))


def _growth(document: Any, operation: dict[str, Any], size: Size) -> tuple[int, int]:
    """(bytes written, bytes removed) by one well-formed operation, measured before it runs; what
    it writes is measured only up to the room left (beyond, it is refused anyway)."""
    kind = operation["op"]
    if any(key not in operation for key in _NEEDS.get(kind, ())):
        return 0, 0  # the library says what is missing
    if kind in ("add", "replace"):
        old = _at(document, operation["path"])
        replaced = old is not _MISSING and (kind == "replace" or not _into_list(document, operation["path"]))
        return size_of(operation["value"], size.room()), size_of(old) if replaced else 0
    if kind == "copy":
        source = _at(document, operation["from"])
        return (0 if source is _MISSING else size_of(source, size.room())), 0
    if kind == "remove":
        old = _at(document, operation["path"])
        return 0, 0 if old is _MISSING else size_of(old)
    return 0, 0  # move and test write nothing new


def _at(document: Any, pointer: str) -> Any:
    try:
        found = jsonpointer.resolve_pointer(document, pointer, _MISSING)
    except (jsonpointer.JsonPointerException, TypeError, KeyError, IndexError):
        return _MISSING
    return _MISSING if isinstance(found, jsonpointer.EndOfList) else found


def _into_list(document: Any, pointer: str) -> bool:
    """`add` at an array index inserts (nothing is replaced); at an object member it replaces."""
    parent, _, _ = pointer.rpartition("/")
    return isinstance(_at(document, parent), list)
