"""The MHLW master on the real stack (issue 16, docs/master.md): a 100,000-row import through ``platsync master``,
only target rows in the cloud and in the topics, no change event for an unchanged re-import, exactly the changed
target rows for a 1% update, targets added and removed (by command, file and plain SQL), protected cloud columns,
bad rows, and edits made while the link is down."""

from __future__ import annotations

import re
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import psycopg
import pytest
from confluent_kafka import Consumer

from connectors.stores.master_schema import MASTER_API, TARGETS_API
from connectors.stores.master_store import LOCK_KEY
from infra.local.stack import Stack
from streams.apply.barrier import wait_synced
from streams.core.codec import DecodeError, MessageCodec
from streams.core.modes import heartbeat_topic
from streams.master.csv_input import COLUMNS, Row
from streams.master.synthetic import changed, generate_rows, to_csv
from streams.runtime.connections import libpq_dsn
from streams.runtime.kafka_config import client_config
from streams.runtime.settings import Settings
from tests.e2e.network.conftest import topic_values
from tests.support.helpers import platsync

pytestmark = pytest.mark.e2e
ROWS = 100_000
TABLE = "master_medical_orgs"
#: The synced columns compared between the hospital's row and the cloud's copy.
COMPARED = (*COLUMNS, "version", "is_target")
CODE = re.compile(rb"(?<![0-9])[0-4][0-9][134][0-9]{7}(?![0-9])")


def synced(s: Settings) -> None:
    assert wait_synced(s, 120) == []


def run(s: Settings, *args: str, ok: bool = True) -> Any:
    result = platsync(s, "master", *args, timeout=300)
    if ok:
        assert result.returncode == 0, result.stdout + result.stderr
    return result


def master_events(s: Settings, codec: MessageCodec) -> list[Any]:
    """Every change event of the master table in the hospital's META topic, in order. Messages that are not
    change events are passed over: other tests of the session stack put bad bytes there on purpose (their dead
    letters); the capture writes the master's events with the current contract."""
    events: list[Any] = []
    for _, value in topic_values(s, [s.topic("local", "meta")]):
        try:
            events += [e for e in codec.decode_changes(value) if e.table == TABLE]
        except DecodeError:
            continue
    return events


def rows(s: Settings, side: str, where: str = "true") -> dict[str, dict[str, Any]]:
    with psycopg.connect(libpq_dsn(s, side, "meta")) as conn:
        cur = conn.execute(f"SELECT * FROM {TABLE} WHERE {where}")
        names = [d.name for d in cur.description or []]
        return {r[0]: dict(zip(names, r, strict=True)) for r in cur}


def synced_part(row: dict[str, Any]) -> tuple[Any, ...]:
    return tuple(row[c] for c in COMPARED)


def assert_cloud_holds_exactly_the_targets(s: Settings) -> dict[str, dict[str, Any]]:
    hospital = rows(s, "local", "is_target")
    cloud = rows(s, "remote")
    assert sorted(cloud) == sorted(hospital)
    for code, row in hospital.items():
        assert synced_part(cloud[code]) == synced_part(row), code
    return cloud


@pytest.fixture(scope="module")
def master(stack: Stack, tmp_path_factory: pytest.TempPathFactory) -> Iterator[dict[str, Any]]:
    """The full synthetic master imported (100,000 rows) with 30 targets, one of them not in the master."""
    s = stack.settings
    folder = tmp_path_factory.mktemp("master")
    all_rows = list(generate_rows(ROWS, seed=16))
    codes = [r["medical_id"] for r in all_rows]
    targets = codes[::3500][:29]  # spread over the file
    outside = next(r["medical_id"] for r in generate_rows(200, seed=99) if r["medical_id"] not in set(codes))
    (folder / "targets.yaml").write_text(
        "sync_targets:\n" + "".join(f'  - medical_id: "{c}"\n    note: "導入予定 {i}"\n'
                                    for i, c in enumerate([*targets, outside])), encoding="utf-8")
    run(s, "targets", "apply", str(folder / "targets.yaml"))
    (folder / "master.csv").write_bytes(to_csv(all_rows, "cp932"))
    result = run(s, "import", str(folder / "master.csv"))
    assert "100,000 new, 0 changed, 0 gone" in result.stdout, result.stdout
    synced(s)
    yield {"folder": folder, "rows": all_rows, "targets": targets, "outside": outside}


def test_a_full_import_reaches_the_cloud_for_the_targets_only(stack: Stack, master: dict[str, Any],
                                                              codec: MessageCodec) -> None:
    s = stack.settings
    assert len(rows(s, "local")) >= ROWS
    cloud = assert_cloud_holds_exactly_the_targets(s)
    assert sorted(cloud) == sorted(master["targets"])  # the outsider is listed but not in the master yet
    events = master_events(s, codec)
    assert events and {e.key for e in events} <= set(master["targets"]) | {master["outside"]}
    assert {e.api_id for e in events} <= {MASTER_API, TARGETS_API}
    # No other institution's code is in any message of any topic (a sample of 5,000 of them).
    outside = {r["medical_id"] for r in master["rows"][::20]} - set(master["targets"])
    consumer = Consumer({**client_config(s, "platsync-test-scan"), "group.id": "scan-topics"})
    try:
        # The heartbeat topic never goes quiet (the scan would last its 20 s limit) and carries no row.
        topics = [t for t in consumer.list_topics(timeout=10).topics
                  if not t.startswith("__") and t != heartbeat_topic(s)]
    finally:
        consumer.close()
    found = {code for _, value in topic_values(s, topics) for code in CODE.findall(value)}
    assert not found & outside
    with psycopg.connect(libpq_dsn(s, "remote", "meta")) as conn:  # nothing flows back from the cloud
        published = {r[0] for r in conn.execute("SELECT tablename FROM pg_publication_tables")}
    assert TABLE not in published and "documents" in published


def test_an_unchanged_reimport_writes_nothing_and_makes_no_change_event(stack: Stack, master: dict[str, Any],
                                                                        codec: MessageCodec) -> None:
    s = stack.settings
    before = len(master_events(s, codec))
    versions = {c: r["version"] for c, r in rows(s, "local").items()}
    result = run(s, "import", str(master["folder"] / "master.csv"))
    assert "0 new, 0 changed, 0 gone" in result.stdout and "nothing to write" in result.stdout, result.stdout
    synced(s)
    assert len(master_events(s, codec)) == before
    assert {c: r["version"] for c, r in rows(s, "local").items()} == versions


def test_a_one_percent_update_sends_exactly_the_changed_target_rows(stack: Stack, master: dict[str, Any],
                                                                    codec: MessageCodec) -> None:
    s = stack.settings
    current = {c: {k: v for k, v in r.items() if k in COLUMNS} for c, r in rows(s, "local").items()}
    base: list[Row] = [current[r["medical_id"]] for r in master["rows"] if r["medical_id"] in current]
    for r in base:
        r["designated_on"] = r["designated_on"].isoformat() if r["designated_on"] else None
    update = changed(base, 0.01, seed=161)
    moved = {a["medical_id"] for a, b in zip(base, update, strict=True) if a != b}
    # Make sure some targets are among the changed rows, as in a real monthly update.
    forced = master["targets"][:3]
    update = [{**r, "administrator": f"新任 {r['medical_id']}"} if r["medical_id"] in forced else r for r in update]
    moved |= set(forced)
    path = master["folder"] / "master-1pct.csv"
    path.write_bytes(to_csv(update, "utf-8"))
    before = len(master_events(s, codec))
    result = run(s, "import", str(path))
    assert f"0 new, {len(moved)} changed, 0 gone" in result.stdout, result.stdout
    synced(s)
    new_events = master_events(s, codec)[before:]
    crossing = moved & set(master["targets"])
    assert sorted(e.key for e in new_events) == sorted(crossing)
    cloud = assert_cloud_holds_exactly_the_targets(s)
    for code in forced:
        assert cloud[code]["administrator"] == f"新任 {code}"


def test_targets_added_and_removed_by_command_file_and_sql(stack: Stack, master: dict[str, Any]) -> None:
    s = stack.settings
    codes = [r["medical_id"] for r in master["rows"]]
    added, by_sql = codes[7], codes[11]
    removed = master["targets"][5]
    run(s, "targets", "add", added, "--note", "追加")
    run(s, "targets", "remove", removed)
    with psycopg.connect(libpq_dsn(s, "local", "meta", "app")) as conn:  # managed by table: plain SQL
        conn.execute("INSERT INTO sync_target_orgs (medical_id, note) VALUES (%s, 'SQL')", (by_sql,))
    synced(s)
    cloud = assert_cloud_holds_exactly_the_targets(s)
    assert added in cloud and by_sql in cloud and removed not in cloud
    listing = run(s, "targets", "list").stdout
    assert added in listing and removed not in listing and "not in the master" in listing
    # Re-adding a removed target brings its row back (a newer version than the delete's tombstone).
    run(s, "targets", "add", removed)
    synced(s)
    assert removed in assert_cloud_holds_exactly_the_targets(s)
    # A file makes the table equal to it, printing the difference first; --dry-run writes nothing.
    wanted = master["folder"] / "targets.csv"
    wanted.write_text("医療機関コード,備考\n" + "".join(f"{c},csv\n" for c in master["targets"][:10]), encoding="utf-8")
    dry = run(s, "targets", "apply", str(wanted), "--dry-run")
    assert "dry run" in dry.stdout and f"- {added}" in dry.stdout, dry.stdout
    assert added in rows(s, "remote")
    run(s, "targets", "apply", str(wanted))
    synced(s)
    assert sorted(assert_cloud_holds_exactly_the_targets(s)) == sorted(master["targets"][:10])


def test_protected_cloud_columns_survive_updates_and_never_flow_back(stack: Stack, master: dict[str, Any],
                                                                    codec: MessageCodec) -> None:
    s = stack.settings
    code = master["targets"][0]
    with psycopg.connect(libpq_dsn(s, "remote", "meta", "app")) as conn:
        conn.execute(f"UPDATE {TABLE} SET display_alias = 'みどり病院（本院）', cloud_note = '紹介窓口あり' "
                     "WHERE medical_id = %s", (code,))
        conn.commit()
        with pytest.raises(psycopg.errors.RaiseException, match="only these columns may be edited"):
            conn.execute(f"UPDATE {TABLE} SET name = 'cloud edit' WHERE medical_id = %s", (code,))
        conn.rollback()
    before = len(master_events(s, codec))
    with psycopg.connect(libpq_dsn(s, "local", "meta", "app")) as conn:  # the hospital updates that institution
        conn.execute(f"UPDATE {TABLE} SET phone = '03-0000-0016' WHERE medical_id = %s", (code,))
    synced(s)
    cloud = assert_cloud_holds_exactly_the_targets(s)[code]
    assert (cloud["phone"], cloud["display_alias"], cloud["cloud_note"]) == ("03-0000-0016", "みどり病院（本院）",
                                                                            "紹介窓口あり")
    assert [e.key for e in master_events(s, codec)[before:]] == [code]  # the hospital's change only
    assert "display_alias" not in rows(s, "local")[code]


def test_bad_rows_are_reported_and_the_valid_ones_imported(stack: Stack, master: dict[str, Any]) -> None:
    s = stack.settings
    held = rows(s, "local")
    good, dated = [r for r in generate_rows(300, seed=1616) if r["medical_id"] not in held][:2]
    path = master["folder"] / "bad.csv"
    text = to_csv([good], "utf-8").decode()  # line 2
    text += "1312345678,壊れた病院,,,,,,,,,\r\n"  # line 3: a wrong check digit
    text += to_csv([{**dated, "designated_on": "R9.13.1"}], "utf-8").decode().split("\r\n", 1)[1]  # line 4
    path.write_text(text, encoding="utf-8")
    strict = run(s, "import", "--keep-missing", "--strict", str(path), ok=False)
    assert strict.returncode == 1 and "line 3, medical_id" in strict.stderr, strict.stderr
    assert good["medical_id"] not in rows(s, "local")
    result = run(s, "import", "--keep-missing", str(path))
    assert "2 invalid row value(s)" in result.stderr, result.stderr
    assert "line 3, medical_id" in result.stderr and "line 4, designated_on" in result.stderr, result.stderr
    assert "1 new, 0 changed, 0 gone" in result.stdout, result.stdout
    held = rows(s, "local")
    assert good["medical_id"] in held and dated["medical_id"] not in held
    # Not even the admin may truncate the master (the application role has no TRUNCATE privilege at all).
    with psycopg.connect(libpq_dsn(s, "local", "meta")) as conn, \
            pytest.raises(psycopg.errors.RaiseException, match="TRUNCATE"):
        conn.execute(f"TRUNCATE {TABLE}")


@pytest.mark.embedded_broker
def test_imports_and_target_edits_made_offline_reach_the_cloud_after(stack: Stack, master: dict[str, Any]) -> None:
    s = stack.settings
    target = master["targets"][1]
    assert platsync(s, "link", "down").returncode == 0
    try:
        current = rows(s, "local")
        update = [{k: (v.isoformat() if k == "designated_on" and v else v) for k, v in current[c].items()
                   if k in COLUMNS} for c in sorted(current)]
        update = [{**r, "beds": 999} if r["medical_id"] == target else r for r in update]
        path = master["folder"] / "offline.csv"
        path.write_bytes(to_csv(update, "utf-8"))
        assert "0 new, 1 changed, 0 gone" in run(s, "import", str(path)).stdout
        newcomer = master["targets"][20]
        run(s, "targets", "add", newcomer)
    finally:
        assert platsync(s, "link", "up").returncode == 0
    synced(s)
    cloud = assert_cloud_holds_exactly_the_targets(s)
    assert cloud[target]["beds"] == 999 and newcomer in cloud


def test_a_second_import_is_refused_while_one_holds_the_lock(stack: Stack, master: dict[str, Any]) -> None:
    s = stack.settings
    with psycopg.connect(libpq_dsn(s, "local", "meta", "app")) as other:
        other.execute("SELECT pg_advisory_lock(%s)", (LOCK_KEY,))
        busy = run(s, "import", str(master["folder"] / "master.csv"), ok=False)
        assert busy.returncode == 3 and "another master import" in busy.stderr, busy.stderr
        busy = run(s, "targets", "add", master["targets"][2], ok=False)
        assert busy.returncode == 3, busy.stderr


def test_the_cli_refuses_a_cloud_node_and_a_bad_code(stack: Stack) -> None:
    s = stack.settings
    cloud = run(s, "targets", "list", "--node", "remote", ok=False)
    assert cloud.returncode == 2 and "cloud node" in cloud.stderr
    bad = run(s, "targets", "add", "1312345678", ok=False)
    assert bad.returncode == 2 and "check digit" in bad.stderr


def test_the_synthetic_master_is_written_by_the_cli(stack: Stack, tmp_path: Path) -> None:
    result = run(stack.settings, "generate", str(tmp_path / "m.csv"), "--rows", "1000", "--encoding", "utf-8")
    assert "1,000 synthetic institutions" in result.stdout
    assert (tmp_path / "m.csv").read_text(encoding="utf-8").startswith("医療機関コード,")
