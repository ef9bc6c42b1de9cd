"""resync's pure parts: which index entries a fresh LIST lacks, and skipping buried ones."""
from __future__ import annotations

from pipeline_operator.resync import Freshness, unlisted


def entry(name: str, uid: str | None) -> dict:
    return {"metadata": {"name": name, "uid": uid}}


def test_entries_missing_from_a_fresh_listing_are_candidates_unless_already_buried():
    entries = [entry("a", "u1"), entry("b", "u2"), entry("c", "u3"), entry("no-uid", None)]
    assert unlisted(entries, listed={"u1"}, buried={"u3"}) == [("b", "u2")]
    assert unlisted(entries, listed={"u1", "u2", "u3"}, buried=set()) == []


def test_buried_objects_are_skipped_by_every_reader():
    fresh = Freshness(buried={"u2"})
    assert fresh.alive([entry("a", "u1"), entry("a", "u2"), entry("b", "u3")]) == [entry("a", "u1"), entry("b", "u3")]
    # A step deleted and re-created under the same name: the new object (new uid) is kept.
    assert fresh.alive([entry("a", "u2"), entry("a", "u9")]) == [entry("a", "u9")]
