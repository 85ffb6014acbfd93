"""What one PATCH may cost: how many operations, and how large the resource may grow.

A patch body is small, but its operations can multiply what they touch: JSON Patch `copy` of an
array into itself doubles it, so 22 operations (1 KB) made a resource of a gigabyte. The size is
therefore followed while the operations apply, each one adding an estimate of what it writes,
measured *before* it is written, so the operation that would cross the limit is refused without
ever being done. The limit is the largest resource a client could PUT (FHIR_MAX_BODY_BYTES).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from fhir_server import budget
from fhir_server.errors import FhirError, Issue


@dataclass(frozen=True)
class Limits:
    """`operations`: FHIR_MAX_PATCH_OPERATIONS; `size`: FHIR_MAX_BODY_BYTES."""

    operations: int = 1000
    size: int = 16 * 1024 * 1024


def check_count(count: int, limits: Limits) -> None:
    """413 when the patch holds more operations than FHIR_MAX_PATCH_OPERATIONS."""
    if count > limits.operations:
        raise FhirError(413, Issue("error", "too-costly", (
            f"the patch has {count} operations; this server applies at most {limits.operations} in one PATCH "
            f"(FHIR_MAX_PATCH_OPERATIONS): split it into several PATCH requests, or PUT the whole resource")))


def size_of(value: Any, cap: int | None = None) -> int:
    """About how many bytes `value` takes as JSON; the walk stops once past `cap` (the caller only
    needs to know it is too large). Iterative: a deeply nested value cannot exhaust the stack."""
    total, stack = 0, [value]
    while stack:
        item = stack.pop()
        if isinstance(item, str):
            total += len(item) + 2
        elif isinstance(item, dict):
            total += 1 + len(item) * 4 + sum(len(k) for k in item)  # braces, quotes, colons, commas
            stack.extend(item.values())
        elif isinstance(item, list):
            total += 1 + len(item)
            stack.extend(item)
        else:
            total += len(getattr(item, "text", "")) or 6  # a decimal's literal, or a short number/true/null
        if cap is not None and total > cap:
            return total
    return total


class Size:
    """The resource's size while a patch applies: starts at the stored JSON's length, each
    operation adds what it writes and takes off what it removes."""

    def __init__(self, start: int, limits: Limits):
        self.current = start
        self.limits = limits

    def room(self) -> int:
        """Bytes the next operation may still add (the `cap` of `size_of`)."""
        return max(0, self.limits.size - self.current)

    def grow(self, added: int, removed: int, number: int, what: str) -> None:
        """Account for operation `number` before it is done: 422 if it would cross the limit."""
        budget.check()
        if self.current + added - removed > self.limits.size:
            raise FhirError(422, Issue("error", "too-costly", (
                f"operation {number} ({what}) would make the resource larger than {self.limits.size} bytes, the "
                f"largest this server stores (FHIR_MAX_BODY_BYTES); nothing was changed. Patch with fewer or "
                f"smaller copies and additions, or PUT the resource")))
        self.current += added - removed
