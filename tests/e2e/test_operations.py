"""Operating the real stack: CLI commands, dead letters, concurrency without loops, crashes,
replay and restart."""

from __future__ import annotations

import dataclasses
import json
import os
import random
import signal
import threading
import time
from pathlib import Path

import psycopg
import pytest
from confluent_kafka import OFFSET_BEGINNING, Consumer, Producer, TopicPartition

from connectors.reference_api.service import ReferenceApi
from infra.local.process import read_pid
from infra.local.stack import Stack
from streams.apply import barrier
from streams.apply.barrier import wait_synced
from streams.core.codec import DecodeError, MessageCodec
from streams.core.model import ChangeEvent
from streams.runtime.connections import libpq_dsn
from streams.runtime.kafka_config import client_config
from streams.runtime.settings import Settings
from tests.support.helpers import platsync
from tests.support.snapshot import snapshot

pytestmark = pytest.mark.e2e


def synced(settings: Settings, timeout: float = 90) -> None:
    pending = wait_synced(settings, timeout)
    assert pending == [], pending


def read_topic(settings: Settings, topic: str, timeout_s: float = 20) -> list[bytes]:
    """Every message of a single-partition topic, read from the beginning until quiet."""
    consumer = Consumer({**client_config(settings), "group.id": f"t-{time.time_ns()}",
                         "auto.offset.reset": "earliest", "enable.auto.commit": False,
                         "session.timeout.ms": 6000})
    consumer.assign([TopicPartition(topic, 0, OFFSET_BEGINNING)])
    values: list[bytes] = []
    deadline, quiet_since = time.monotonic() + timeout_s, time.monotonic()
    try:
        while time.monotonic() < deadline and time.monotonic() - quiet_since < 3:
            msg = consumer.poll(0.5)
            if msg is None or msg.error():
                continue
            values.append(msg.value())
            quiet_since = time.monotonic()
    finally:
        consumer.close()
    return values


def readable_changes(values: list[bytes], codec: MessageCodec) -> list[ChangeEvent]:
    """The change events of ``values``, skipping what the dead-letter tests injected."""
    events: list[ChangeEvent] = []
    for value in values:
        try:
            events.extend(codec.decode_changes(value))
        except DecodeError:
            continue
    return events


def doc_payload(tag: str, n: int = 1) -> dict:
    return {"documents": [{"patient_id": f"p-{tag}", "doc_type": "note", "title": f"{tag}-{i}",
                           "media_type": "text/plain", "content_text": f"{tag} body {i}", "signed_by": "dr"}
                          for i in range(n)]}


def test_cli_status_routes_inspect_wait(stack: Stack) -> None:
    s = stack.settings
    status = platsync(s, "status", "--json")
    assert status.returncode == 0, status.stderr
    data = json.loads(status.stdout)
    assert data["healthy"] and set(data["routes"]) == {"local_to_remote", "remote_to_local"}
    assert set(data["routes"]["remote_to_local"]["stores"]) == {"meta", "fructos_own", "fructos_patient", "keycloak"}
    routes = platsync(s, "routes", "--format", "json")
    assert json.loads(routes.stdout)["local_to_remote"]["PRV_STF_001"] == {"source": ["meta"], "target": ["meta"]}
    absent = platsync(s, "inspect", "--side", "remote", "--store", "meta", "--entity", "staff", "--id", "nope")
    assert absent.returncode == 3 and "no staff 'nope'" in absent.stderr
    payload = Path(s.data_dir) / "staff.json"
    payload.write_text(json.dumps({"staff_code": "CLI-1", "display_name": "CLI 太郎", "role": "clerk"}))
    call = platsync(s, "call", "PRV_STF_001", "--side", "local", "--file", str(payload))
    assert call.returncode == 0, call.stderr
    staff_id = json.loads(call.stdout)["written"]["meta"]["staff"][0]
    waited = platsync(s, "wait-synced", "--timeout", "60")
    assert waited.returncode == 0, waited.stderr
    shown = platsync(s, "inspect", "--side", "remote", "--store", "meta", "--entity", "staff", "--id", staff_id)
    assert shown.returncode == 0 and json.loads(shown.stdout)["display_name"] == "CLI 太郎"
    text_status = platsync(s, "status")
    assert "local_to_remote" in text_status.stdout and "HEALTHY" in text_status.stdout


def test_bad_input_is_dead_lettered_and_the_route_continues(stack: Stack, codec: MessageCodec) -> None:
    s = stack.settings
    topic = s.topic("local", "meta")
    unknown = ChangeEvent("local.meta:1:0", "local", "meta", "staff", "c", "x1", 1, {"id": "x1"}, "PRV_XXX_999",
                          None, "local", 1, 1, 1, 1)
    producer = Producer(client_config(s))
    producer.produce(topic, key=b"garbage", value=b"\x00not avro at all")
    producer.produce(topic, key=b"unknown", value=codec.encode_change(unknown))
    producer.flush(10)
    with psycopg.connect(libpq_dsn(s, "local", "meta")) as conn:  # a transaction without a marker
        conn.execute("INSERT INTO staff (id, staff_code, display_name, role) VALUES ('unmarked-1', 'U', 'U', 'x')")
    with ReferenceApi(s, "local") as api:
        good = api.call("PRV_STF_001", {"staff_code": "after-bad", "display_name": "後続", "role": "clerk"})
    synced(s)
    good_id = good["written"]["meta"]["staff"][0]
    with psycopg.connect(libpq_dsn(s, "remote", "meta")) as conn:
        assert conn.execute("SELECT count(*) FROM staff WHERE id = %s", (good_id,)).fetchone() == (1,)
        assert conn.execute("SELECT count(*) FROM staff WHERE id = 'unmarked-1'").fetchone() == (0,)
    letters = [codec.decode("dead_letter", v) for v in read_topic(s, s.dead_letter_topic("local_to_remote"))]
    kinds = {(d["error_kind"], d["original_key"]) for d in letters}
    assert ("decode", b"garbage") in kinds and ("unknown_api", b"unknown") in kinds
    unmarked = [d for d in letters if d["error_kind"] == "unknown_api" and d["original_key"] == b"staff:unmarked-1"]
    assert unmarked and "platsync_mark_api" in unmarked[0]["hint"]
    mine = [d for d in letters if d["original_key"] in (b"garbage", b"unknown", b"staff:unmarked-1")]
    assert len(mine) >= 3 and all(d["original_value"] is not None and d["hint"] for d in mine)


def test_a_change_batch_is_taken_apart_and_each_bad_event_dead_lettered_alone(stack: Stack,
                                                                             codec: MessageCodec) -> None:
    s = stack.settings
    topic = s.topic("local", "meta")
    with ReferenceApi(s, "local") as api:
        real_id = api.call("PRV_STF_001", {"staff_code": "batch-src", "display_name": "束", "role": "clerk"})[
            "written"]["meta"]["staff"][0]
    synced(s)
    real = next(e for e in readable_changes(read_topic(s, topic), codec) if e.key == real_id)
    assert real.row is not None
    good = dataclasses.replace(real, event_id="local.meta:batch:0", key="batch-good",
                               row={**real.row, "id": "batch-good", "staff_code": "batch-good"})
    unknown = dataclasses.replace(good, event_id="local.meta:batch:1", key="batch-unknown", api_id="PRV_XXX_999",
                                  row={**good.row, "id": "batch-unknown"})
    garbage = b"\x50not a change event"
    batch = codec.encode_change_batch([garbage, codec.encode_change(unknown), codec.encode_change(good)])
    corrupt = codec.encode_change_batch([codec.encode_change(good), codec.encode_change(good)])[:-4]
    producer = Producer(client_config(s))
    producer.produce(topic, key=b"batch", value=batch)
    producer.produce(topic, key=b"corrupt-batch", value=corrupt)
    producer.flush(10)
    with ReferenceApi(s, "local") as api:
        after = api.call("PRV_STF_001", {"staff_code": "after-batch", "display_name": "後", "role": "clerk"})
    synced(s)
    with psycopg.connect(libpq_dsn(s, "remote", "meta")) as conn:
        assert conn.execute("SELECT staff_code FROM staff WHERE id = 'batch-good'").fetchone() == ("batch-good",)
        assert conn.execute("SELECT count(*) FROM staff WHERE id = 'batch-unknown'").fetchone() == (0,)
        assert conn.execute("SELECT count(*) FROM staff WHERE id = %s",
                            (after["written"]["meta"]["staff"][0],)).fetchone() == (1,)
    letters = [codec.decode("dead_letter", v) for v in read_topic(s, s.dead_letter_topic("local_to_remote"))]
    mine = {(d["error_kind"], d["original_key"], d["original_value"]) for d in letters
            if d["original_key"] in (b"batch", b"corrupt-batch")}
    assert mine == {("decode", b"batch", garbage), ("unknown_api", b"batch", codec.encode_change(unknown)),
                    ("decode", b"corrupt-batch", corrupt)}


def test_concurrent_writes_on_both_sides_converge_without_loops(stack: Stack, codec: MessageCodec) -> None:
    s = stack.settings
    created: dict[str, list[str]] = {"local": [], "remote": []}
    errors: list[BaseException] = []

    def writer(side: str, seed: int) -> None:
        rng = random.Random(seed)
        try:
            with ReferenceApi(s, side) as api:
                deadline = time.monotonic() + 8
                while time.monotonic() < deadline:
                    ids = api.call("PRV_DOC_006", doc_payload(f"{side}-{rng.random()}", rng.randint(1, 5)))
                    docs = ids["written"]["meta"]["documents"]
                    created[side].extend(docs)
                    if rng.random() < 0.5:
                        api.call("PRV_DOC_007", {"documents": [{"id": docs[0], "title": "upd", "signed_by": "x"}]})
                    if rng.random() < 0.3:
                        api.call("PRV_DOC_009", {"documents": [{"id": docs[-1], "approved_by": "chief"}]})
        except BaseException as exc:  # noqa: BLE001 - reported by the assertion below
            errors.append(exc)

    threads = [threading.Thread(target=writer, args=(side, i)) for i, side in enumerate(["local", "remote"] * 2)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(60)
    assert not errors, errors
    synced(s)
    snap = snapshot(s)
    for store in ("meta", "fructos_own"):
        table = "documents" if store == "meta" else "signed_records"
        local, remote = snap[("local", store, table)], snap[("remote", store, table)]
        assert set(local) == set(remote)
        assert local == remote
    all_docs = created["local"] + created["remote"]
    assert len(all_docs) == len(set(all_docs)) > 20
    # No loops: each capture topic holds only its own side's changes (echoes never reach Kafka).
    for side in ("local", "remote"):
        for value in read_topic(s, s.topic(side, "meta")):
            try:
                events = codec.decode_changes(value)
            except Exception:  # noqa: BLE001 - garbage injected by the dead-letter test
                continue
            for ev in events:
                if ":fz" in ev.event_id:  # injected by tests/e2e/test_fuzz_bad_input.py, some on purpose foreign
                    continue
                assert ev.origin_side == side and ev.source_side == side


def test_kill_9_of_worker_and_capture_mid_stream_loses_nothing(stack: Stack) -> None:
    s = stack.settings
    created: list[str] = []
    stop = threading.Event()

    def writer() -> None:
        with ReferenceApi(s, "local") as api:
            while not stop.is_set():
                created.extend(api.call("PRV_DOC_006", doc_payload(f"k9-{len(created)}", 10))
                               ["written"]["meta"]["documents"])

    thread = threading.Thread(target=writer)
    thread.start()
    try:
        time.sleep(2)
        for name in ("worker-local_to_remote", "capture-local"):
            pid = read_pid(s.data_dir, name)
            assert pid is not None
            os.kill(pid, signal.SIGKILL)
            time.sleep(1)
        time.sleep(1)
    finally:
        stop.set()
        thread.join(30)
    stack.up(say=lambda m: None)
    synced(s, timeout=120)
    with psycopg.connect(libpq_dsn(s, "remote", "meta")) as conn:
        present = {r[0] for r in conn.execute("SELECT id FROM documents WHERE id = ANY(%s)", (created,))}
    assert len(created) > 50 and present == set(created)


def test_replay_from_beginning_leaves_every_store_unchanged(stack: Stack) -> None:
    s = stack.settings
    synced(s)
    before = snapshot(s)
    result = platsync(s, "replay", "local_to_remote", "--to-beginning")
    assert result.returncode == 0, result.stderr
    assert "offset 0" in result.stdout
    synced(s, timeout=120)
    assert snapshot(s) == before


def test_down_and_up_resume_without_loss(stack: Stack) -> None:
    s = stack.settings
    with ReferenceApi(s, "remote") as api:
        first = api.call("PRV_DOC_006", doc_payload("before-restart", 5))["written"]["meta"]["documents"]
    stack.down(say=lambda m: None)
    assert all(pid is None for pid in stack.running().values())
    stack.up(say=lambda m: None)
    with ReferenceApi(s, "remote") as api:
        second = api.call("PRV_DOC_006", doc_payload("after-restart", 5))["written"]["meta"]["documents"]
    synced(s)
    with psycopg.connect(libpq_dsn(s, "local", "meta")) as conn:
        rows = conn.execute("SELECT count(*) FROM documents WHERE id = ANY(%s)", (first + second,)).fetchone()
    assert rows == (10,)


def test_wait_synced_times_out_with_a_report_while_a_worker_is_down(stack: Stack) -> None:
    s = stack.settings
    pid = read_pid(s.data_dir, "worker-remote_to_local")
    assert pid is not None
    os.kill(pid, signal.SIGTERM)
    deadline = time.monotonic() + 60
    while read_pid(s.data_dir, "worker-remote_to_local") is not None and time.monotonic() < deadline:
        time.sleep(0.2)
    with ReferenceApi(s, "remote") as api:
        doc = api.call("PRV_DOC_006", doc_payload("while-down"))["written"]["meta"]["documents"][0]
    result = platsync(s, "wait-synced", "--timeout", "3")
    assert result.returncode == 4
    assert "NOT synced" in result.stderr and "remote_to_local from meta" in result.stderr
    assert "local_to_remote" not in result.stderr
    status = json.loads(platsync(s, "status", "--json").stdout)
    assert not status["healthy"] and not status["processes"]["worker-remote_to_local"]["running"]
    assert status["routes"]["remote_to_local"]["stores"]["meta"]["lag_bytes"] > 0
    stack.up(say=lambda m: None)
    synced(s)
    shown = platsync(s, "inspect", "--side", "local", "--store", "meta", "--entity", "documents", "--id", doc)
    assert shown.returncode == 0


def test_replay_to_time_reapplies_from_there_and_changes_nothing(stack: Stack) -> None:
    s = stack.settings
    with ReferenceApi(s, "remote") as api:
        api.call("PRV_DOC_006", doc_payload("before-mark", 3))
        synced(s)
        mark = time.time()
        time.sleep(1)
        api.call("PRV_DOC_006", doc_payload("after-mark", 3))
    synced(s)
    before = snapshot(s)
    iso = time.strftime("%Y-%m-%dT%H:%M:%S+00:00", time.gmtime(mark))
    result = platsync(s, "replay", "remote_to_local", "--to-time", iso)
    assert result.returncode == 0, result.stderr
    offsets = [int(line.rsplit(" ", 1)[1]) for line in result.stdout.splitlines() if "-> offset" in line]
    assert offsets and any(o > 0 for o in offsets)
    synced(s, timeout=120)
    assert snapshot(s) == before
    naive = platsync(s, "replay", "remote_to_local", "--to-time", "2026-01-01T00:00:00")
    assert naive.returncode == 1 and "needs a UTC offset" in naive.stderr


def test_down_mid_stream_then_up_loses_no_acknowledged_write(stack: Stack) -> None:
    s = stack.settings
    acknowledged: list[str] = []
    stop = threading.Event()

    def writer() -> None:
        api = ReferenceApi(s, "local")
        try:
            while not stop.is_set():
                try:
                    result = api.call("PRV_DOC_006", doc_payload(f"mid-{len(acknowledged)}", 5))
                except Exception:  # noqa: BLE001 - the stores are going down; only acknowledged writes count
                    break
                acknowledged.extend(result["written"]["meta"]["documents"])
        finally:
            api.close()

    thread = threading.Thread(target=writer)
    thread.start()
    time.sleep(2)
    stack.down(say=lambda m: None)
    stop.set()
    thread.join(30)
    stack.up(say=lambda m: None)
    synced(s)
    with psycopg.connect(libpq_dsn(s, "remote", "meta")) as conn:
        present = {r[0] for r in conn.execute("SELECT id FROM documents WHERE id = ANY(%s)", (acknowledged,))}
    assert len(acknowledged) > 20 and present == set(acknowledged)


def test_a_probe_that_never_reaches_the_capture_is_sent_again(stack: Stack, monkeypatch: pytest.MonkeyPatch) -> None:
    """Debezium's resume can drop a probe (the only change of its transaction). Simulated: the first probes
    waited for are one past the ones inserted, so no capture ever carries them; the renewed probes do."""
    real = barrier.insert_probes
    calls: list[dict[tuple[str, str], str]] = []

    def first_never_delivered(settings: Settings) -> dict[tuple[str, str], str]:
        probes = real(settings)
        calls.append(probes)
        if len(calls) > 1:
            return probes
        return {key: str(int(probe) + 1).zfill(len(probe)) for key, probe in probes.items()}

    monkeypatch.setattr(barrier, "insert_probes", first_never_delivered)
    started = time.monotonic()
    pending = barrier.wait_synced(stack.settings, 60)
    assert pending == [], pending
    assert len(calls) >= 2 and time.monotonic() - started >= barrier.PROBE_RENEW_S
