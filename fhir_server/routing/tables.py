"""The interactions and operations the server implements, as two tables.

The router dispatches through them (HTTP requests and bundle entries alike) and the
CapabilityStatement is generated from them, so the server cannot claim what it does not route,
nor route what it does not declare.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING

from fhir_server.interactions import bundle, create, delete, history, patch, read, search, update
from fhir_server.interactions.request import FhirRequest, FhirResponse
from fhir_server.operations import apply, everything, expand, lookup, mark_read, match, reindex, validate, validate_code
from fhir_server.operations.find_slots import DEFINITION as FIND_SLOTS
from fhir_server.operations.find_slots import find_slots
from fhir_server.routing import capabilities, smart_configuration

if TYPE_CHECKING:
    from fhir_server.server import FhirServer


@dataclass(frozen=True)
class Interaction:
    code: str  # the CapabilityStatement interaction code
    shape: str  # URL shape (see interactions.urls)
    method: str
    handler: Callable
    conditional: bool = False
    # the SMART scope letter it needs on its resource type (None: checked inside, per type or
    # per entry — system and compartment searches, history, batch and transaction)
    letter: str | None = None


@dataclass(frozen=True)
class Operation:
    name: str  # without the $
    levels: tuple[str, ...]  # system | type | instance
    methods: tuple[str, ...]
    handler: Callable
    definition: str | None = None  # canonical URL of its OperationDefinition, when one exists
    types: tuple[str, ...] = ()  # resource types it applies to at type/instance level (empty: all)
    letter: str = "r"  # the SMART scope letter it needs on its type ("*" at the system level)


def _metadata(server: FhirServer, req: FhirRequest) -> FhirResponse:
    return FhirResponse(200, capabilities.capability_statement(server, req.base_url, INTERACTIONS, OPERATIONS))


INTERACTIONS: tuple[Interaction, ...] = (
    Interaction("capabilities", "metadata", "GET", _metadata),
    Interaction("smart-configuration", "smart-configuration", "GET", smart_configuration.smart_configuration),
    Interaction("read", "instance", "GET", read.read, letter="r"),
    Interaction("vread", "version", "GET", read.vread, letter="r"),
    Interaction("update", "instance", "PUT", update.update, letter="u"),
    Interaction("delete", "instance", "DELETE", delete.delete, letter="d"),
    Interaction("patch", "instance", "PATCH", patch.patch, letter="u"),
    Interaction("history-instance", "instance-history", "GET", history.history, letter="r"),
    Interaction("create", "type", "POST", create.create, letter="c"),
    Interaction("update", "type", "PUT", update.conditional_update, conditional=True, letter="u"),
    Interaction("delete", "type", "DELETE", delete.conditional_delete, conditional=True, letter="d"),
    Interaction("patch", "type", "PATCH", patch.conditional_patch, conditional=True, letter="u"),
    Interaction("history-type", "type-history", "GET", history.history, letter="s"),
    Interaction("search-type", "type", "GET", search.search, letter="s"),
    Interaction("search-type", "type-search", "POST", search.search, letter="s"),
    Interaction("search-type", "compartment", "GET", search.search),
    Interaction("history-system", "system-history", "GET", history.history),
    Interaction("search-system", "system", "GET", search.search),
    Interaction("transaction", "system", "POST", bundle.process),
    Interaction("batch", "system", "POST", bundle.process),
    Interaction("search-system", "system-search", "POST", search.search),
)

OPERATIONS: tuple[Operation, ...] = (
    Operation("reindex", ("system", "type"), ("GET", "POST"), reindex.reindex, letter="u"),
    Operation("validate", ("type", "instance"), ("GET", "POST"), validate.validate,
              "http://hl7.org/fhir/OperationDefinition/Resource-validate"),
    Operation("everything", ("instance",), ("GET", "POST"), everything.everything,
              "http://hl7.org/fhir/OperationDefinition/Patient-everything", ("Patient",)),
    Operation("match", ("type",), ("POST",), match.match, match.DEFINITION, ("Patient",), letter="s"),
    Operation("find", ("type",), ("GET", "POST"), find_slots, FIND_SLOTS, ("Slot",), letter="s"),
    Operation("mark-read", ("instance",), ("POST",), mark_read.mark_read, mark_read.DEFINITION, ("Communication",),
              letter="u"),
    Operation("apply", ("instance",), ("GET", "POST"), apply.apply,
              "http://hl7.org/fhir/OperationDefinition/PlanDefinition-apply", ("PlanDefinition",)),
    Operation("expand", ("type", "instance"), ("GET", "POST"), expand.expand, expand.DEFINITION, ("ValueSet",)),
    Operation("validate-code", ("type", "instance"), ("GET", "POST"), validate_code.valueset_validate_code,
              validate_code.VALUESET_DEFINITION, ("ValueSet",)),
    Operation("validate-code", ("type", "instance"), ("GET", "POST"), validate_code.codesystem_validate_code,
              validate_code.CODESYSTEM_DEFINITION, ("CodeSystem",)),
    Operation("lookup", ("type",), ("GET", "POST"), lookup.lookup, lookup.LOOKUP_DEFINITION, ("CodeSystem",)),
    Operation("subsumes", ("type", "instance"), ("GET", "POST"), lookup.subsumes, lookup.SUBSUMES_DEFINITION,
              ("CodeSystem",)),
)


def interaction(shape: str, method: str) -> Interaction | None:
    return next((i for i in INTERACTIONS if i.shape == shape and i.method == method), None)


def methods(shape: str) -> list[str]:
    """The methods a URL shape answers, HEAD wherever GET is."""
    found = sorted({i.method for i in INTERACTIONS if i.shape == shape})
    return found + (["HEAD"] if "GET" in found else [])


def operation(name: str, level: str, type_: str | None = None) -> Operation | None:
    for op in OPERATIONS:
        if op.name == name and level in op.levels and (not op.types or type_ in op.types or type_ is None):
            return op
    return None
