"""Invariants: `ElementDefinition.constraint.expression` (FHIRPath) evaluated with fhirpathpy.

Each expression is parsed once (cache per expression text, shared by every profile) and
evaluated on the element it is attached to, typed for fhirpathpy (`Period`, `Patient.contact`,
so that choices such as `value` resolve), with `%resource` (the resource holding the element),
`%rootResource` (its container, for a contained resource) and `%ucum` set.

A constraint fails only when the expression evaluates to exactly `false`; an empty result
(e.g. comparing dates of different precision) is not a failure. Severity `error` gives an
error, `warning` a warning (best-practice invariants are warnings in R4).

Not evaluated (`skip_reason` says why): expressions calling a function fhirpathpy does not
implement (`resolve()`, `htmlChecks()`, `conformsTo()`, `memberOf()`…) or testing FHIR values
against an unqualified System type (see `invariant_rewrites`); `ele-1` and `ext-1`, checked on
the JSON by `invariant_scan.scan`.

An ordering comparison fhirpathpy cannot make (Quantities without UCUM units: rng-2,
`low <= high`) is "incomparable", i.e. empty, as FHIRPath says.

Speed (this runs on every write): see `invariant_plan` (short-circuits, operands evaluated once
per type), `invariant_native` (the commonest operands evaluated on the JSON) and
`invariant_hoisting` (loop-invariant parts computed once). `Invariants(cross_check=True)`
(tests) evaluates every invariant both ways as well and records any disagreement with
fhirpathpy on the whole expression.

An expression that raises inside fhirpathpy is reported as an `information` issue (the
invariant could not be checked), never as an error.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable
from typing import Any

from fhirpathpy import apply_parsed_path
from fhirpathpy.engine.nodes import ResourceNode
from fhirpathpy.parser import parse

from fhir_server.errors import Issue
from fhir_server.validation.invariant_fhirpath import OPTIONS, R4_MODEL, SUPPORTED_FUNCTIONS
from fhir_server.validation.invariant_hoisting import Hoisted
from fhir_server.validation.invariant_plan import make_plan, run_plan
from fhir_server.validation.invariant_rewrites import as_to_of_type, functions_called, system_type_tests
from fhir_server.validation.profile_model import NATIVE_KEYS

log = logging.getLogger(__name__)


def _whole(tree: dict[str, Any]) -> Callable[[Any, dict[str, Any]], list[Any]]:
    def evaluate(node: Any, variables: dict[str, Any]) -> list[Any]:
        return apply_parsed_path(node, tree, dict(variables), R4_MODEL, OPTIONS)
    return evaluate


def _whole_hoisted(tree: dict[str, Any]) -> Callable[[Any, dict[str, Any]], list[Any]]:
    return Hoisted(tree).apply


class Compiled:
    """One expression: how to evaluate it, or why it is not evaluated."""

    __slots__ = ("fn", "plain", "plan", "skip")

    def __init__(self, fn: Callable[..., list[Any]] | None, skip: str | None, plan: Any = None,
                 plain: Callable[..., list[Any]] | None = None):
        self.fn = fn
        self.skip = skip
        self.plan = plan
        self.plain = plain

    def failed(self, value: Any, extra: Any, type_path: str, variables: dict[str, Any]) -> bool:
        """Does the expression evaluate to false on this value? (Exceptions propagate.)"""
        if isinstance(value, dict) and "resourceType" in value:
            node: Any = value
        else:
            node = ResourceNode.create_node(value, type_path, extra)
        outcome = run_plan(self.plan, value, node, variables, type_path)
        if outcome == "?":
            return self.fn(node, variables) == [False]  # type: ignore[misc]
        return outcome is False

    def failed_plainly(self, value: Any, extra: Any, type_path: str, variables: dict[str, Any]) -> bool:
        """The same question answered by fhirpathpy alone on the whole expression (for tests)."""
        if isinstance(value, dict) and "resourceType" in value:
            node: Any = value
        else:
            node = ResourceNode.create_node(value, type_path, extra)
        return self.plain(node, variables) == [False]  # type: ignore[misc]


class Invariants:
    """Compiles and evaluates constraints; one instance per validator (thread-safe cache)."""

    def __init__(self, cross_check: bool = False) -> None:
        self._compiled: dict[str, Compiled] = {}
        self._lock = threading.Lock()
        # tests: evaluate every invariant both ways (short-circuits and direct evaluation, and
        # fhirpathpy on the whole expression) and record any disagreement
        self.cross_check = cross_check
        self.disagreements: list[tuple[str, str, bool, bool]] = []

    def compiled(self, expression: str) -> Compiled:
        found = self._compiled.get(expression)
        if found is not None:
            return found
        try:
            tree = parse(expression)
        except Exception as exc:  # noqa: BLE001 — fhirpathpy's parser raises plain Exceptions
            found = Compiled(None, f"fhirpathpy cannot parse it ({exc})")
        else:
            used: set[str] = set()
            functions_called(tree, used)
            missing = sorted(used - SUPPORTED_FUNCTIONS)
            system_types: set[str] = set()
            system_type_tests(tree, system_types)
            if missing:
                found = Compiled(None, "uses " + ", ".join(f"{m}()" for m in missing)
                                 + ", which the FHIRPath engine (fhirpathpy) does not provide")
            elif system_types:
                found = Compiled(None, "tests FHIR values against the System type "
                                 + ", ".join(sorted(system_types)) + ", which fhirpathpy answers false for FHIR "
                                 "primitives (the reference engine answers true)")
            else:
                as_to_of_type(tree)
                found = Compiled(_whole_hoisted(tree), None, make_plan(tree["children"][0]), _whole(tree))
        with self._lock:
            self._compiled.setdefault(expression, found)
        return found

    def skip_reason(self, constraint: dict[str, Any]) -> str | None:
        if constraint.get("key") in NATIVE_KEYS:
            return "checked natively by invariants.scan"
        return self.compiled(constraint["expression"]).skip

    def check(self, constraint: dict[str, Any], value: Any, extra: Any, type_path: str,
              resource: dict[str, Any], root: dict[str, Any], expression: str, issues: list[Issue]) -> None:
        """Evaluate one constraint on one element value; append an issue when it fails."""
        compiled = self.compiled(constraint["expression"])
        if compiled.fn is None:
            return
        try:
            variables = {"resource": resource, "rootResource": root}
            failed = compiled.failed(value, extra, type_path, variables)
            if self.cross_check:
                plain = compiled.failed_plainly(value, extra, type_path, variables)
                if plain != failed:
                    self.disagreements.append((constraint.get("key") or "?", expression, failed, plain))
        except Exception as exc:  # noqa: BLE001 — an engine failure must never fail the resource
            log.debug("invariant %s failed to evaluate at %s: %r", constraint.get("key"), expression, exc)
            issues.append(Issue("information", "informational",
                                f"Invariant {constraint.get('key')} could not be checked at {expression}: "
                                f"the FHIRPath engine failed ({type(exc).__name__}: {str(exc)[:120]})",
                                [expression]))
            return
        if failed:
            severity = "warning" if constraint.get("severity") == "warning" else "error"
            human = constraint.get("human") or constraint["expression"]
            issues.append(Issue(severity, "invariant",
                                f"Constraint {constraint.get('key')} failed: {human} "
                                f"[{constraint['expression']}]", [expression]))
