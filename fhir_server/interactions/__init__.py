"""The interactions the server implements, as one table.

The HTTP router dispatches through this table and the CapabilityStatement is generated from
it, so the server cannot claim an interaction it does not route, nor route one it does not
declare.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

from fhir_server.interactions import bundle, create, delete, history, patch, read, search, update


@dataclass(frozen=True)
class Interaction:
    code: str  # the CapabilityStatement interaction code
    shape: str  # URL shape: system | system-search | system-history | type | type-search | type-history |
    #            instance | instance-history | version | compartment
    method: str
    handler: Callable
    conditional: bool = False


INTERACTIONS: tuple[Interaction, ...] = (
    Interaction("read", "instance", "GET", read.read),
    Interaction("vread", "version", "GET", read.vread),
    Interaction("update", "instance", "PUT", update.update),
    Interaction("delete", "instance", "DELETE", delete.delete),
    Interaction("patch", "instance", "PATCH", patch.patch),
    Interaction("history-instance", "instance-history", "GET", history.history),
    Interaction("create", "type", "POST", create.create),
    Interaction("update", "type", "PUT", update.conditional_update, conditional=True),
    Interaction("delete", "type", "DELETE", delete.conditional_delete, conditional=True),
    Interaction("patch", "type", "PATCH", patch.conditional_patch, conditional=True),
    Interaction("history-type", "type-history", "GET", history.history),
    Interaction("search-type", "type", "GET", search.search),
    Interaction("search-type", "type-search", "POST", search.search),
    Interaction("search-type", "compartment", "GET", search.search),
    Interaction("history-system", "system-history", "GET", history.history),
    Interaction("search-system", "system", "GET", search.search),
    Interaction("transaction", "system", "POST", bundle.process),
    Interaction("batch", "system", "POST", bundle.process),
    Interaction("search-system", "system-search", "POST", search.search),
)


def find(shape: str, method: str) -> Interaction | None:
    for interaction in INTERACTIONS:
        if interaction.shape == shape and interaction.method == method:
            return interaction
    return None


def methods(shape: str) -> list[str]:
    return sorted({i.method for i in INTERACTIONS if i.shape == shape})
