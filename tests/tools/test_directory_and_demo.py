"""CSV directory import and demo data, through the real commands."""

from __future__ import annotations

import json
import subprocess
import sys

import httpx
import pytest

from fhir_server.tools import directory
from fhir_server.validation.ins import nir_problem
from tests.conftest import die_with_pytest

HEADER = ("rpps;nom;prenom;code_profession;code_specialite;mssante;telephone;identifiant_structure;"
          "type_identifiant_structure;nom_structure;categorie_structure\n")


def run(*args, env=None, cwd=None):
    return subprocess.run([sys.executable, "-m", "fhir_server", *args], capture_output=True, text=True, env=env,
                          cwd=cwd, timeout=300, preexec_fn=die_with_pytest)


def test_import_directory_is_idempotent_and_complete(tmp_path, base_url, client):
    csv = tmp_path / "dir.csv"
    csv.write_text(HEADER + "10101010141;Martin;Claire;10;SM54;claire.martin@medecin.mssante.fr;0102030405;"
                            "750000031;FINESS;MSP des Lilas;msp\n"
                            "10101010142;Durand;Paul;60;;paul.durand@infirmier.mssante.fr;;750000031;FINESS;MSP des Lilas;msp\n"
                            "10101010141;Martin;Claire;10;SM54;;;12345678900031;SIRET;CPTS Est;cpts\n", encoding="utf-8")
    for _ in range(2):
        done = run("import-directory", str(csv), "--url", base_url)
        assert done.returncode == 0, done.stderr
        assert "imported 3 row(s): 2 Organization, 2 Practitioner, 3 PractitionerRole" in done.stdout
    roles = client.get("/PractitionerRole", params={"practitioner.identifier": "https://rpps.esante.gouv.fr|10101010141",
                                                     "_include": "PractitionerRole:organization"}).json()
    assert roles["total"] == 2
    names = {e["resource"]["name"] for e in roles["entry"] if e["resource"]["resourceType"] == "Organization"}
    assert names == {"MSP des Lilas", "CPTS Est"}
    role = next(e["resource"] for e in roles["entry"] if e["resource"]["resourceType"] == "PractitionerRole"
                and e["resource"].get("telecom"))
    email = role["telecom"][0]
    assert email["system"] == "email" and email["extension"][0]["valueCoding"]["code"] == "MSSANTE"
    assert client.get("/Practitioner", params={"identifier": "https://rpps.esante.gouv.fr|10101010141"}).json()["total"] == 1


def test_bad_rows_are_reported_by_line_and_nothing_is_imported(tmp_path, base_url, client):
    csv = tmp_path / "bad.csv"
    csv.write_text(HEADER + "10101010199;Ok;Anne;60;;;;750000099;FINESS;MSP;msp\n"
                            "123;Martin;Claire;10;;claire.martin;;750000099;FINESS;MSP;msp\n"
                            "10101010198;;Paul;60;;;;7500;FINESS;MSP;msp\n", encoding="utf-8")
    done = run("import-directory", str(csv), "--url", base_url)
    assert done.returncode == 1
    assert "line 3: RPPS '123' is not 11 digits" in done.stderr
    assert "line 3: MSSanté address 'claire.martin' is not an e-mail address" in done.stderr
    assert "line 4: nom is empty" in done.stderr and "line 4: FINESS '7500'" in done.stderr
    assert client.get("/Practitioner", params={"identifier": "https://rpps.esante.gouv.fr|10101010199"}).json()["total"] == 0


def test_mapping_is_checked_against_its_schema(tmp_path):
    mapping = json.loads((directory.MAPPINGS / "directory-csv.json").read_text())
    del mapping["columns"]["rpps"]
    broken = tmp_path / "m.json"
    broken.write_text(json.dumps(mapping))
    with pytest.raises(directory.DirectoryError) as failure:
        directory.load_mapping(broken)
    assert "does not follow its schema" in failure.value.problems[0] and "rpps" in failure.value.problems[0]


def test_demo_data_is_consistent_and_loads(tmp_path, base_url, client):
    out = tmp_path / "demo"
    done = run("demo-data", "--patients", "25", "--seed", "11", "--out", str(out), "--per-file", "10")
    assert done.returncode == 0, done.stderr
    files = sorted(out.glob("*.json"))
    assert [f.name for f in files][:2] == ["00-directory.json", "10-protocols.json"] and len(files) == 5
    resources = [e["resource"] for f in files for e in json.loads(f.read_text())["entry"]]
    patients = [r for r in resources if r["resourceType"] == "Patient"]
    assert len(patients) == 25
    assert all(nir_problem(p["identifier"][0]["value"]) is None for p in patients)
    loaded = run("load", str(out), "--url", base_url, "--quiet")
    assert loaded.returncode == 0, loaded.stdout + loaded.stderr
    assert f"{len(resources)} resources loaded" in loaded.stdout
    first = patients[0]["id"]
    everything = client.get(f"/Patient/{first}/$everything", params={"_count": 1000}).json()  # one page: the week adds more than 50
    kinds = {e["resource"]["resourceType"] for e in everything["entry"]}
    assert {"Patient", "CareTeam", "CarePlan", "Task", "Communication", "Appointment", "Encounter",
            "DocumentReference", "PractitionerRole"} <= kinds
    # every reference points to something that exists
    keys = {f"{r['resourceType']}/{r['id']}" for r in resources}
    dangling = [ref for r in resources for ref in _refs(r) if ref not in keys]
    assert dangling == []
    # the same data a second time changes nothing
    again = run("load", str(out), "--url", base_url, "--quiet")
    assert again.returncode == 0
    assert client.get(f"/Patient/{first}").json()["meta"]["versionId"] in ("1", "2")


def _refs(value):
    if isinstance(value, dict):
        ref = value.get("reference")
        if isinstance(ref, str) and "/" in ref and not ref.startswith("#"):
            yield ref
        for v in value.values():
            yield from _refs(v)
    elif isinstance(value, list):
        for v in value:
            yield from _refs(v)


def test_examples_load(tmp_path):
    from tests.conftest import ROOT, start_server

    server = start_server(tmp_path / "data")
    try:
        done = run("load", str(ROOT / "examples"), "--url", server.base_url, "--quiet")
        assert done.returncode == 0, done.stdout + done.stderr
        total = httpx.get(f"{server.base_url}/Patient", params={"_summary": "count"}).json()["total"]
        assert total == 3
        # the held RCPs' Encounters and the decisions' messages are those the server would write: none added
        written = [e["resource"]["resourceType"] for f in (ROOT / "examples").glob("*.json")
                   for e in json.loads(f.read_text())["entry"]]
        for type_ in ("Encounter", "Communication", "CarePlan", "Slot"):
            stored = httpx.get(f"{server.base_url}/{type_}", params={"_summary": "count"}).json()["total"]
            assert stored == written.count(type_), type_
    finally:
        server.stop()


def test_demo_data_gives_the_care_team_rule_its_cases():
    """Teams differ by structure, each run by one; every patient has a médecin traitant, one who is
    not in the team; a membership has ended, one goes through an Organization; a Consent denies
    a team member; the coordinator is in no team."""
    from fhir_server.tools import demo

    resources = [r for rs in demo.generate(16, seed=5).files.values() for r in rs]
    by_key = {f"{r['resourceType']}/{r['id']}": r for r in resources}
    teams = {t["subject"]["reference"]: t for t in resources if t["resourceType"] == "CareTeam"}
    patients = [r for r in resources if r["resourceType"] == "Patient"]
    assert len(teams) == len(patients) == 16

    def codes(role_ref):
        return {c["code"] for cc in by_key[role_ref]["code"] for c in cc["coding"]}

    runners = []
    for n, patient in enumerate(patients):
        team = teams[f"Patient/{patient['id']}"]
        run_by = team["managingOrganization"][0]["reference"]
        assert team["extension"] == [{"url": demo.SD + "coord-ext-structure", "valueReference": {"reference": run_by}}]
        runners.append(run_by)
        [gp] = patient["generalPractitioner"]
        assert gp["reference"].startswith("PractitionerRole/") and "gp" in codes(gp["reference"])
        members = [p["member"]["reference"] for p in team["participant"]]
        assert (gp["reference"] in members) == (n % 4 != 2), n
        assert not any("coordinator" in codes(m) for m in members if m.startswith("PractitionerRole/"))
    assert runners[:4] == [f"Organization/s5-{k}" for k in ("msp0", "msp1", "cpts", "cds2")]
    member_sets = {frozenset(p["member"]["reference"] for p in t["participant"]) for t in teams.values()}
    assert len(member_sets) > 4
    periods = [p.get("period", {}) for t in teams.values() for p in t["participant"]]
    assert any(p.get("end", "9999") < "2026" for p in periods)
    assert any(p["member"]["reference"].startswith("Organization/s5-msp") for t in teams.values() for p in t["participant"])
    consents = [r for r in resources if r["resourceType"] == "Consent"]
    assert [c["patient"]["reference"] for c in consents] == ["Patient/s5-pat1", "Patient/s5-pat9"]
    for consent in consents:
        assert consent["status"] == "active" and consent["policyRule"] and consent["category"]
        assert consent["scope"]["coding"][0]["code"] == "patient-privacy"
        assert consent["provision"]["type"] == "permit"
        [deny] = consent["provision"]["provision"]
        denied = deny["actor"][0]["reference"]["reference"]
        assert deny["type"] == "deny" and denied in {p["member"]["reference"] for p in teams[consent["patient"]["reference"]]["participant"]}


def test_examples_are_what_the_generator_writes(tmp_path):
    from tests.conftest import ROOT

    done = run("demo-data", "--patients", "3", "--seed", "2026", "--out", str(tmp_path))
    assert done.returncode == 0, done.stderr
    written = sorted(p.name for p in tmp_path.glob("*.json"))
    assert written == sorted(p.name for p in (ROOT / "examples").glob("*.json"))
    for name in written:
        assert (tmp_path / name).read_bytes() == (ROOT / "examples" / name).read_bytes(), name
