"""`Patient/$match` (R4 OperationDefinition Patient-match): the stored Patients that may be the
person described, scored and graded — what identity vigilance (RNIV) asks before a record is
created, so that a person gets one record.

Input, `POST [base]/Patient/$match`: a Parameters body with `resource` (the Patient described,
required; checked as R4 structure and INS keys, 400 naming its element), `onlyCertainMatches`
(boolean) and `count` (positiveInt, default 10, at most 100); a bare Patient body is taken as
`resource`. Nothing is written.

Candidates come from indexed searches only, within what the caller may search (a Patient out of
reach is absent, never scored): the described Patient's identifiers, each word of its family
names (`family` starts with it; words of fewer than 3 letters only when the name has no longer
one), its birth date. A Patient marked as a duplicate (`active` false, `link` `replaced-by`) is
left out: the record it points to is the one to use.

Grades and scores (`search.score`, and the `match-grade` extension on `search`):
- `certain`, score 1: an INS (INS-NIR of any system, INS-NIA) of the described Patient is held by
  the candidate. Only the INS makes a match certain: traits alone never do (RNIV).
- `certainly-not`, score 0: both hold an INS of one system and they differ — another person,
  shown when the traits would have made it at least possible (a homonym to tell apart).
- otherwise the traits, each scored 0 to 1 and weighted: family name .35, given name .25, birth
  date .25, gender .10, birthplace .05; the score is the weighted sum over the traits the
  described Patient gives (a trait it gives and the candidate lacks scores 0). Names are
  compared folded (accents, case, ligatures) with hyphens, apostrophes and spaces alike
  (`Martin-Dupont` = `MARTIN DUPONT`):
  - family: the same name and the same kind 1 (kinds: birth name — FR Core `official`, or
    `maiden` —, used name — `usual` —, others match either kind); a birth name equal to a used
    name .9 (the name used on one record is the birth name on the other); one name's words
    within the other's (compound names) .7;
  - given: the first given names equal 1; a word in common (compound given names, the FR Core
    list of birth given names) .7;
  - birth date: equal 1; same year with the day or the month differing, or day and month
    swapped, .5;
  - gender: equal 1 (a described gender `unknown` is not compared);
  - birthplace (FR Core `patient-birthPlace`, its INSEE code, else its city): equal 1.
  `probable`: a score of at least .85 with the same birth date, given; `possible`: at least .65; lower
  scores are not returned.

Answer: a searchset Bundle ordered by grade (certain, probable, possible, certainly-not), then
score, then id; at most `count` entries, `total` the number returned. With `onlyCertainMatches`,
only certain matches — and none when several are certain (the spec: a certain answer must be
unique), with a warning saying so.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from fhir_server import budget, jsonio
from fhir_server.errors import FhirError, bad_request
from fhir_server.interactions.access import reach
from fhir_server.interactions.request import FhirRequest, FhirResponse
from fhir_server.search.execute import find
from fhir_server.search.query import Context, build_terms
from fhir_server.search.reach import Reach
from fhir_server.storage.records import Record
from fhir_server.text import fold
from fhir_server.validation import pipeline
from fhir_server.validation.ins import ins_identifiers, retired_duplicate

if TYPE_CHECKING:
    from fhir_server.server import FhirServer

DEFINITION = "http://hl7.org/fhir/OperationDefinition/Patient-match"
GRADE = "http://hl7.org/fhir/StructureDefinition/match-grade"
BIRTH_PLACE = "http://hl7.org/fhir/StructureDefinition/patient-birthPlace"
INSEE_CODE = "https://hl7.fr/ig/fhir/core/StructureDefinition/fr-core-address-insee-code"
BIRTH_GIVEN = "https://hl7.fr/ig/fhir/core/StructureDefinition/fr-core-patient-birth-list-given-name"
DEFAULT_COUNT, MAX_COUNT = 10, 100
WEIGHTS = {"family": .35, "given": .25, "birthDate": .25, "gender": .10, "birthPlace": .05}
PROBABLE, POSSIBLE = .85, .65
_RANK = {"certain": 0, "probable": 1, "possible": 2, "certainly-not": 3}
_BIRTH_KINDS = {"official": "birth", "maiden": "birth", "usual": "used"}
_SEPARATORS = re.compile(r"[^0-9a-z]+")


@dataclass(frozen=True)
class Traits:
    """What a Patient says of the person, normalised for comparison."""

    families: tuple[tuple[str, str], ...]  # (kind: birth | used | other, words joined by spaces)
    first_given: str
    given_words: frozenset[str]
    birth_date: str | None
    gender: str | None
    birth_place: tuple[str | None, str | None]  # (INSEE code, city)
    ins: frozenset[tuple[str, str]]


def match(server: FhirServer, req: FhirRequest) -> FhirResponse:
    patient, only_certain, count = _arguments(server, req)
    wanted = traits(patient)
    readable = reach(server, req, "s")
    scored = []
    for record in budget.checked(_candidates(server, req, patient, wanted, readable), every=64):
        candidate = jsonio.loads(record.json)
        if retired_duplicate(candidate):
            continue
        grade, score = grade_of(wanted, traits(candidate))
        if grade is not None:
            scored.append((score, record.id, grade, candidate))
    scored.sort(key=lambda s: (_RANK[s[2]], -s[0], s[1]))
    warnings = []
    if only_certain:
        scored = [s for s in scored if s[2] == "certain"]
        if len(scored) > 1:
            warnings.append(f"{len(scored)} Patients hold the INS described: none is returned as certain; "
                            f"their records need identity vigilance (mark the duplicates)")
            scored = []
    return FhirResponse(200, _bundle(req, scored[:count], warnings))


def _arguments(server: FhirServer, req: FhirRequest) -> tuple[dict[str, Any], bool, int]:
    body = req.body
    values: dict[str, list[dict[str, Any]]] = {}
    if isinstance(body, dict) and body.get("resourceType") == "Parameters":
        for parameter in body.get("parameter") or ():
            if isinstance(parameter, dict) and isinstance(parameter.get("name"), str):
                values.setdefault(parameter["name"], []).append(parameter)
    elif isinstance(body, dict) and body.get("resourceType") == "Patient":
        values["resource"] = [{"resource": body}]
    else:
        raise bad_request("Patient/$match takes a Parameters body with a `resource` parameter holding a Patient",
                          code="required")
    for name, given in values.items():
        if len(given) > 1:
            raise bad_request(f"the parameter {name!r} of Patient/$match is given {len(given)} times; give it once",
                              code="value")
    patient = (values.get("resource") or [{}])[0].get("resource")
    if not isinstance(patient, dict) or patient.get("resourceType") != "Patient":
        raise bad_request("Patient/$match needs the parameter `resource`: the Patient to match", code="required")
    problems = pipeline.blocking(pipeline.structural(server, patient))
    if problems:
        raise FhirError(400, problems)
    return patient, _only_certain(req, values), _count(req, values)


def _only_certain(req: FhirRequest, values: dict[str, list[dict[str, Any]]]) -> bool:
    given = values.get("onlyCertainMatches")
    if given is None:
        text = req.param("onlyCertainMatches")
        if text is None:
            return False
        if text not in ("true", "false"):
            raise bad_request(f"onlyCertainMatches is {text!r}: true or false", code="value")
        return text == "true"
    value = given[0].get("valueBoolean")
    if not isinstance(value, bool):
        raise bad_request("the parameter onlyCertainMatches needs a valueBoolean", code="value")
    return value


def _count(req: FhirRequest, values: dict[str, list[dict[str, Any]]]) -> int:
    given = values.get("count")
    value: Any = given[0].get("valueInteger", given[0].get("valuePositiveInt")) if given else None
    if given is None and req.param("count") is not None:
        text = req.param("count") or ""
        value = int(text) if text.isascii() and text.isdigit() and len(text) < 10 else text
    if value is None:
        return DEFAULT_COUNT
    if isinstance(value, bool) or not isinstance(value, int) or value < 1:
        raise bad_request(f"count is {value!r}: a positive integer (the most matches to return, at most "
                          f"{MAX_COUNT})", code="value")
    return min(value, MAX_COUNT)


# -- candidates --------------------------------------------------------------------------------

def _candidates(server: FhirServer, req: FhirRequest, patient: dict[str, Any], wanted: Traits,
                readable: Reach) -> list[Record]:
    """The Patients an indexed search finds by identifier, family name word or birth date."""
    criteria = [("identifier", f"{_escape(i['system'])}|{_escape(i['value'])}")
                for i in patient.get("identifier") or ()
                if isinstance(i, dict) and isinstance(i.get("system"), str) and isinstance(i.get("value"), str)]
    for _, family in wanted.families:
        words = [w for w in family.split() if len(w) >= 3] or [family]
        criteria += [("family", w) for w in words]
    if wanted.birth_date:
        criteria.append(("birthdate", f"eq{wanted.birth_date}"))
    ctx = Context(server, req.base_url, strict=True, reach=readable,
                  strict_because="Patient/$match searches with the server's Patient parameters")
    found: dict[str, Record] = {}
    for criterion in dict.fromkeys(criteria):
        terms, _ = build_terms(ctx, "Patient", [criterion])
        for record in find(server, "Patient", terms, reach=readable, json=True):
            found.setdefault(record.id, record)
    return list(found.values())


def _escape(text: str) -> str:
    return text.replace("\\", "\\\\").replace(",", "\\,").replace("|", "\\|").replace("$", "\\$")


# -- traits and scores -------------------------------------------------------------------------

def words(text: Any) -> str:
    """A name folded (accents, case, ligatures) with every separator a single space."""
    if not isinstance(text, str):
        return ""
    folded = fold(text)
    return " ".join(w for w in _SEPARATORS.split(folded) if w) or folded


def traits(patient: dict[str, Any]) -> Traits:
    families, given, first = [], set(), ""
    for name in patient.get("name") or ():
        if not isinstance(name, dict):
            continue
        family = words(name.get("family"))
        if family:
            families.append((_BIRTH_KINDS.get(name.get("use"), "other"), family))
        names = [words(g) for g in name.get("given") or ()]
        names += [words(e.get("valueString")) for e in name.get("extension") or ()
                  if isinstance(e, dict) and e.get("url") == BIRTH_GIVEN]
        for text in names:
            given.update(text.split())
        if not first and names and names[0]:
            first = names[0]
    gender = patient.get("gender") if patient.get("gender") in ("male", "female", "other") else None
    birth_date = patient.get("birthDate") if isinstance(patient.get("birthDate"), str) else None
    return Traits(tuple(dict.fromkeys(families)), first, frozenset(given), birth_date, gender,
                  _birth_place(patient), frozenset((system, value) for _, system, value in ins_identifiers(patient)))


def _birth_place(patient: dict[str, Any]) -> tuple[str | None, str | None]:
    for extension in patient.get("extension") or ():
        if isinstance(extension, dict) and extension.get("url") == BIRTH_PLACE \
                and isinstance(extension.get("valueAddress"), dict):
            address = extension["valueAddress"]
            code = next((e.get("valueCoding", {}).get("code") for e in address.get("extension") or ()
                         if isinstance(e, dict) and e.get("url") == INSEE_CODE
                         and isinstance(e.get("valueCoding"), dict)), None)
            city = words(address.get("city")) or None
            return (code if isinstance(code, str) else None), city
    return None, None


def grade_of(wanted: Traits, candidate: Traits) -> tuple[str | None, float]:
    """(match grade, score) of a candidate for the Patient described; no grade: not a match."""
    if wanted.ins & candidate.ins:
        return "certain", 1.0
    score = trait_score(wanted, candidate)
    if {s for s, _ in wanted.ins} & {s for s, _ in candidate.ins}:
        return ("certainly-not", 0.0) if score >= POSSIBLE else (None, 0.0)
    if score >= PROBABLE and wanted.birth_date and wanted.birth_date == candidate.birth_date:
        return "probable", score
    return ("possible", score) if score >= POSSIBLE else (None, score)


def trait_score(wanted: Traits, candidate: Traits) -> float:
    """The weighted score of the traits the described Patient gives (module docstring)."""
    given = {"family": bool(wanted.families), "given": bool(wanted.given_words), "birthDate": bool(wanted.birth_date),
             "gender": wanted.gender is not None, "birthPlace": any(wanted.birth_place)}
    scores = {"family": _family(wanted, candidate), "given": _given(wanted, candidate),
              "birthDate": _birth_date(wanted.birth_date, candidate.birth_date),
              "gender": 1.0 if wanted.gender == candidate.gender else 0.0,
              "birthPlace": _place(wanted.birth_place, candidate.birth_place)}
    total = sum(WEIGHTS[t] for t, present in given.items() if present)
    if not total:
        return 0.0
    return round(sum(WEIGHTS[t] * scores[t] for t, present in given.items() if present) / total, 3)


def _family(wanted: Traits, candidate: Traits) -> float:
    best = 0.0
    for kind, name in wanted.families:
        for other_kind, other in candidate.families:
            if name == other:
                same = kind == other_kind or "other" in (kind, other_kind)
                best = max(best, 1.0 if same else .9)
            elif set(name.split()) <= set(other.split()) or set(other.split()) <= set(name.split()):
                best = max(best, .7)
    return best


def _given(wanted: Traits, candidate: Traits) -> float:
    if wanted.first_given and wanted.first_given == candidate.first_given:
        return 1.0
    return .7 if wanted.given_words & candidate.given_words else 0.0


def _birth_date(wanted: str | None, candidate: str | None) -> float:
    if not wanted or not candidate:
        return 0.0
    if wanted == candidate:
        return 1.0
    mine, theirs = wanted.split("-"), candidate.split("-")
    if len(mine) != 3 or len(theirs) != 3 or mine[0] != theirs[0]:
        return 0.0
    swapped = mine[1:] == theirs[:0:-1]
    return .5 if swapped or mine[1] == theirs[1] or mine[2] == theirs[2] else 0.0


def _place(wanted: tuple[str | None, str | None], candidate: tuple[str | None, str | None]) -> float:
    if wanted[0] and candidate[0]:
        return 1.0 if wanted[0] == candidate[0] else 0.0
    return 1.0 if wanted[1] and wanted[1] == candidate[1] else 0.0


# -- answer ------------------------------------------------------------------------------------

def _bundle(req: FhirRequest, scored: list[tuple[float, str, str, dict[str, Any]]],
            warnings: list[str]) -> dict[str, Any]:
    entries = [{"fullUrl": f"{req.base_url}/Patient/{id_}", "resource": resource,
                "search": {"extension": [{"url": GRADE, "valueCode": grade}], "mode": "match", "score": score}}
               for score, id_, grade, resource in scored]
    if warnings:
        entries.append({"fullUrl": "urn:uuid:outcome", "search": {"mode": "outcome"}, "resource": {
            "resourceType": "OperationOutcome",
            "issue": [{"severity": "warning", "code": "multiple-matches", "diagnostics": w} for w in warnings]}})
    bundle: dict[str, Any] = {"resourceType": "Bundle", "type": "searchset", "total": len(scored),
                              "link": [{"relation": "self", "url": f"{req.base_url}/Patient/$match"}]}
    if entries:
        bundle["entry"] = entries
    return bundle
