"""What one request may see of each resource type, as a term every search it makes is ANDed with.

The access rules (scopes today, the care team next) are decided above this layer; here they are
only a term per type: `None` (every resource of the type), `NOTHING` (none), or a criterion the
resource must match. Because the term joins the search's own terms, a hidden resource is never
read into a result, a count, a page, an include, a chain or a `_has`: it is absent, not removed.
"""

from __future__ import annotations

from collections.abc import Callable

from fhir_server.search.execute import plan, selection
from fhir_server.search.terms import EXACT, IDS, KEYS, NOTHING, SCAN, Candidate, Term
from fhir_server.storage.records import Ids, Keys

__all__ = ["EVERYTHING", "NOTHING", "Reach", "any_of"]


class Reach:
    """Per resource type, the term that says which of its resources one request may see.
    `build` is asked once per type (lazily: most requests touch one or two types)."""

    def __init__(self, build: Callable[[str], Term | None] | None = None):
        self._build = build
        self._terms: dict[str, Term | None] = {}

    @property
    def restricted(self) -> bool:
        return self._build is not None

    def term(self, type_: str) -> Term | None:
        """None: every resource of the type; NOTHING: none; otherwise the criterion to match."""
        if self._build is None:
            return None
        if type_ not in self._terms:
            self._terms[type_] = self._build(type_)
        return self._terms[type_]

    def sees(self, type_: str, candidate: Candidate) -> bool:
        term = self.term(type_)
        return term is None or term.match(candidate)

    def excludes(self, type_: str) -> bool:
        """Whether no resource of the type can be seen (nothing to read at all)."""
        return self.term(type_) is NOTHING


EVERYTHING = Reach()  # the server's own lookups, open mode, and tokens whose scopes restrict no type


def any_of(alternatives: list[list[Term]]) -> Term | None:
    """A resource matching every term of at least one alternative (None: an alternative with no
    term, i.e. everything). Indexed when every alternative drives on keys, or every one on ids,
    so a restricted search still reads only what may match."""
    if not alternatives:
        return NOTHING
    if any(not alt for alt in alternatives):
        return None

    def match(doc: Candidate) -> bool:
        return any(all(t.match(doc) for t in alt) for alt in alternatives)

    drivers = [selection(plan(alt)) for alt in alternatives]
    if all(isinstance(d, Keys) for d in drivers):
        keys = list(dict.fromkeys(k for d in drivers for k in d.keys))  # type: ignore[union-attr]
        return Term(KEYS, keys, match, EXACT + len(keys))
    if all(isinstance(d, Ids) for d in drivers):
        ids = sorted({i for d in drivers for i in d.ids})  # type: ignore[union-attr]
        return Term(IDS, ids, match, EXACT + len(ids))
    return Term(None, [], match, SCAN)
