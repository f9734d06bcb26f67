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
    check_node_name,
    describe_age,
    epoch_after,
    expired,
    name_time,
    parse_lsn,
    parse_manifest,
    wal_file_after,
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


def test_every_node_name_of_a_topology_or_a_pod_gives_a_listed_backup_name() -> None:
    # A topology's node ids may hold "_" (streams/topology/load.py); a hospital's stores in the cloud are
    # "<cloud>.<hospital>"; the Kubernetes CronJobs pass the endpoint ids (remote.hosp-a).
    for node in ("local", "hosp_a", "remote.hosp-a", "remote.hosp_b", "h1"):
        assert check_node_name(node) == node
        assert name_time(backup_name(node, AT)) == AT
    for bad in ("", "Hosp-A", "-a", ".a", "a/b", "a b", "x" * 64):
        with pytest.raises(BackupError, match="cannot name backups after"):
            check_node_name(bad)


def test_retention_keeps_the_newest_and_ignores_other_names() -> None:
    names = [backup_name("local", AT + timedelta(days=d)) for d in (3, 1, 2, 0)] + ["notes", ".x.partial"]
    assert expired(names, 2) == [backup_name("local", AT), backup_name("local", AT + timedelta(days=1))]
    assert expired(names, 4) == [] and expired(names, 10) == []
    with pytest.raises(BackupError, match="at least 1"):
        expired(names, 0)


def test_ages_read_like_a_status_line() -> None:
    assert age_s(manifest(), AT + timedelta(hours=3)) == 10800
    assert [describe_age(s) for s in (42, 300, 10800, 3 * 86400)] == ["42 s", "5 min", "3.0 h", "3.0 d"]


def test_a_restored_server_continues_past_the_old_positions_and_ids() -> None:
    lsn = parse_lsn("16/B374D848")
    assert lsn == 0x16B374D848
    name = wal_file_after(lsn)
    assert name == "0000000100000016000000B4"  # the segment after 16/B3xxxxxx
    assert parse_lsn("16/B4000000") == (0x16 << 32) | (0xB4 << 24)
    assert wal_file_after(0) == "000000010000000000000001"
    assert wal_file_after((1 << 32) - 1) == "000000010000000100000000"  # past a log id's last segment
    assert epoch_after(5000) == 1 and epoch_after((3 << 32) + 7) == 4
    assert (epoch_after(123456) << 32) > 123456
    with pytest.raises(BackupError, match="not a WAL position"):
        parse_lsn("nonsense")
