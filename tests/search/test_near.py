"""The special parameter `near` on Location.position (R4 location.html#search, search.html#special):
`latitude|longitude|distance|units`, kilometres when the unit is left out."""

from __future__ import annotations

import pytest


@pytest.fixture
def places(data):
    def loc(lat, lon):
        return data.create({"resourceType": "Location", "position": {"latitude": lat, "longitude": lon}})["id"]

    return {
        "hotel_de_ville": loc(48.8566, 2.3522),
        "louvre": loc(48.8606, 2.3376),  # ~1.15 km west
        "lyon": loc(45.7640, 4.8357),  # ~392 km south-east
        "nowhere": data.create({"resourceType": "Location", "name": "no position"})["id"],
    }


@pytest.mark.parametrize("query, expected", [
    ("48.8566|2.3522|1|km", ("hotel_de_ville",)),
    ("48.8566|2.3522|2|km", ("hotel_de_ville", "louvre")),
    ("48.8566|2.3522|2", ("hotel_de_ville", "louvre")),  # km by default
    ("48.8566|2.3522|1500|m", ("hotel_de_ville", "louvre")),
    ("48.8566|2.3522|900|m", ("hotel_de_ville",)),
    ("48.8566|2.3522|1|[mi_i]", ("hotel_de_ville", "louvre")),  # 1.6 km
    ("48.8566|2.3522|400|km", ("hotel_de_ville", "louvre", "lyon")),
    ("48.8566|2.3522|380|km", ("hotel_de_ville", "louvre")),
    ("45.7640|4.8357|1|km", ("lyon",)),
    ("-45.7640|4.8357|100|km", ()),
])
def test_near(data, places, query, expected):
    assert data.ids("/Location", {"near": query}) == {places[k] for k in expected}


def test_near_or(data, places):
    assert data.ids("/Location", {"near": "45.7640|4.8357|1|km,48.8606|2.3376|0.5|km"}) == \
        {places["lyon"], places["louvre"]}


@pytest.mark.parametrize("value", ["abc", "48.8566", "48.8566|x|1|km", "48.8566|2.3522|1|parsec"])
def test_invalid_near_is_400(data, value):
    r = data.get("/Location", {"near": value})
    assert r.status_code == 400, r.text
