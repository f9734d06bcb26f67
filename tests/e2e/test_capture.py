"""The capture runner against real PostgreSQL, the real broker and the real Debezium engine.

Each runner is a subprocess (``python -m connectors.capture.runner``) reading the settings file of
a throw-away data dir; the tests write through psycopg and read the topics back with confluent-kafka.
Figures (time to ready, events/s, RSS) are printed with a ``[capture]`` prefix (``pytest -s``).
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import psycopg
import pytest
from confluent_kafka import OFFSET_BEGINNING, Consumer, TopicPartition

from connectors.capture.debezium import slot_name
from connectors.capture.runner import capture_ready
from infra.local.process import free_port, stop_pid
from streams.core.codec import decode_changes
from streams.core.model import ChangeEvent
from streams.runtime.connections import libpq_dsn
from streams.runtime.kafka_config import client_config
from streams.runtime.settings import Settings
from streams.runtime.state_files import progress_path
from tests.support.stack import isolated_settings as stack_settings_for
from tests.support.stack import (
    make_data_dir,
    remove_data_dir,
    running_broker,
    running_keycloak_standins,
    running_postgres,
)

pytestmark = pytest.mark.e2e
REPO = Path(__file__).resolve().parents[2]
PDF = b"%PDF-1.7\n\x00\xff\xfe binary \x01"
HEARTBEAT_MS = 1000


@pytest.fixture(scope="module")
def settings() -> Iterator[Settings]:
    """Both sides' PostgreSQL, Keycloak stand-ins and the broker, with a settings file the runners read."""
    data_dir = make_data_dir("platsync-capture-")
    s = stack_settings_for(data_dir, debezium_heartbeat_ms=HEARTBEAT_MS)
    try:  # the stand-ins write the settings file (platsync.toml) the runners read
        with running_postgres(s), running_keycloak_standins(s), running_broker(s):
            yield s
    finally:
        remove_data_dir(data_dir)


class Runner:
    """One ``connectors.capture.runner`` subprocess, always stopped by the test (by pid)."""

    count = 0

    def __init__(self, settings: Settings, side: str, **env: str) -> None:
        Runner.count += 1
        self.settings, self.side = settings, side
        self.log = settings.data_dir / "logs" / f"capture-{side}-{Runner.count}.log"
        self.log.parent.mkdir(parents=True, exist_ok=True)
        clean = {k: v for k, v in os.environ.items() if not k.startswith("PLATSYNC_")}
        with open(self.log, "ab") as out:
            self.started = time.monotonic()
            self.proc = subprocess.Popen(  # noqa: S603
                [sys.executable, "-m", "connectors.capture.runner", "--side", side,
                 "--config", str(settings.data_dir / "platsync.toml"), "--data-dir", str(settings.data_dir)],
                stdout=out, stderr=subprocess.STDOUT, cwd="/", start_new_session=True,
                env={**clean, "PYTHONPATH": str(REPO), **env})

    def wait_ready(self, timeout_s: float = 90) -> float:
        """Wait until every slot of the side is active; return seconds since start."""
        deadline = time.monotonic() + timeout_s
        while not capture_ready(self.settings, self.side):
            assert self.proc.poll() is None, f"runner exited {self.proc.returncode}\n{self.tail()}"
            assert time.monotonic() < deadline, f"runner not ready after {timeout_s}s\n{self.tail()}"
            time.sleep(0.05)
        return time.monotonic() - self.started

    def rss_mb(self) -> float:
        for line in Path(f"/proc/{self.proc.pid}/status").read_text().splitlines():
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024
        return 0.0

    def kill9(self) -> None:
        os.kill(self.proc.pid, signal.SIGKILL)
        self.proc.wait(10)

    def stop(self) -> int | None:
        """SIGTERM (SIGKILL after 30 s); the exit code, or None if it had to be killed."""
        if self.proc.poll() is None:
            stop_pid(self.proc.pid, timeout_s=30)
        try:
            return self.proc.wait(10)
        except subprocess.TimeoutExpired:  # pragma: no cover - stop_pid already escalated
            return None

    def tail(self, lines: int = 30) -> str:
        return "\n".join(self.log.read_text(errors="replace").splitlines()[-lines:])


class Reader:
    """Decodes one single-partition topic from its beginning."""

    def __init__(self, settings: Settings, topic: str) -> None:
        self.topic = topic
        self.events: list[ChangeEvent] = []
        self.seen: set[str] = set()  # keys seen so far (cheap progress checks on large streams)
        self.consumer = Consumer({**client_config(settings), "group.id": f"t-{time.time_ns()}",
                                  "enable.auto.commit": False, "session.timeout.ms": 6000})
        self.consumer.assign([TopicPartition(topic, 0, OFFSET_BEGINNING)])

    def until(self, done: Callable[[list[ChangeEvent]], bool], timeout_s: float = 60,
              on_poll: Callable[[], None] | None = None) -> list[ChangeEvent]:
        deadline = time.monotonic() + timeout_s
        while not done(self.events):
            assert time.monotonic() < deadline, f"{self.topic}: timed out with {len(self.events)} events"
            for msg in self.consumer.consume(5000, 0.05):
                if not msg.error():
                    for event in decode_changes(msg.value()):
                        self.events.append(event)
                        self.seen.add(event.key)
            if on_poll:
                on_poll()
        return self.events

    def close(self) -> None:
        self.consumer.close()


def write(settings: Settings, side: str, store: str, statements: list[tuple[str, tuple[Any, ...]]],
          mark: tuple[str, str] | None = None, echo_origin: str | None = None) -> int:
    """Run one transaction (marked, echo or unmarked); return its txid."""
    with psycopg.connect(libpq_dsn(settings, side, store)) as conn, conn.transaction():
        if mark:
            txid = conn.execute("SELECT platsync_mark_api(%s, %s)", mark).fetchone()[0]
        else:
            txid = conn.execute("SELECT txid_current()").fetchone()[0]
        if echo_origin:
            conn.execute("INSERT INTO platsync_txn_marker (api_id, origin_side, applied_by_sync) "
                         "VALUES ('PLATSYNC_APPLY', %s, true)", (echo_origin,))
        for sql, params in statements:
            conn.execute(sql, params)
    return int(txid)


def staff(key: str, name: str = "n", version: int = 1) -> tuple[str, tuple[Any, ...]]:
    return ("INSERT INTO staff (id, staff_code, display_name, role, username, version, updated_at) "
            "VALUES (%s, 'S-1', %s, 'nurse', NULL, %s, '2024-05-01T12:00:00+09:00')", (key, name, version))


def probe(probe_id: str) -> tuple[str, tuple[Any, ...]]:
    return "INSERT INTO platsync_probe (probe_id) VALUES (%s)", (probe_id,)


def signed(key: str) -> tuple[str, tuple[Any, ...]]:
    return ("INSERT INTO signed_records (id, entity, subject_id, media_type, content, content_hash, signed_by) "
            "VALUES (%s, 'document', 'doc-1', 'application/pdf', %s, 'h', 'staff-1')", (key, PDF))


def progress(settings: Settings, side: str, store: str) -> dict[str, Any]:
    path = progress_path(settings, side, store)
    return json.loads(path.read_text()) if path.exists() else {"events_produced": 0, "last_lsn": 0}


def wait_progress(settings: Settings, side: str, store: str, check: Callable[[dict[str, Any]], bool]) -> dict:
    deadline = time.monotonic() + 20
    while not check(doc := progress(settings, side, store)):
        assert time.monotonic() < deadline, f"progress never satisfied the check: {doc}"
        time.sleep(0.05)
    return doc


def shape(e: ChangeEvent) -> tuple[Any, ...]:
    return (e.source_side, e.source_store, e.table, e.op, e.key, e.version, e.api_id, e.call_id, e.origin_side, e.txid)


def test_runners_publish_stamped_events_and_drop_echoes(settings: Settings) -> None:
    local, remote = Runner(settings, "local"), Runner(settings, "remote")
    readers: list[Reader] = []
    try:
        print(f"\n[capture] ready after {local.wait_ready():.2f}s (local, 2 engines), "
              f"{remote.wait_ready():.2f}s (remote, 3 engines, started concurrently)")
        meta = Reader(settings, settings.topic("local", "meta"))
        readers.append(meta)
        t1 = write(settings, "local", "meta", [staff("e2e-st-1", "山田 花子")], mark=("PRV_STF_003", "call-1"))
        meta.until(lambda ev: len(ev) >= 1)
        first = wait_progress(settings, "local", "meta", lambda d: d["events_produced"] >= 1)
        write(settings, "local", "meta", [staff("e2e-st-echo")], echo_origin="remote")
        t3 = write(settings, "local", "meta", [("UPDATE staff SET display_name = %s, version = 2 WHERE id = %s",
                                                ("山田 華子", "e2e-st-1"))], mark=("PRV_STF_001", "call-3"))
        t4 = write(settings, "local", "meta", [staff("e2e-st-nomark")])
        t5 = write(settings, "local", "meta", [("DELETE FROM staff WHERE id = %s", ("e2e-st-1",))],
                   mark=("PRV_DOC_008", "call-5"))
        t6 = write(settings, "local", "meta", [probe("e2e-probe-local")])
        events = meta.until(lambda ev: any(e.op == "probe" for e in ev))
        loc = ("local", "meta", "staff")
        assert [shape(e) for e in events] == [
            (*loc, "c", "e2e-st-1", 1, "PRV_STF_003", "call-1", "local", t1),
            (*loc, "u", "e2e-st-1", 2, "PRV_STF_001", "call-3", "local", t3),
            (*loc, "c", "e2e-st-nomark", 1, None, None, "local", t4),
            (*loc, "d", "e2e-st-1", 2, "PRV_DOC_008", "call-5", "local", t5),
            ("local", "meta", "platsync_probe", "probe", "e2e-probe-local", 0, None, None, "local", t6),
        ]  # the echo transaction (origin remote, applied by the engine) is absent
        assert events[0].row == {"id": "e2e-st-1", "staff_code": "S-1", "display_name": "山田 花子", "role": "nurse",
                                 "username": None, "version": 1, "deleted": False,
                                 "updated_at": "2024-05-01T03:00:00.000000Z"}
        assert events[3].row is None and events[4].row is None
        assert [e.event_id for e in events] == [f"local.meta:{e.lsn}:0" for e in events]
        assert [e.lsn for e in events] == sorted({e.lsn for e in events})
        assert all(0 < e.commit_ts_ms <= e.captured_ts_ms for e in events)
        final = wait_progress(settings, "local", "meta", lambda d: d["events_produced"] >= 5)
        assert {k: final[k] for k in ("side", "store", "events_produced", "echoes_dropped", "probes",
                                      "last_lsn", "last_commit_ts_ms")} == {
            "side": "local", "store": "meta", "events_produced": 5, "echoes_dropped": 1, "probes": 1,
            "last_lsn": events[4].lsn, "last_commit_ts_ms": events[4].commit_ts_ms}
        assert first["last_lsn"] < final["last_lsn"] and first["updated_ts_ms"] < final["updated_ts_ms"]

        fructos = Reader(settings, settings.topic("local", "fructos_own"))
        readers.append(fructos)
        t7 = write(settings, "local", "fructos_own", [signed("e2e-sr-1")], mark=("PRV_DOC_006", "call-7"))
        (doc,) = fructos.until(lambda ev: len(ev) >= 1)
        assert shape(doc) == ("local", "fructos_own", "signed_records", "c", "e2e-sr-1", 1, "PRV_DOC_006", "call-7",
                              "local", t7)
        assert doc.row is not None and doc.row["content"] == PDF and doc.row["approved"] is False

        patient = Reader(settings, settings.topic("remote", "fructos_patient"))
        remote_meta = Reader(settings, settings.topic("remote", "meta"))
        readers += [patient, remote_meta]
        t8 = write(settings, "remote", "fructos_patient", [signed("e2e-sr-2")], mark=("PRV_USR_001", "call-8"))
        write(settings, "remote", "meta", [staff("e2e-st-echo-2")], echo_origin="local")
        t10 = write(settings, "remote", "meta", [probe("e2e-probe-remote")])
        assert [shape(e) for e in patient.until(lambda ev: len(ev) >= 1)] == [
            ("remote", "fructos_patient", "signed_records", "c", "e2e-sr-2", 1, "PRV_USR_001", "call-8", "remote", t8)]
        assert [shape(e) for e in remote_meta.until(lambda ev: any(e.op == "probe" for e in ev))] == [
            ("remote", "meta", "platsync_probe", "probe", "e2e-probe-remote", 0, None, None, "remote", t10)]
        assert wait_progress(settings, "remote", "meta", lambda d: d.get("echoes_dropped") == 1)["probes"] == 1
        print(f"[capture] RSS after the functional test: local {local.rss_mb():.0f} MB, "
              f"remote {remote.rss_mb():.0f} MB")
    finally:
        for r in readers:
            r.close()
        codes = (local.stop(), remote.stop())
    assert codes == (0, 0), f"SIGTERM must exit 0\n{local.tail()}\n{remote.tail()}"


def _slot_free(settings: Settings, side: str, store: str) -> bool:
    with psycopg.connect(libpq_dsn(settings, side, store), autocommit=True) as conn:
        row = conn.execute("SELECT active FROM pg_replication_slots WHERE slot_name = %s",
                           (slot_name(settings, side, store),)).fetchone()
    return row is not None and not row[0]


def _restart_after_kill9(settings: Settings, runner: Runner) -> Runner:
    runner.kill9()
    deadline = time.monotonic() + 30
    while not _slot_free(settings, "local", "meta"):  # the old walsender must let go of the slot
        assert time.monotonic() < deadline, "slot still held after kill -9"
        time.sleep(0.05)
    again = Runner(settings, "local")
    print(f"[capture] restarted, ready after {again.wait_ready():.2f}s")
    return again


def _assert_no_loss_and_exact_replays(events: list[ChangeEvent], keys: set[str],
                                      call_of: Callable[[str], str]) -> int:
    """Every key arrived; duplicates are byte-for-byte replays of one event id; return the duplicates."""
    by_id: dict[str, ChangeEvent] = {}
    ids_of_key: dict[str, set[str]] = {}
    mine = [e for e in events if e.key in keys]
    for e in mine:
        stable = e.__class__(**{**e.__dict__, "captured_ts_ms": 0})
        assert by_id.setdefault(e.event_id, stable) == stable, f"{e.event_id} replayed with different content"
        ids_of_key.setdefault(e.key, set()).add(e.event_id)
        assert (e.api_id, e.call_id, e.origin_side) == ("PRV_STF_001", call_of(e.key), "local"), e
    assert set(ids_of_key) == keys, f"lost {len(keys - set(ids_of_key))} rows"
    assert all(len(ids) == 1 for ids in ids_of_key.values())
    return len(mine) - len(keys)


def test_kill_9_mid_stream_loses_nothing(settings: Settings) -> None:
    rows, per_tx = 2000, 50
    keys = {f"kill-{t}-{i}" for t in range(rows // per_tx) for i in range(per_tx)}
    runner = Runner(settings, "local")
    reader = Reader(settings, settings.topic("local", "meta"))
    errors: list[BaseException] = []

    def writer() -> None:
        try:
            for t in range(rows // per_tx):
                write(settings, "local", "meta", [staff(f"kill-{t}-{i}") for i in range(per_tx)],
                      mark=("PRV_STF_001", f"kill-{t}"))
                time.sleep(0.03)
        except BaseException as exc:  # noqa: BLE001 - reported by the test
            errors.append(exc)

    try:
        runner.wait_ready()
        before = progress(settings, "local", "meta")
        thread = threading.Thread(target=writer)
        thread.start()
        reader.until(lambda _: len(keys & reader.seen) >= rows // 4)
        runner = _restart_after_kill9(settings, runner)
        reader.until(lambda _: keys <= reader.seen, timeout_s=120)
        thread.join(60)
        assert not errors, errors
        dups = _assert_no_loss_and_exact_replays(reader.events, keys, lambda k: k.rsplit("-", 1)[0])
        print(f"[capture] kill -9 during {rows} rows: none lost, {dups} exact replays")
        after = wait_progress(settings, "local", "meta",
                              lambda d: d["events_produced"] >= before["events_produced"] + rows)
        assert after["last_lsn"] > before["last_lsn"]
    finally:
        reader.close()
        runner.stop()


def test_large_transaction_throughput_and_kill_9_inside_it(settings: Settings) -> None:
    """20k rows in one transaction: events/s; then a kill -9 in the middle of another one.

    Debezium resumes inside the transaction, after its marker: the saved markers keep it stamped.
    """
    rows = 20_000
    runner = Runner(settings, "local")
    reader = Reader(settings, settings.topic("local", "meta"))

    def bulk(tag: str) -> set[str]:
        with psycopg.connect(libpq_dsn(settings, "local", "meta")) as conn, conn.transaction():
            conn.execute("SELECT platsync_mark_api('PRV_STF_001', %s)", (tag,))
            conn.execute("INSERT INTO staff (id, staff_code, display_name, role) "
                         "SELECT %s || '-' || g, 'S', 'n', 'nurse' FROM generate_series(1, %s) g", (tag, rows))
        return {f"{tag}-{g}" for g in range(1, rows + 1)}

    try:
        runner.wait_ready()
        t0 = time.monotonic()
        keys = bulk("bulk")
        reader.until(lambda _: keys <= reader.seen)
        elapsed = time.monotonic() - t0
        bulk_events = [e for e in reader.events if e.key in keys]
        produced_s = (max(e.captured_ts_ms for e in bulk_events) - bulk_events[0].commit_ts_ms) / 1000
        print(f"[capture] {rows}-row transaction: {rows / produced_s:,.0f} events/s from commit to the last "
              f"event converted ({produced_s:.2f}s), {rows / elapsed:,.0f} events/s to consumed "
              f"({elapsed:.2f}s); runner RSS {runner.rss_mb():.0f} MB")
        keys = bulk("mid")
        reader.until(lambda _: len(keys & reader.seen) >= rows // 2)
        runner = _restart_after_kill9(settings, runner)
        reader.until(lambda _: keys <= reader.seen, timeout_s=120)
        dups = _assert_no_loss_and_exact_replays(reader.events, keys, lambda k: "mid")
        print(f"[capture] kill -9 inside a {rows}-row transaction: none lost, all stamped, {dups} exact replays")
    finally:
        reader.close()
        runner.stop()


def _slot_lsns(settings: Settings, side: str, store: str) -> tuple[int, int]:
    """(confirmed_flush_lsn of the store's slot, current WAL position) as integers."""
    with psycopg.connect(libpq_dsn(settings, side, store), autocommit=True) as conn:
        row = conn.execute("SELECT confirmed_flush_lsn - '0/0'::pg_lsn, pg_current_wal_lsn() - '0/0'::pg_lsn "
                           "FROM pg_replication_slots WHERE slot_name = %s",
                           (slot_name(settings, side, store),)).fetchone()
    return int(row[0]), int(row[1])


def _wait_quiet_slot_confirms(settings: Settings, runner: Runner) -> None:
    """Wait until fructos_own's slot confirms past the WAL written so far: that database is quiet (nothing
    writes it), so only the capture's heartbeat lets its slot move while the others write."""
    _, wal_now = _slot_lsns(settings, "local", "fructos_own")
    # The property is that it advances at all: without the heartbeat's message it never would. The
    # bound only keeps a broken build from hanging; it is no speed target (10 heartbeats was missed by
    # 0.2 s twice on 2 cores busy with other stacks), so it is generous.
    deadline = time.monotonic() + 60 * HEARTBEAT_MS / 1000
    while (confirmed := _slot_lsns(settings, "local", "fructos_own")[0]) < wal_now:
        assert time.monotonic() < deadline, (
            f"the quiet database's slot does not advance: WAL is retained (confirmed {confirmed}, "
            f"WAL written {wal_now})\n{runner.tail(60)}")
        time.sleep(0.2)


def test_sigterm_flushes_offsets_and_quiet_slots_do_not_retain_wal(settings: Settings) -> None:
    """A clean stop replays nothing, and a quiet database's slot advances both before and after a restart.

    At a restart Debezium first searches the WAL for where to resume, and unless the last stored position
    was a logical message, only a COMMIT past the stored one ends that search: a heartbeat message emitted
    outside a transaction (no COMMIT) could leave the quiet database's slot in place until its next real
    write (seen in CI: 60 heartbeats without a move)."""
    runner = Runner(settings, "local")
    reader = Reader(settings, settings.topic("local", "meta"))
    try:
        runner.wait_ready()
        keys = {f"calm-{i}" for i in range(500)}
        write(settings, "local", "meta", [staff(k) for k in sorted(keys)], mark=("PRV_STF_001", "calm"))
        reader.until(lambda _: keys <= reader.seen)
        _wait_quiet_slot_confirms(settings, runner)
        assert runner.stop() == 0, runner.tail()
        runner = Runner(settings, "local")
        runner.wait_ready()
        write(settings, "local", "meta", [probe("calm-probe")])
        reader.until(lambda _: "calm-probe" in reader.seen)
        assert sum(e.key in keys for e in reader.events) == len(keys), "a clean stop must not replay events"
        _wait_quiet_slot_confirms(settings, runner)
    finally:
        reader.close()
        runner.stop()


def test_runner_exits_non_zero_when_an_engine_fails(settings: Settings) -> None:
    dead_port = str(free_port())  # nothing listens there
    runner = Runner(settings, "local", PLATSYNC_PG_LOCAL_PORT=dead_port)
    try:
        code = runner.proc.wait(60)
    finally:
        runner.stop()
    assert code == 1
    assert "Debezium engine stopped (success=False)" in runner.tail(), runner.tail()
