"""A Subscription notifies only what its owner's token may see (the équipe de soins rule), with
tokens from a real OpenID provider."""

from __future__ import annotations

import json
import time
import uuid

import pytest

from tests.notifications.receiver import start_receiver
from tests.notifications.test_rest_hook import subscription
from tests.oidc.provider import Client
from tests.security.conftest import bearer, http, provider, secured  # noqa: F401 - fixtures

TAG = uuid.uuid4().hex[:6]
DOCTOR, P1, P2 = f"doc-{TAG}", f"mine-{TAG}", f"other-{TAG}"
CODE = "http://loinc.org|8867-4"
CLIENTS = [Client("backend", scope=["system/*.cruds"]),
           Client("doctor", scope=["user/*.cruds"], claims={"fhirUser": f"Practitioner/{DOCTOR}"})]
SERVER_ENV = {"FHIR_SUBSCRIPTION_ALLOW_PRIVATE": "true", "FHIR_SUBSCRIPTION_RETRY_MS": "100"}


@pytest.fixture(scope="module")
def receiver():
    r = start_receiver()
    yield r
    r.close()


def _observation(id_: str, patient: str) -> dict:
    return {"resourceType": "Observation", "id": id_, "status": "final",
            "code": {"coding": [{"system": "http://loinc.org", "code": "8867-4"}]},
            "subject": {"reference": f"Patient/{patient}"}, "valueQuantity": {"value": 70, "unit": "/min"}}


def test_a_professional_is_told_only_of_their_patients(http, provider, receiver):  # noqa: F811
    admin = bearer(provider.token("backend", scope="system/*.cruds"))
    doctor = bearer(provider.token("doctor", scope="user/*.cruds"))
    world = [{"resourceType": "Practitioner", "id": DOCTOR, "name": [{"family": "Doc"}]},
             {"resourceType": "Patient", "id": P1, "generalPractitioner": [{"reference": f"Practitioner/{DOCTOR}"}]},
             {"resourceType": "Patient", "id": P2}]
    for resource in world:
        answer = http.put(f"/{resource['resourceType']}/{resource['id']}", json=resource, headers=admin)
        assert answer.status_code == 201, answer.text
    answer = http.post("/Subscription", json=subscription(receiver, "/doc", f"Observation?code={CODE}"),
                       headers=doctor)
    assert answer.status_code == 201, answer.text
    for id_, patient in ((f"o2-{TAG}", P2), (f"o1-{TAG}", P1), (f"o3-{TAG}", P2)):
        assert http.put(f"/Observation/{id_}", json=_observation(id_, patient), headers=admin).status_code == 201
    got = receiver.wait("/doc", 1)
    time.sleep(1.5)  # what is out of reach never comes
    assert [json.loads(r.body)["id"] for r in receiver.on("/doc")] == [f"o1-{TAG}"]
    assert got
