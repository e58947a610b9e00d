"""The offer catalogue: validation naming the field, persistence shared by processes,
start and end times."""

from __future__ import annotations

import subprocess
import sys

import pytest

from bandit.core.errors import BadRequest, NotFound
from bandit.value.catalogue import Catalogue, entry_namespaces, parse_entry

GOOD = {"features": {"offer": {"brand": "acme", "size": 3}}, "title": "Cheap flights",
        "description": "to Rome", "payout": 12.5, "cost": 2.0, "price": 0.01,
        "advertiser": "acme", "category": "travel", "start": "2026-12-07T00:00:00Z",
        "end": 1796688000}


def test_a_valid_entry():
    e = parse_entry("o-1", GOOD, now=5.0)
    assert e.start == 1796601600.0 and e.end == 1796688000.0 and e.updated == 5.0
    assert e.fields() == {"payout": 12.5, "cost": 2.0, "margin": 10.5, "price": 0.01}
    assert e.facts().advertiser == "acme" and e.facts().margin_value == 10.5
    assert e.as_json()["start"] == "2026-12-07T00:00:00Z"
    ns = entry_namespaces(e)
    assert ns["ooffer"] == {"brand=acme": 1.0, "size": 3.0}
    assert ns["ocatalogue"]["title=cheap"] == 1.0


@pytest.mark.parametrize("offer_id, body, field", [
    ("", {}, "id"), ("x" * 300, {}, "id"), (5, {}, "id"),
    ("o", [], ""), ("o", {"payout": "12"}, "payout"), ("o", {"payout": -1}, "payout"),
    ("o", {"payout": float("nan")}, "payout"), ("o", {"payout": True}, "payout"),
    ("o", {"cost": -0.5}, "cost"), ("o", {"price": [1]}, "price"),
    ("o", {"title": 3}, "title"), ("o", {"description": "x" * 5000}, "description"),
    ("o", {"advertiser": ""}, "advertiser"), ("o", {"category": 7}, "category"),
    ("o", {"start": "yesterday"}, "start"), ("o", {"start": "2026-12-07T00:00:00"}, "start"),
    ("o", {"end": -5}, "end"), ("o", {"end": True}, "end"),
    ("o", {"start": 100, "end": 100}, "end"), ("o", {"features": [1]}, "features"),
    ("o", {"features": {"n": {"x": float("inf")}}}, "features.n.x"),
    ("o", {"colour": "red"}, "colour"), ("o", {"id": "other"}, "id"),
])
def test_bad_entries_name_the_field(offer_id, body, field):
    with pytest.raises(BadRequest) as err:
        parse_entry(offer_id, body)
    assert err.value.field == field


def test_put_get_delete_and_revisions(tmp_path):
    cat = Catalogue(tmp_path / "catalogue.sqlite")
    assert cat.put(parse_entry("a", GOOD)) is True
    assert cat.put(parse_entry("a", {**GOOD, "payout": 3.0})) is False
    assert cat.get("a").payout == 3.0
    rev = cat.revision
    cat.put(parse_entry("b", {"payout": 1.0}))
    assert [e.id for e in cat.changed_since(rev)[1]] == ["b"]
    cat.delete("a")
    with pytest.raises(NotFound):
        cat.get("a")
    with pytest.raises(NotFound):
        cat.delete("a")
    now, changed, gone = cat.changed_since(rev)
    assert now == rev + 2 and [e.id for e in changed] == ["b"] and gone == ["a"]
    cat.put(parse_entry("a", GOOD))
    assert cat.changed_since(rev)[2] == []


def test_start_and_end_are_honoured(tmp_path):
    cat = Catalogue(tmp_path / "c.sqlite")
    cat.put(parse_entry("early", {"end": 100}))
    cat.put(parse_entry("window", {"start": 100, "end": 200}))
    cat.put(parse_entry("late", {"start": 200}))
    cat.put(parse_entry("always", {}))
    assert [e.id for e in cat.active(50)] == ["always", "early"]
    assert [e.id for e in cat.active(100)] == ["always", "window"]
    assert [e.id for e in cat.active(200)] == ["always", "late"]


def test_another_process_sees_the_same_catalogue(tmp_path):
    path = tmp_path / "shared.sqlite"
    code = ("import sys; from bandit.value.catalogue import Catalogue, parse_entry; "
            "c = Catalogue(sys.argv[1]); c.put(parse_entry('w2', {'payout': 4.0}))")
    subprocess.run([sys.executable, "-c", code, str(path)], check=True, timeout=60)
    cat = Catalogue(path)
    assert cat.get("w2").payout == 4.0
    cat.delete("w2")
    code2 = ("import sys; from bandit.value.catalogue import Catalogue; "
             "print(len(Catalogue(sys.argv[1]).entries()))")
    out = subprocess.run([sys.executable, "-c", code2, str(path)], check=True, timeout=60,
                         capture_output=True, text=True)
    assert out.stdout.strip() == "0"


def test_a_view_on_a_damaged_file_starts_and_serves_nothing_from_it(tmp_path, caplog):
    from bandit.core.features import Limits
    from bandit.value.catalogue_view import CatalogueView

    path = tmp_path / "catalogue.sqlite"
    path.write_bytes(b"this is not a database file " * 200)
    view = CatalogueView(path, Limits())  # a server starting on it: no crash
    assert view.read_errors == 1 and view.entries == {}
    assert str(path) in caplog.text and "cannot be used" in caplog.text
