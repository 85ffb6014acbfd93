"""The CapabilityStatement, generated from what this running server routes and knows."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from fhir_server import FHIR_VERSION, __version__
from fhir_server.notifications.subscriptions import CHANNELS
from fhir_server.routing.smart_configuration import rest_security
from fhir_server.search import fulltext
from fhir_server.storage.store import format_instant, now

if TYPE_CHECKING:
    from fhir_server.server import FhirServer

_TYPE_LEVEL = {"read", "vread", "update", "patch", "delete", "history-instance", "history-type", "create",
               "search-type"}


def capability_statement(server: FhirServer, base_url: str, interactions, operation_table) -> dict[str, Any]:
    """The statement of what `interactions` and `operations` (the router's tables) offer."""
    codes = [i.code for i in interactions if i.code not in ("capabilities", "smart-configuration")]
    type_codes = sorted({c for c in codes if c in _TYPE_LEVEL})
    system_codes = sorted({c for c in codes if c not in _TYPE_LEVEL})
    conditional = {(i.code, i.shape) for i in interactions if i.conditional}
    try:
        transactions = server.database.supports_transactions
    except Exception:  # noqa: BLE001 - the statement is served even while the database is away
        transactions = None
    resources = []
    params = server.search_parameters
    for type_ in server.definitions.resource_types:
        search_params = sorted(params.for_type(type_).items())
        references = [code for code, p in search_params if p.type == "reference"]
        resources.append({
            "type": type_,
            "profile": f"http://hl7.org/fhir/StructureDefinition/{type_}",
            "interaction": [{"code": c} for c in type_codes],
            "versioning": "versioned-update",
            "readHistory": True,
            "updateCreate": True,
            "conditionalCreate": True,
            "conditionalRead": "full-support",
            "conditionalUpdate": ("update", "type") in conditional,
            "conditionalDelete": "single" if ("delete", "type") in conditional else "not-supported",
            "searchInclude": ["*"] + [f"{type_}:{code}" for code in references],
            "searchRevInclude": ["*"],
            "searchParam": [{"name": code, "definition": p.url, "type": p.type}
                            for code, p in search_params
                            if p.expression or p.type == "composite" or code in fulltext.CODES]
                           + [{"name": "_filter", "type": "special",
                               "documentation": "R4 _filter expressions over this type's parameters"}],
        })
        supported = server.definitions.profiles(type_)
        if supported:
            resources[-1]["supportedProfile"] = supported
        operations = [{"name": op.name, "definition": op.definition or f"{base_url}/OperationDefinition/{op.name}"}
                      for op in operation_table if ({"type", "instance"} & set(op.levels))
                      and (not op.types or type_ in op.types)]
        if operations:
            resources[-1]["operation"] = operations
        if type_ == "Subscription":  # R4 has no element for them: said in the type's documentation
            resources[-1]["documentation"] = (f"Subscription channel types supported: {', '.join(CHANNELS)}. "
                                              f"criteria: any search this server answers on one type.")
    documentation = ("FHIR R4 server for coordinated care. Writes are atomic (current version and "
                     "history in one MongoDB transaction)." if transactions in (True, None) else
                     "FHIR R4 server for coordinated care. WARNING: the database is a standalone "
                     "MongoDB without transactions, so a write is not atomic across current version "
                     "and history; run a replica set.")
    return {
        "resourceType": "CapabilityStatement",
        "status": "active",
        "date": format_instant(now()),
        "publisher": "fhir-server",
        "kind": "instance",
        "software": {"name": "fhir-server", "version": __version__},
        "implementation": {"description": "FHIR R4 interoperability server for coordinated care",
                           "url": base_url},
        "fhirVersion": FHIR_VERSION,
        **({"implementationGuide": guides} if (guides := server.definitions.implementation_guides()) else {}),
        "format": ["application/fhir+json", "json"],
        "patchFormat": ["application/json-patch+json", "application/fhir+json"],
        "rest": [{
            "mode": "server",
            "documentation": documentation,
            "security": rest_security(server),
            "resource": resources,
            "interaction": [{"code": c} for c in system_codes],
            "operation": [{"name": op.name, "definition": op.definition or f"{base_url}/OperationDefinition/{op.name}"}
                          for op in operation_table if "system" in op.levels],
        }],
    }
