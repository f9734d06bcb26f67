"""TransactionStamper over REAL Debezium envelopes (tests/fixtures/debezium, see capture_fixtures.py)."""

from __future__ import annotations

import dataclasses
import json
from datetime import UTC, date, datetime
from pathlib import Path
from typing import Any

import pytest

from connectors.capture.envelope import EnvelopeError, Marker, TransactionStamper
from connectors.stores.tables import coerce_row, metadata_for
from streams.core.codec import decode_change, encode_change
from streams.core.model import ChangeEvent

FIXTURES = Path(__file__).resolve().parents[1] / "fixtures" / "debezium"
NOW = 1_800_000_000_000
PDF_BYTES = b"%PDF-1.7\n\x00\x01\xfe\xff signed \xe8\xa8\x98\xe5\x90\x8d"


def load(name: str) -> dict[str, Any]:
    """One captured scenario: ``{"store", "records": [{"destination", "key", "value"}]}``."""
    return json.loads((FIXTURES / f"{name}.json").read_text(encoding="utf-8"))


def stamper(side: str = "local", store: str = "meta", **kwargs: Any) -> TransactionStamper:
    return TransactionStamper(side, store, clock=lambda: NOW, **kwargs)


def feed(st: TransactionStamper, *names: str) -> list[ChangeEvent]:
    out: list[ChangeEvent] = []
    for name in names:
        for rec in load(name)["records"]:
            out.extend(st.convert(rec["key"], rec["value"]))
    return out


def captured_signed_record() -> ChangeEvent:
    """The real captured signed-record insert (PRV_DOC_006 at the hospital's fructos_own), stamped: the
    row image the router tables (route, replica, share gate, subscriptions) re-label per case."""
    events = [e for e in feed(TransactionStamper("local", "fructos_own", clock=lambda: 0), "fructos_signed_insert")
              if e.table == "signed_records"]
    assert len(events) == 1 and events[0].row is not None
    assert isinstance(events[0].row.get("content"), bytes) and events[0].row["entity"] == "document"
    return events[0]


def value_of(name: str, index: int) -> dict[str, Any]:
    return json.loads(load(name)["records"][index]["value"])


def ev(event_id: str, table: str, op: str, key: str, version: int, row: dict[str, Any] | None,
       api_id: str | None, call_id: str | None, lsn: int, txid: int, commit_ts_ms: int,
       store: str = "meta", origin_side: str = "local", before: dict[str, Any] | None = None) -> ChangeEvent:
    return ChangeEvent(event_id=event_id, source_side="local", source_store=store, table=table, op=op, key=key,
                       version=version, row=row, api_id=api_id, call_id=call_id, origin_side=origin_side,
                       lsn=lsn, txid=txid, commit_ts_ms=commit_ts_ms, captured_ts_ms=NOW, before=before)


PATIENT_V1 = {"id": "pat-0001", "patient_number": "P-000123", "family_name": "山田", "given_name": "太郎",
              "birth_date": "1980-02-29", "sex": "M", "institution_code": "INST01", "record_id": "rec-0001",
              "version": 1, "deleted": False, "updated_at": "2024-04-01T00:30:00.123456Z"}
PATIENT_V2 = {**PATIENT_V1, "given_name": "次郎", "version": 2, "updated_at": "2024-04-02T08:00:00.000000Z"}
PATIENT_V3 = {**PATIENT_V2, "deleted": True, "version": 3, "updated_at": "2024-04-03T08:00:00.000000Z"}
DOCUMENT_V1 = {"id": "doc-0001", "patient_id": "pat-0001", "doc_type": "referral", "title": "紹介状",
               "record_id": "rec-doc-0001", "content_hash": "ab" * 32, "status": "approved",
               "approved_by": "staff-0001", "approved_at": "2024-04-01T10:00:00.000000Z", "version": 1,
               "deleted": False, "updated_at": "2024-04-01T10:00:01.500000Z"}
SIGNED_V1 = {"id": "sr-0001", "entity": "document", "subject_id": "doc-0001", "media_type": "application/pdf",
             "content": PDF_BYTES, "content_hash": "cd" * 32, "signed_by": "staff-0001", "approved": True,
             "version": 1, "deleted": False, "updated_at": "2024-04-01T10:00:02.000000Z"}
STAFF_NOMARK = {"id": "staff-nomark-1", "staff_code": "S-901", "display_name": "鈴木 一郎", "role": "doctor",
                "username": "suzuki", "version": 1, "deleted": False, "updated_at": "2026-11-22T04:44:45.842519Z"}

CASES: list[tuple[str, str, list[ChangeEvent]]] = [
    ("meta_insert", "meta", [
        ev("local.meta:31025720:0", "patients", "c", "pat-0001", 1, PATIENT_V1, "PRV_PAT_001", "call-insert-1",
           31025720, 733, 1795322683280),
        ev("local.meta:31026024:0", "documents", "c", "doc-0001", 1, DOCUMENT_V1, "PRV_PAT_001", "call-insert-1",
           31026024, 733, 1795322683280),
    ]),
    ("meta_update", "meta", [
        ev("local.meta:31026792:0", "patients", "u", "pat-0001", 2, PATIENT_V2, "PRV_PAT_001", "call-update-2",
           31026792, 734, 1795322683689, before=PATIENT_V1),
    ]),
    ("meta_logical_delete", "meta", [
        ev("local.meta:31027392:0", "patients", "u", "pat-0001", 3, PATIENT_V3, "PRV_PAT_001", "call-ldel-3",
           31027392, 735, 1795322684049, before=PATIENT_V2),
    ]),
    ("meta_hard_delete", "meta", [  # version comes from the before-image (REPLICA IDENTITY FULL)
        ev("local.meta:31027848:0", "patients", "d", "pat-0001", 3, None, "PRV_DOC_008", "call-hdel-4",
           31027848, 736, 1795322684408),
    ]),
    ("fructos_signed_insert", "fructos_own", [
        ev("local.fructos_own:31028560:0", "signed_records", "c", "sr-0001", 1, SIGNED_V1, "PRV_DOC_006",
           "call-doc-5", 31028560, 737, 1795322684767, store="fructos_own"),
    ]),
    ("probe", "meta", [
        ev("local.meta:31029336:0", "platsync_probe", "probe", "probe-0001", 0, None, None, None,
           31029336, 738, 1795322685127),
    ]),
    ("echo", "meta", []),  # marker origin remote, applied_by_sync: dropped at the source
    ("unmarked", "meta", [
        ev("local.meta:31030280:0", "staff", "c", "staff-nomark-1", 1, STAFF_NOMARK, None, None,
           31030280, 740, 1795322685843),
    ]),
    ("heartbeat", "meta", []),
    ("heartbeat_message", "meta", []),  # op "m" from the heartbeat action query, no txId
]


@pytest.mark.parametrize(("scenario", "store", "expected"), CASES, ids=[c[0] for c in CASES])
def test_fixture_scenarios_convert_exactly(scenario: str, store: str, expected: list[ChangeEvent]) -> None:
    assert load(scenario)["store"] == store
    assert feed(stamper(store=store), scenario) == expected


def test_counters_over_the_whole_meta_stream() -> None:
    st = stamper()
    events = feed(st, "meta_insert", "meta_update", "meta_logical_delete", "meta_hard_delete", "probe", "echo",
                  "unmarked", "heartbeat", "heartbeat_message")
    assert [e.op for e in events] == ["c", "c", "u", "u", "d", "probe", "c"]
    assert (st.events, st.echoes_dropped, st.probes, st.unmarked, st.ignored) == (7, 1, 1, 1, 2)
    assert (st.last_lsn, st.last_commit_ts_ms) == (31030280, 1795322685843)
    assert len({e.event_id for e in events}) == len(events)


def _with_marker(origin: str, applied_by_sync: bool) -> tuple[str, str]:
    marker = value_of("echo", 0)
    marker["after"].update(origin_side=origin, applied_by_sync=applied_by_sync)
    recs = load("echo")["records"]
    return json.dumps(marker), recs[1]["value"]


@pytest.mark.parametrize(("side", "origin", "by_sync", "dropped"), [
    ("local", "remote", True, True),    # the engine applied a remote change here: echo
    ("local", "remote", False, True),   # another side's origin, whoever wrote it: echo
    ("local", "local", True, True),     # applied by the engine on its own side's behalf: never re-send
    ("remote", "remote", True, True),
    ("remote", "remote", False, False),  # a genuine remote API call captured on remote
    ("local", "local", False, False),
])
def test_echo_rule(side: str, origin: str, by_sync: bool, dropped: bool) -> None:
    st = TransactionStamper(side, "meta", clock=lambda: NOW)
    marker, row = _with_marker(origin, by_sync)
    assert st.convert(None, marker) == []
    out = st.convert(None, row)
    assert st.echoes_dropped == (1 if dropped else 0)
    if not dropped:
        assert [(e.api_id, e.origin_side, e.source_side, e.key) for e in out] == [
            ("PLATSYNC_APPLY", origin, side, "staff-echo-1")]


def test_unmarked_and_probe_carry_this_side_as_origin() -> None:
    st = TransactionStamper("remote", "meta", clock=lambda: NOW)
    out = feed(st, "unmarked", "probe")
    assert [(e.op, e.api_id, e.call_id, e.origin_side, e.source_side) for e in out] == [
        ("c", None, None, "remote", "remote"), ("probe", None, None, "remote", "remote")]
    assert out[0].event_id.startswith("remote.meta:")


def test_tombstones_heartbeats_and_other_operations_are_ignored() -> None:
    st = stamper()
    truncate = value_of("unmarked", 0)
    truncate.update(op="t", before=None, after=None)
    other_table = value_of("unmarked", 0)
    other_table["source"]["table"] = "platsync_tombstone"
    probe_delete = value_of("probe", 0)
    probe_delete.update(op="d", before=probe_delete["after"], after=None)
    for value in (None, load("heartbeat")["records"][0]["value"], json.dumps(truncate), json.dumps(other_table),
                  json.dumps(probe_delete)):
        assert st.convert('{"id":"x"}', value) == []
    assert st.ignored == 5 and st.events == 0


def test_schema_wrapped_envelope_is_unwrapped() -> None:
    rec = load("unmarked")["records"][0]
    wrapped = json.dumps({"schema": {"type": "struct"}, "payload": json.loads(rec["value"])})
    assert stamper().convert(rec["key"], wrapped) == stamper().convert(rec["key"], rec["value"])


@pytest.mark.parametrize(("key", "value", "message"), [
    (None, "{not json", "value is not valid JSON"),
    ("{oops", load("unmarked")["records"][0]["value"], "key is not valid JSON"),
    (None, "[1, 2]", "expected an object"),
    (None, json.dumps({"op": "c", "after": {"id": "x"}}), "without a source block"),
    (None, json.dumps({**value_of("unmarked", 0), "source": {**value_of("unmarked", 0)["source"], "lsn": "12"}}),
     "source.lsn"),
    (None, json.dumps({**value_of("meta_hard_delete", 1), "before": None}), "REPLICA IDENTITY FULL"),
    (None, json.dumps({**value_of("unmarked", 0), "after": {"id": "x", "version": "1"}}), "not an integer"),
    (None, json.dumps({**value_of("unmarked", 0), "after": {"version": 1}}), "lacks 'id'"),
    (None, json.dumps({**value_of("echo", 0), "after": {"id": 9, "origin_side": "local"}}), "lacks api_id"),
])
def test_malformed_records_raise_envelope_error(key: str | None, value: str, message: str) -> None:
    with pytest.raises(EnvelopeError, match=message.replace("(", r"\(")):
        stamper().convert(key, value)


def test_bytea_that_is_not_base64_raises() -> None:
    bad = value_of("fructos_signed_insert", 1)
    bad["after"]["content"] = "not base64!"
    with pytest.raises(EnvelopeError, match="signed_records.content"):
        stamper(store="fructos_own").convert(None, json.dumps(bad))


def _marker_for(txid: int) -> str:
    marker = value_of("meta_update", 0)
    marker["source"]["txId"] = txid
    marker["after"]["call_id"] = f"call-{txid}"
    return json.dumps(marker)


def _row_for(txid: int, lsn: int) -> str:
    row = value_of("meta_update", 1)
    row["source"].update(txId=txid, lsn=lsn)
    return json.dumps(row)


def test_memory_is_bounded_to_the_last_transactions() -> None:
    st = stamper(max_transactions=3)
    for txid in range(1000, 1010):
        st.convert(None, _marker_for(txid))
    assert st.open_transactions == 3
    assert list(st.markers_state()) == ["1007", "1008", "1009"]
    newest, oldest = st.convert(None, _row_for(1009, 1)), st.convert(None, _row_for(1000, 2))
    assert (newest[0].api_id, newest[0].call_id) == ("PRV_PAT_001", "call-1009")
    assert (oldest[0].api_id, oldest[0].origin_side) == (None, "local")


def test_first_marker_of_a_transaction_wins() -> None:
    st = stamper()
    st.convert(None, _marker_for(42))
    second = json.loads(_marker_for(42))
    second["after"].update(api_id="PRV_OTHER", call_id="other")
    st.convert(None, json.dumps(second))
    assert st.convert(None, _row_for(42, 7))[0].call_id == "call-42"


def test_saved_markers_stamp_a_transaction_resumed_after_its_marker() -> None:
    first = stamper()
    assert first.convert(None, _marker_for(77)) == []
    saved = json.loads(json.dumps(first.markers_state()))  # as the runner persists it
    resumed = stamper()
    resumed.restore_markers(saved)
    assert resumed.convert(None, _row_for(77, 5))[0].api_id == "PRV_PAT_001"
    assert stamper().convert(None, _row_for(77, 5))[0].api_id is None  # without the saved state
    with pytest.raises(EnvelopeError, match="invalid saved marker state"):
        stamper().restore_markers({"x": {"api_id": "A"}})


def test_saved_markers_hold_every_field_of_a_marker() -> None:
    st = stamper()
    st.convert(None, _marker_for(78))
    saved = st.markers_state()["78"]
    assert set(saved) == {f.name for f in dataclasses.fields(Marker)}  # a new field must be saved too
    assert Marker(**saved) == Marker("PRV_PAT_001", "call-78", "local", False)


def test_changes_sharing_an_lsn_get_distinct_deterministic_ids() -> None:
    st = stamper()
    ids = [st.convert(None, _row_for(5, 900))[0].event_id for _ in range(3)]
    ids.append(st.convert(None, _row_for(5, 901))[0].event_id)
    assert ids == ["local.meta:900:0", "local.meta:900:1", "local.meta:900:2", "local.meta:901:0"]
    assert stamper().convert(None, _row_for(5, 900))[0].event_id == "local.meta:900:0"  # replay: same id


def test_events_round_trip_through_avro_and_coerce_for_the_sinks() -> None:
    events = feed(stamper(), "meta_insert") + feed(stamper(store="fructos_own"), "fructos_signed_insert")
    for event in events:
        assert decode_change(encode_change(event)) == event
    patient = coerce_row(metadata_for("meta").tables["patients"], events[0].row or {})
    assert patient["birth_date"] == date(1980, 2, 29)
    assert patient["updated_at"] == datetime(2024, 4, 1, 0, 30, 0, 123456, tzinfo=UTC)
    signed = coerce_row(metadata_for("fructos_own").tables["signed_records"], events[2].row or {})
    assert signed["content"] == PDF_BYTES and signed["approved"] is True


def test_updates_carry_the_captured_before_image() -> None:
    """Real capture: each update's before-image is the state the previous change produced."""
    events = feed(stamper(), "meta_insert", "meta_update", "meta_logical_delete", "meta_hard_delete")
    by_op = [(e.op, e.version, e.before is not None) for e in events]
    assert by_op == [("c", 1, False), ("c", 1, False), ("u", 2, True), ("u", 3, True), ("d", 3, False)]
    insert, update, logical_delete = events[0], events[2], events[3]
    assert update.before == insert.row and logical_delete.before == update.row
    assert (update.before or {})["version"] == 1 and (logical_delete.before or {})["deleted"] is False
    for event in (update, logical_delete):
        assert decode_change(encode_change(event)) == event
    patients = metadata_for("meta").tables["patients"]
    assert coerce_row(patients, update.before or {})["updated_at"] == datetime(2024, 4, 1, 0, 30, 0, 123456,
                                                                               tzinfo=UTC)


def test_rejects_unknown_store_and_bad_bound() -> None:
    with pytest.raises(ValueError, match="keycloak"):
        TransactionStamper("local", "keycloak")
    with pytest.raises(ValueError, match="max_transactions"):
        TransactionStamper("local", "meta", max_transactions=0)


def test_fixture_files_are_untouched_debezium_output() -> None:
    for path in sorted(FIXTURES.glob("*.json")):
        doc = json.loads(path.read_text(encoding="utf-8"))
        assert doc["side"] == "local" and doc["records"], path.name
        for rec in doc["records"]:
            assert rec["destination"].startswith(("platsync.local.", "__debezium-heartbeat.")), path.name
            assert isinstance(rec["value"], str) and isinstance(rec["key"], str)


def test_echo_rows_in_debeziums_own_format_are_dropped_without_parsing() -> None:
    st = TransactionStamper("local", "meta", clock=lambda: NOW)
    marker, row = (r["value"] for r in load("echo")["records"])  # compact JSON, exactly as captured
    assert json.loads(marker)["after"]["applied_by_sync"] is True
    assert st.convert(None, marker) == []
    assert st.convert(None, row) == []
    # Proof that the echo was recognised before parsing: a row of that transaction whose row image
    # is not even valid JSON is dropped as an echo instead of failing.
    broken = '{"before":null,"after":{"id":"x", oops' + row[row.index(',"source":'):]
    assert st.convert(None, broken) == []
    assert st.echoes_dropped == 2


def test_echo_fast_path_is_not_fooled_by_row_contents() -> None:
    st = TransactionStamper("local", "meta", clock=lambda: NOW)
    marker, row = (r["value"] for r in load("echo")["records"])
    st.convert(None, marker)
    echo_txid = json.loads(marker)["source"]["txId"]
    genuine = value_of("unmarked", 0)
    # A genuine row whose text contains the echo's txId and a synced table name, as a string value.
    genuine["after"]["display_name"] = f'"txId":{echo_txid},"table":"staff"'
    out = st.convert(None, json.dumps(genuine, separators=(",", ":")))
    assert [e.key for e in out] == [genuine["after"]["id"]] and st.echoes_dropped == 0


def test_forgotten_echo_transactions_leave_the_fast_path() -> None:
    st = TransactionStamper("local", "meta", clock=lambda: NOW, max_transactions=1)
    marker, row = (r["value"] for r in load("echo")["records"])
    st.convert(None, marker)
    other = value_of("meta_insert", 0)  # a genuine marker of another transaction pushes the echo out
    assert other["source"]["table"] == "platsync_txn_marker"
    st.convert(None, json.dumps(other))
    out = st.convert(None, row)
    assert st.echoes_dropped == 0 and [e.api_id for e in out] == [None]  # unmarked now, not an echo


def test_a_marker_debezium_did_not_deliver_is_looked_up_once_per_transaction() -> None:
    asked: list[int] = []
    found = {501: Marker("PRV_DOC_006", "call-501", "local", False)}

    def lookup(txid: int) -> Marker | None:
        asked.append(txid)
        return found.get(txid)

    st = stamper(lookup_marker=lookup)
    first, second = st.convert(None, _row_for(501, 10)), st.convert(None, _row_for(501, 11))
    assert [(e.api_id, e.call_id, e.origin_side) for e in first + second] == [("PRV_DOC_006", "call-501", "local")] * 2
    assert asked == [501] and st.markers_recovered == 1 and st.unmarked == 0
    assert st.markers_state()["501"]["call_id"] == "call-501"  # saved like a captured marker
    unmarked = st.convert(None, _row_for(502, 12)) + st.convert(None, _row_for(502, 13))
    assert [e.api_id for e in unmarked] == [None, None] and asked == [501, 502] and st.unmarked == 2


def test_a_delivered_marker_is_never_looked_up() -> None:
    def lookup(txid: int) -> Marker | None:
        raise AssertionError(f"looked up {txid}")

    st = stamper(lookup_marker=lookup)
    st.convert(None, _marker_for(600))
    assert st.convert(None, _row_for(600, 1))[0].call_id == "call-600"


def test_a_looked_up_echo_marker_drops_the_transaction_s_rows() -> None:
    st = stamper(lookup_marker=lambda txid: Marker("PRV_DOC_006", None, "remote", True))
    assert st.convert(None, _row_for(700, 1)) == [] and st.convert(None, _row_for(700, 2)) == []
    assert st.echoes_dropped == 2 and st.markers_recovered == 1
