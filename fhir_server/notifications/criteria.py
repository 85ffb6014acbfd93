"""A Subscription's `criteria` (`Type?param=value&…`) as search terms, built by the search engine
itself, so a criteria means what the same search means; a version matches when every term
matches its search values.

A criteria the server cannot evaluate is refused when the Subscription is written (400 for a
malformed or unknown parameter, 422 for an unknown type), never ignored: a parameter left out
would widen what the owner is told of. Chains and `_has` are searches of their own, run again
for each pass of the dispatcher (their answer changes with the data).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Any
from urllib.parse import parse_qsl

from fhir_server.errors import FhirError, Issue
from fhir_server.search.query import RESULT_PARAMS, Context, build_terms
from fhir_server.search.reach import EVERYTHING, Reach
from fhir_server.search.terms import Term, Values

if TYPE_CHECKING:
    from fhir_server.server import FhirServer

EXPRESSION = "Subscription.criteria"


@dataclass(frozen=True)
class Criteria:
    type: str
    pairs: tuple[tuple[str, str], ...]

    @property
    def searches(self) -> bool:
        """Whether a term runs a search of its own (chains, `_has`): built again on each pass."""
        return any("." in name or name.startswith("_has") for name, _ in self.pairs)


def parse(server: FhirServer, text: Any) -> Criteria:
    """The criteria, checked to be a search this server answers (FhirError naming the element)."""
    if not isinstance(text, str) or not text.strip():
        raise _refused(400, "required", "criteria is required: a search such as Observation?code=http://loinc.org|1234-5")
    path, _, query = text.strip().partition("?")
    type_ = path.strip("/").rsplit("/", 1)[-1]
    if not server.definitions.is_resource_type(type_):
        raise _refused(422, "not-supported", f"criteria {text!r} does not start with a resource type this server "
                       f"knows ({type_!r})")
    pairs = tuple(parse_qsl(query, keep_blank_values=True))
    for name, value in pairs:
        if name in RESULT_PARAMS or name in ("_format", "_pretty"):
            raise _refused(400, "not-supported", f"criteria parameter {name!r} shapes a search's result and "
                           f"selects nothing; a criteria takes search parameters only")
        if not value:
            raise _refused(400, "value", f"criteria parameter {name!r} has no value")
    criteria = Criteria(type_, pairs)
    terms(server, criteria, EVERYTHING)  # once now: a parameter the server cannot evaluate is refused
    return criteria


def terms(server: FhirServer, criteria: Criteria, reach: Reach) -> list[Term]:
    """The criteria's terms; chains and `_has` search within `reach` (the owner's)."""
    ctx = Context(server, server.settings.base_url or "", strict=True, reach=reach,
                  strict_because="a Subscription's criteria must use search parameters this server knows")
    try:
        built, applied = build_terms(ctx, criteria.type, list(criteria.pairs))
    except FhirError as exc:
        raise _refused(exc.status, "invalid", "criteria: " + "; ".join(i.diagnostics for i in exc.issues)) from None
    ignored = [name for name, value in criteria.pairs if (name, value) not in applied]
    if ignored:
        raise _refused(400, "not-supported", f"criteria parameter {ignored[0]!r} is not one this server can "
                       f"evaluate on {criteria.type}")
    return built


def matches(built: list[Term], id_: str, values: dict[str, Any]) -> bool:
    return all(term.match(Values(id_, values)) for term in built)


def _refused(status: int, code: str, text: str) -> FhirError:
    return FhirError(status, Issue("error", code, text, expression=[EXPRESSION]))
