"""`_content` (every text of a resource) and `_text` (its narrative): words that begin words of
the resource, case and accents aside; a comma gives alternatives. What a coordination inbox
needs to find the messages about a subject."""

from __future__ import annotations

import pytest

NARRATIVE = ('<div xmlns="http://www.w3.org/1999/xhtml">Suivi de l\'<b>insuffisance cardiaque</b> '
             '&amp; du diabète</div>')


@pytest.fixture
def messages(data):
    data.placeholders("PractitionerRole/ide", "PractitionerRole/gp")

    def message(text: str, narrative: str | None = None, recipient: str = "PractitionerRole/ide") -> str:
        resource = {"resourceType": "Communication", "status": "completed",
                    "recipient": [{"reference": recipient}], "payload": [{"contentString": text}]}
        if narrative:
            resource["text"] = {"status": "generated", "div": narrative}
        return data.create(resource)["id"]

    return {
        "inr": message("INR à 3,2 ce matin, je baisse la Préviscan ?"),
        "oedeme": message("Œdèmes des membres inférieurs, poids +2 kg", NARRATIVE),
        "rdv": message("RDV cardiologue le 12, merci de confirmer", recipient="PractitionerRole/gp"),
    }


@pytest.mark.parametrize("query, expected", [
    ("inr", ("inr",)),
    ("INR", ("inr",)),
    ("previscan", ("inr",)),  # accents and case folded
    ("Préviscan", ("inr",)),
    ("prev", ("inr",)),  # a word's beginning
    ("cardio", ("rdv",)),
    ("cardiaque", ("oedeme",)),  # the narrative is text of the resource too
    ("oedemes membres", ("oedeme",)),  # all the words
    ("oedemes cardiologue", ()),
    ("inr,cardiologue", ("inr", "rdv")),  # alternatives
    ("viscan", ()),  # inside a word: no
    ("completed", ("inr", "oedeme", "rdv")),  # codes are text
    ("practitionerrole", ()),  # references are not
])
def test_content(data, messages, query, expected):
    assert data.ids("/Communication", {"_content": query}) == {messages[k] for k in expected}


def test_text_is_the_narrative_only(data, messages):
    assert data.ids("/Communication", {"_text": "diabete"}) == {messages["oedeme"]}
    assert data.ids("/Communication", {"_text": "membres"}) == set()  # in the payload, not the narrative


def test_content_with_other_criteria(data, messages):
    assert data.ids("/Communication", {"_content": "cardio,inr", "recipient": "PractitionerRole/ide"}) == \
        {messages["inr"]}


@pytest.mark.parametrize("params", [{"_content": " , "}, {"_content:exact": "inr"}, {"_text:missing": "true"}])
def test_bad_fulltext_criteria_are_400(data, params):
    r = data.get("/Communication", params)
    assert r.status_code == 400, r.text
    assert r.json()["resourceType"] == "OperationOutcome"


def test_capability_statement_lists_them(client):
    statement = client.get("/metadata").json()
    communication = next(r for r in statement["rest"][0]["resource"] if r["type"] == "Communication")
    assert {"_content", "_text"} <= {p["name"] for p in communication["searchParam"]}
