"""The équipe de soins rule's pure part: periods, roles, memberships, médecins traitants, consents."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest

from fhir_server.interactions.care_circle import (
    ROLE_SYSTEM,
    acting,
    circle,
    covers,
    denials,
    next_boundary,
)

NOW = datetime(2026, 12, 5, 12, 0, tzinfo=UTC)
ME = "Practitioner/me"


def role(id_: str, org: str, code: str = "nurse", **extra) -> dict:
    return {"resourceType": "PractitionerRole", "id": id_, "practitioner": {"reference": ME},
            "organization": {"reference": f"Organization/{org}"},
            "code": [{"coding": [{"system": ROLE_SYSTEM, "code": code}]}], **extra}


def team(patient: str, *members: str | tuple[str, dict], **extra) -> dict:
    participants = []
    for m in members:
        ref, period = (m, None) if isinstance(m, str) else m
        participants.append({"member": {"reference": ref}, **({"period": period} if period else {})})
    return {"resourceType": "CareTeam", "status": "active", "subject": {"reference": f"Patient/{patient}"},
            "participant": participants, **extra}


def consent(patient: str, provision: dict, **extra) -> dict:
    return {"resourceType": "Consent", "status": "active", "patient": {"reference": f"Patient/{patient}"},
            "scope": {"coding": [{"system": "http://terminology.hl7.org/CodeSystem/consentscope",
                                  "code": "patient-privacy"}]}, "provision": provision, **extra}


@pytest.mark.parametrize(("period", "expected"), [
    (None, True), ({}, True),
    ({"start": "2026"}, True), ({"start": "2027"}, False), ({"end": "2026"}, True),  # end 2026: all of 2026
    ({"end": "2026-12-04"}, False), ({"end": "2026-12-05"}, True), ({"end": "2026-12-05T11:59:59Z"}, False),
    ({"start": "2026-12-05T13:00:00+02:00"}, True),  # 11:00 UTC
    ({"start": "not a date"}, False),  # a start that cannot be read has not begun
    ({"end": "not a date"}, True),
])
def test_a_period_covers_now_with_partial_dates_and_time_zones(period, expected):
    assert covers(period, NOW) is expected


def test_the_next_boundary_is_the_earliest_start_or_end_to_come():
    periods = [{"start": "2020", "end": "2027-01-01"}, {"start": "2026-12-06"}, None, {"end": "2025"}]
    assert next_boundary(periods, NOW) == datetime(2026, 12, 6, tzinfo=UTC)
    assert next_boundary([None, {"end": "2020"}], NOW) is None


def test_roles_split_into_clinical_and_coordinating_sides():
    who, _ = acting(ME, [role("nurse", "msp"), role("coord", "cpts", "coordinator"),
                         role("old", "cds", period={"end": "2025"}), role("off", "cds2", active=False)], NOW)
    assert who.clinical == {ME, "PractitionerRole/nurse", "Organization/msp"}
    assert who.coordinating == {"PractitionerRole/coord", "Organization/cpts"}
    assert who.named == {ME, "PractitionerRole/nurse", "PractitionerRole/coord"}


def test_an_organization_reached_by_a_clinical_role_is_not_a_coordinating_one():
    who, _ = acting(ME, [role("nurse", "msp"), role("coord", "msp", "coordinator")], NOW)
    assert "Organization/msp" in who.clinical and "Organization/msp" not in who.coordinating


def test_memberships_gp_coordination_and_consents_make_the_circle():
    who, periods = acting(ME, [role("nurse", "msp"), role("coord", "cpts", "coordinator")], NOW)
    teams = [
        team("direct", ME), team("by-role", "PractitionerRole/nurse"), team("by-org", "Organization/msp"),
        team("ended", (ME, {"end": "2025-12-31"})), team("later", (ME, {"start": "2027-02-01"})),
        team("inactive", ME, status="inactive"), team("team-ended", ME, period={"end": "2026-01-01"}),
        team("run-by-cpts", "Practitioner/other", managingOrganization=[{"reference": "Organization/cpts"}]),
        team("as-coordinator", "PractitionerRole/coord"),
        {**team("coordinator-seat", ME), "participant": [{"member": {"reference": ME}, "role": [
            {"coding": [{"system": ROLE_SYSTEM, "code": "coordinator"}]}]}]},
    ]
    patients = [{"id": "gp-of", "generalPractitioner": [{"reference": "PractitionerRole/nurse"}]},
                {"id": "gp-org", "generalPractitioner": [{"reference": "Organization/msp"}]}]
    refused = [d for c in [consent("by-org", {"type": "deny", "actor": [{"reference": {"reference": "Organization/msp"}}]}),
                           consent("direct", {"type": "permit", "provision": [
                               {"type": "deny", "actor": [{"reference": {"reference": "Practitioner/other"}}]}]}),
                           consent("by-role", {"type": "deny", "period": {"end": "2026-01-01"}})]
               for d in denials(c)]
    found = circle(who, periods, teams, patients, refused, NOW)
    assert found.patients == {"direct", "by-role", "by-org", "gp-of"}
    assert found.coordinated == {"run-by-cpts", "as-coordinator", "coordinator-seat"}
    assert found.denied == {"by-org"}
    assert found.until == datetime(2027, 2, 1, tzinfo=UTC)  # the membership that starts then


@pytest.mark.parametrize("consent_", [
    consent("p", {"type": "deny"}, status="inactive"),
    consent("p", {"type": "deny"}, scope={"coding": [{"system": "http://terminology.hl7.org/CodeSystem/consentscope",
                                                      "code": "research"}]}),
    consent("p", {"type": "permit"}),
    {**consent("p", {"type": "deny"}), "patient": {"reference": "Group/g"}},
])
def test_only_deny_provisions_of_active_privacy_consents_of_a_patient_count(consent_):
    assert denials(consent_) == []


def test_a_deny_without_actor_denies_everyone_nested_ones_too():
    found = denials(consent("p", {"type": "permit", "provision": [{"type": "deny"}, {"type": "permit"}]}))
    assert [(d.patient, d.actors) for d in found] == [("p", None)]
