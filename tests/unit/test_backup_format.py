"""A backup's manifest, names and retention (streams/ops/backup_format.py)."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta

import pytest

from streams.ops.backup_format import (
    BackupError,
    DumpedDatabase,
    Manifest,
    age_s,
    backup_name,
    describe_age,
    expired,
    name_time,
    parse_manifest,
)

AT = datetime(2026, 12, 5, 17, 30, 5, tzinfo=UTC)


def manifest() -> Manifest:
    return Manifest(node="hosp-a", side="local", created_at=AT.isoformat(), server_version="15.10",
                    databases=(DumpedDatabase("meta", "meta", "meta.dump", 1234, "ab" * 32, "0/1A2B3C8",
                                              {"documents": 3, "patients": 2}),),
                    duration_s=1.5)


def test_a_manifest_survives_its_json_form() -> None:
    original = manifest()
    assert parse_manifest(original.to_json(), "m.json") == original
    assert original.total_bytes == 1234


@pytest.mark.parametrize(("change", "fault"), [
    ({"format": "other/1"}, "format 'other/1'"),
    ({"databases": [{"store": "meta"}]}, "not a valid backup manifest"),
    ({"node": None, "side": None, "created_at": None, "databases": None}, "not a valid backup manifest"),
])
def test_an_invalid_manifest_is_refused_naming_the_file(change: dict[str, object], fault: str) -> None:
    data = {**json.loads(manifest().to_json()), **change}
    with pytest.raises(BackupError, match=fault) as refused:
        parse_manifest(json.dumps(data), "/b/manifest.json")
    assert "/b/manifest.json" in str(refused.value)


def test_names_sort_by_time_and_give_it_back() -> None:
    name = backup_name("hosp-a", AT)
    assert name == "hosp-a-20261205T173005Z"
    assert name_time(name) == AT
    assert name_time("hosp-a-latest") is None and name_time(".hosp-a-20261205T173005Z.partial") is None
    later = backup_name("hosp-a", AT + timedelta(seconds=1))
    assert sorted([later, name]) == [name, later]


def test_retention_keeps_the_newest_and_ignores_other_names() -> None:
    names = [backup_name("local", AT + timedelta(days=d)) for d in (3, 1, 2, 0)] + ["notes", ".x.partial"]
    assert expired(names, 2) == [backup_name("local", AT), backup_name("local", AT + timedelta(days=1))]
    assert expired(names, 4) == [] and expired(names, 10) == []
    with pytest.raises(BackupError, match="at least 1"):
        expired(names, 0)


def test_ages_read_like_a_status_line() -> None:
    assert age_s(manifest(), AT + timedelta(hours=3)) == 10800
    assert [describe_age(s) for s in (42, 300, 10800, 3 * 86400)] == ["42 s", "5 min", "3.0 h", "3.0 d"]
