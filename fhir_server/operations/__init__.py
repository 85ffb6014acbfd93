"""FHIR operations (`$name`), one module each, gathered in one table like the interactions.

The HTTP router dispatches `[base]/$op`, `[base]/[type]/$op` and `[base]/[type]/[id]/$op`
through this table, and the CapabilityStatement lists what it holds.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

from fhir_server.operations import apply, everything, reindex, validate
from fhir_server.operations import expand as expand_op
from fhir_server.operations import lookup as lookup_op
from fhir_server.operations import validate_code as validate_code_op


@dataclass(frozen=True)
class Operation:
    name: str  # without the $
    levels: tuple[str, ...]  # system | type | instance
    methods: tuple[str, ...]
    handler: Callable
    definition: str | None = None  # canonical URL of its OperationDefinition, when one exists
    types: tuple[str, ...] = ()  # resource types it applies to at type/instance level (empty: all)


OPERATIONS: tuple[Operation, ...] = (
    Operation("reindex", ("system", "type"), ("GET", "POST"), reindex.reindex),
    Operation("validate", ("type", "instance"), ("GET", "POST"), validate.validate,
              "http://hl7.org/fhir/OperationDefinition/Resource-validate"),
    Operation("everything", ("instance",), ("GET", "POST"), everything.everything,
              "http://hl7.org/fhir/OperationDefinition/Patient-everything", ("Patient",)),
    Operation("apply", ("instance",), ("GET", "POST"), apply.apply,
              "http://hl7.org/fhir/OperationDefinition/PlanDefinition-apply", ("PlanDefinition",)),
    Operation("expand", ("type", "instance"), ("GET", "POST"), expand_op.expand, expand_op.DEFINITION, ("ValueSet",)),
    Operation("validate-code", ("type", "instance"), ("GET", "POST"), validate_code_op.valueset_validate_code,
              validate_code_op.VALUESET_DEFINITION, ("ValueSet",)),
    Operation("validate-code", ("type", "instance"), ("GET", "POST"), validate_code_op.codesystem_validate_code,
              validate_code_op.CODESYSTEM_DEFINITION, ("CodeSystem",)),
    Operation("lookup", ("type",), ("GET", "POST"), lookup_op.lookup, lookup_op.LOOKUP_DEFINITION, ("CodeSystem",)),
    Operation("subsumes", ("type", "instance"), ("GET", "POST"), lookup_op.subsumes, lookup_op.SUBSUMES_DEFINITION,
              ("CodeSystem",)),
)


def find(name: str, level: str, type_: str | None = None) -> Operation | None:
    for op in OPERATIONS:
        if op.name == name and level in op.levels and (not op.types or type_ in op.types or type_ is None):
            return op
    return None
