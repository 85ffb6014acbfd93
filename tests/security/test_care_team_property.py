"""The équipe de soins rule, property-based: random care teams, periods, roles, médecins traitants
and consents are written through HTTP; what the server returns to each professional for their
searches must be what a brute-force reading of the rule (written here again, independently of
the server's code) says they may see.

Periods are far in the past, current or far in the future, never near now, so that the answer
does not depend on when the test runs.
"""

from __future__ import annotations

import itertools
import uuid
from dataclasses import dataclass, field

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from tests.oidc.provider import Client
from tests.security.conftest import bearer

ADMIN = "system/*.cruds"
CLIENTS = [Client("backend", scope=[ADMIN])]
# The worlds refer to roles that do not exist (they must grant nothing): a state only a server
# with referential integrity off (a corpus loaded that way) gets into.
SERVER_ENV = {"FHIR_REFERENTIAL_INTEGRITY": "off"}
ROLE_SYSTEM = "https://fhir-server.dev/ig/coordination/CodeSystem/coord-cs-participant-role"
PERIODS = {"none": None, "past": {"start": "2019-01-01", "end": "2020-12-31"},
           "current": {"start": "2020-01-01", "end": "2098-12-31"}, "future": {"start": "2099-01-01"}}
COVERS_NOW = {"none": True, "past": False, "current": True, "future": False}
COORDINATION = {"Patient", "CarePlan", "Task"}
PRACTITIONERS, ORGANIZATIONS, PATIENTS = 3, 2, 4

# -- the generated world --------------------------------------------------------------------------

period = st.sampled_from(list(PERIODS))
role = st.fixed_dictionaries({"practitioner": st.integers(0, PRACTITIONERS - 1),
                              "organization": st.integers(0, ORGANIZATIONS - 1),
                              "coordinator": st.booleans(), "active": st.booleans(), "period": period})
member = st.one_of(st.tuples(st.just("Practitioner"), st.integers(0, PRACTITIONERS - 1)),
                   st.tuples(st.just("PractitionerRole"), st.integers(0, 5)),
                   st.tuples(st.just("Organization"), st.integers(0, ORGANIZATIONS - 1)))
participant = st.fixed_dictionaries({"member": member, "period": period, "coordinator": st.booleans()})
team = st.fixed_dictionaries({"patient": st.integers(0, PATIENTS - 1), "status": st.sampled_from(["active", "inactive"]),
                              "period": st.sampled_from(["none", "past", "current"]),
                              "managed_by": st.one_of(st.none(), st.integers(0, ORGANIZATIONS - 1)),
                              "participants": st.lists(participant, max_size=3)})
consent = st.fixed_dictionaries({"patient": st.integers(0, PATIENTS - 1),
                                 "status": st.sampled_from(["active", "inactive"]),
                                 "nested": st.booleans(), "actor": st.one_of(st.none(), member),
                                 "period": st.sampled_from(["none", "past", "current"])})
gp = st.one_of(st.none(), st.tuples(st.just("Practitioner"), st.integers(0, PRACTITIONERS - 1)),
               st.tuples(st.just("PractitionerRole"), st.integers(0, 5)))
owner = st.one_of(st.none(), st.tuples(st.just("Practitioner"), st.integers(0, PRACTITIONERS - 1)),
                  st.tuples(st.just("PractitionerRole"), st.integers(0, 5)))
worlds = st.fixed_dictionaries({
    "roles": st.lists(role, max_size=6), "teams": st.lists(team, max_size=5), "consents": st.lists(consent, max_size=3),
    "gps": st.lists(gp, min_size=PATIENTS, max_size=PATIENTS),
    "owners": st.lists(owner, min_size=PATIENTS, max_size=PATIENTS)})


@dataclass
class World:
    """One generated world with its own ids (a tag per example keeps examples apart)."""

    spec: dict
    tag: str = field(default_factory=lambda: uuid.uuid4().hex[:8])

    def id(self, kind: str, n: int) -> str:
        return f"{kind}{n}-{self.tag}"

    def ref(self, pair: tuple[str, int] | None) -> str | None:
        if pair is None:
            return None
        kind, n = pair
        if kind == "PractitionerRole" and n >= len(self.spec["roles"]):
            return f"PractitionerRole/none{n}-{self.tag}"  # a role that does not exist
        return f"{kind}/{self.id(kind.lower(), n)}"

    def resources(self) -> list[dict]:
        meta = {"tag": [{"system": "urn:test:world", "code": self.tag}]}
        out: list[dict] = []
        out += [{"resourceType": "Organization", "id": self.id("organization", n), "meta": meta, "name": f"O{n}"}
                for n in range(ORGANIZATIONS)]
        out += [{"resourceType": "Practitioner", "id": self.id("practitioner", n), "meta": meta}
                for n in range(PRACTITIONERS)]
        for n, r in enumerate(self.spec["roles"]):
            role_ = {"resourceType": "PractitionerRole", "id": self.id("practitionerrole", n), "meta": meta,
                     "active": r["active"], "practitioner": {"reference": self.ref(("Practitioner", r["practitioner"]))},
                     "organization": {"reference": self.ref(("Organization", r["organization"]))},
                     "code": [{"coding": [{"system": ROLE_SYSTEM, "code": "coordinator" if r["coordinator"] else "nurse"}]}]}
            if PERIODS[r["period"]]:
                role_["period"] = PERIODS[r["period"]]
            out.append(role_)
        for n in range(PATIENTS):
            patient = {"resourceType": "Patient", "id": self.id("patient", n), "meta": meta}
            if self.spec["gps"][n]:
                patient["generalPractitioner"] = [{"reference": self.ref(self.spec["gps"][n])}]
            out.append(patient)
            subject = {"reference": f"Patient/{self.id('patient', n)}"}
            out.append({"resourceType": "Observation", "id": self.id("observation", n), "meta": meta,
                        "status": "final", "code": {"text": "poids"}, "subject": subject})
            out.append({"resourceType": "CarePlan", "id": self.id("careplan", n), "meta": meta, "status": "active",
                        "intent": "plan", "subject": subject})
            task = {"resourceType": "Task", "id": self.id("task", n), "meta": meta, "status": "requested",
                    "intent": "order", "for": subject}
            if self.spec["owners"][n]:
                task["owner"] = {"reference": self.ref(self.spec["owners"][n])}
            out.append(task)
        for n, t in enumerate(self.spec["teams"]):
            team_ = {"resourceType": "CareTeam", "id": self.id("careteam", n), "meta": meta, "status": t["status"],
                     "subject": {"reference": f"Patient/{self.id('patient', t['patient'])}"},
                     "participant": [{"member": {"reference": self.ref(p["member"])},
                                      **({"period": PERIODS[p["period"]]} if PERIODS[p["period"]] else {}),
                                      **({"role": [{"coding": [{"system": ROLE_SYSTEM, "code": "coordinator"}]}]}
                                         if p["coordinator"] else {})} for p in t["participants"]]}
            if not team_["participant"]:
                del team_["participant"]
            if PERIODS[t["period"]]:
                team_["period"] = PERIODS[t["period"]]
            if t["managed_by"] is not None:
                team_["managingOrganization"] = [{"reference": self.ref(("Organization", t["managed_by"]))}]
            out.append(team_)
        for n, c in enumerate(self.spec["consents"]):
            deny: dict = {"type": "deny"}
            if c["actor"]:
                deny["actor"] = [{"role": {"coding": [{"system": "http://terminology.hl7.org/CodeSystem/v3-ParticipationType",
                                                       "code": "IRCP"}]}, "reference": {"reference": self.ref(c["actor"])}}]
            if PERIODS[c["period"]]:
                deny["period"] = PERIODS[c["period"]]
            out.append({"resourceType": "Consent", "id": self.id("consent", n), "meta": meta, "status": c["status"],
                        "scope": {"coding": [{"system": "http://terminology.hl7.org/CodeSystem/consentscope",
                                              "code": "patient-privacy"}]},
                        "category": [{"coding": [{"system": "http://loinc.org", "code": "59284-0"}]}],
                        "patient": {"reference": f"Patient/{self.id('patient', c['patient'])}"},
                        "policyRule": {"text": "opposition"},
                        "provision": {"type": "permit", "provision": [deny]} if c["nested"] else deny})
        return out

    # -- the rule, by brute force ---------------------------------------------------------------------
    def expected(self, user: int, type_: str) -> set[str]:
        """Ids of `type_` (this world's) that the rule lets Practitioner `user` see."""
        me = self.ref(("Practitioner", user))
        clinical, coordinating, named = {me}, set(), {me}
        for n, r in enumerate(self.spec["roles"]):
            if r["practitioner"] != user or not r["active"] or not COVERS_NOW[r["period"]]:
                continue
            ref, org = self.ref(("PractitionerRole", n)), self.ref(("Organization", r["organization"]))
            named.add(ref)
            (coordinating if r["coordinator"] else clinical).update({ref, org})
        coordinating -= clinical
        full, coordinated = set(), set()
        for t in self.spec["teams"]:
            if t["status"] != "active" or not COVERS_NOW[t["period"]]:
                continue
            if t["managed_by"] is not None and self.ref(("Organization", t["managed_by"])) in coordinating:
                coordinated.add(t["patient"])
            for p in t["participants"]:
                ref = self.ref(p["member"])
                if ref not in clinical | coordinating or not COVERS_NOW[p["period"]]:
                    continue
                (full if ref in clinical and not p["coordinator"] else coordinated).add(t["patient"])
        for n, g in enumerate(self.spec["gps"]):
            if g and self.ref(g) in clinical:
                full.add(n)
        denied = {c["patient"] for c in self.spec["consents"] if c["status"] == "active" and COVERS_NOW[c["period"]]
                  and (c["actor"] is None or self.ref(c["actor"]) in clinical | coordinating)}
        out = set()
        for n in range(PATIENTS):
            if n in denied:
                continue
            owner_ = self.ref(self.spec["owners"][n])
            if n in full or (type_ in COORDINATION and n in coordinated) or (type_ == "Task" and owner_ in named):
                out.add(self.id(type_.lower(), n))
        return out


@pytest.fixture(scope="module")
def admin(provider) -> dict[str, str]:
    return bearer(provider.token("backend", scope=ADMIN))


@settings(max_examples=50, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture,
                                                                  HealthCheck.too_slow])
@given(spec=worlds)
def test_what_each_professional_finds_is_what_the_rule_gives(http, provider, admin, spec):
    world = World(spec)
    resources = world.resources()
    bundle = {"resourceType": "Bundle", "type": "transaction", "entry": [
        {"resource": r, "request": {"method": "PUT", "url": f"{r['resourceType']}/{r['id']}"}} for r in resources]}
    written = http.post("/", json=bundle, headers=admin)
    assert written.status_code == 200, written.text
    for user, type_ in itertools.product(range(PRACTITIONERS), ("Patient", "Observation", "CarePlan", "Task")):
        token = bearer(provider.mint.token(scope="user/*.rs", fhirUser=world.ref(("Practitioner", user))))
        found = http.get(f"/{type_}?_tag=urn:test:world|{world.tag}&_count=100", headers=token)
        assert found.status_code == 200, found.text
        ids = {e["resource"]["id"] for e in found.json().get("entry", ())}
        assert ids == world.expected(user, type_), (user, type_, spec)
        assert found.json()["total"] == len(ids)
