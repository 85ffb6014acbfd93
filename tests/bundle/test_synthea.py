"""Synthea-style patient Bundles (see synthea.py): urn:uuid fullUrls between Patient, Encounters,
Observations, Conditions and a Provenance; practitioners and organizations created with
ifNoneExist and referenced conditionally by identifier."""

from __future__ import annotations

import random

from .support import location, post_bundle, response_bundle, search_ids, status
from .synthea import NPI, NPI_OID, check_written, patient_bundle, provider_bundle, provider_ids, providers


def _load_providers(client, base_url, items) -> dict:
    bundle = provider_bundle(items)
    entries = response_bundle(post_bundle(client, base_url, bundle), "transaction-response", len(items))
    assert all(status(e) == 201 for e in entries), entries
    ids = provider_ids(client, items)
    assert [location(e)[1] for e in entries] == [ids[p] for p in items]
    # the same Bundle again creates nothing: every ifNoneExist matches
    again = response_bundle(post_bundle(client, base_url, provider_bundle(items)), "transaction-response", len(items))
    assert [status(e) for e in again] == [200] * len(items)
    assert [location(e)[1] for e in again] == [ids[p] for p in items]
    assert provider_ids(client, items) == ids
    return ids


def test_synthea_patients_with_providers_loaded_first(client, base_url):
    rng = random.Random(20240601)
    practitioners, organizations = providers(rng, 3, 2, npi_system=NPI_OID)
    ids = _load_providers(client, base_url, practitioners + organizations)
    for n in range(4):
        pb = patient_bundle(rng, practitioners, organizations, include_providers=n % 2 == 0,
                            encounters=2 + n, observations=2, conditions=1)
        entries = response_bundle(post_bundle(client, base_url, pb.bundle, prefer="return=minimal"),
                                  "transaction-response", len(pb.bundle["entry"]))
        for i, provider in enumerate(pb.provider_entries):  # ifNoneExist matched the loaded ones
            assert status(entries[i]) == 200, entries[i]
            assert location(entries[i])[1] == ids[provider]
        written = check_written(client, pb, entries, ids)
        patient = written[pb.patient]
        # the search indexes hold the rewritten references
        assert len(search_ids(client, "Observation", subject=patient)) == len(pb.observations)
        assert len(search_ids(client, "Encounter", patient=patient)) == len(pb.encounters)
        assert len(search_ids(client, "Condition", subject=patient)) == len(pb.conditions)
        first_encounter = written[pb.encounters[0][0]]
        expected = sorted(written[o[0]].split("/")[1] for o in pb.observations if o[1] == pb.encounters[0][0])
        assert search_ids(client, "Observation", encounter=first_encounter) == expected
    assert provider_ids(client, practitioners + organizations) == ids  # never duplicated


def test_a_large_synthea_patient(client, base_url):
    rng = random.Random(7)
    practitioners, organizations = providers(rng, 4, 2, npi_system=NPI_OID)
    ids = _load_providers(client, base_url, practitioners + organizations)
    pb = patient_bundle(rng, practitioners, organizations, include_providers=True, encounters=25,
                        observations=4, conditions=2)
    assert len(pb.bundle["entry"]) > 150
    entries = response_bundle(post_bundle(client, base_url, pb.bundle, prefer="return=minimal"),
                              "transaction-response", len(pb.bundle["entry"]))
    written = check_written(client, pb, entries, ids)
    assert len(search_ids(client, "Observation", subject=written[pb.patient])) == 100


def test_a_synthea_patient_bundle_creating_its_own_providers(client, base_url):
    rng = random.Random(42)
    practitioners, organizations = providers(rng, 2, 1, npi_system=NPI_OID)
    pb = patient_bundle(rng, practitioners, organizations, include_providers=True)
    entries = response_bundle(post_bundle(client, base_url, pb.bundle), "transaction-response",
                              len(pb.bundle["entry"]))
    ids = provider_ids(client, practitioners + organizations)
    for i, provider in enumerate(pb.provider_entries):
        assert status(entries[i]) == 201 and location(entries[i])[1] == ids[provider]
    check_written(client, pb, entries, ids)


def test_synthea_patients_with_the_http_npi_system(client, base_url):
    rng = random.Random(1999)
    practitioners, organizations = providers(rng, 2, 1, npi_system=NPI,
                                             org_system="https://github.com/synthetichealth/synthea")
    ids = _load_providers(client, base_url, practitioners + organizations)
    pb = patient_bundle(rng, practitioners, organizations, include_providers=False)
    response = post_bundle(client, base_url, pb.bundle)
    entries = response_bundle(response, "transaction-response", len(pb.bundle["entry"]))
    check_written(client, pb, entries, ids)
