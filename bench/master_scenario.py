"""The MHLW master's scenario (issue 16, docs/master.md): import, unchanged re-import, 1% update.

On the bench's stack: a target list spread over the file, then a synthetic 100,000-row master (CP932) imported
into the empty master as ``platsync master import`` does it (read the file, parse, compare with the table,
write the difference), the same file again (it must write nothing and make no change event), and a file with
1% of the rows changed, timed until every changed target row is applied in the cloud. The hospital's META
topic is scanned for the master's change events: only target rows may cross, exactly once per change.
"""

from __future__ import annotations

import time
import uuid
from collections.abc import Callable
from pathlib import Path
from typing import Any

import psycopg
from confluent_kafka import Consumer, TopicPartition

from bench.scenarios import Check, ScenarioResult
from bench.workload import connect
from connectors.stores.master_schema import MASTER_TABLE
from connectors.stores.master_store import LOCK_KEY, WriteResult, change_targets, master_rows, write_import
from streams.apply.barrier import wait_synced
from streams.master.csv_input import COLUMNS
from streams.master.csv_input import read_master as read_csv
from streams.master.diff import MasterDiff, diff_master
from streams.master.synthetic import changed, generate_rows, to_csv
from streams.ops.dlq import message_codec
from streams.runtime.connections import libpq_dsn
from streams.runtime.kafka_config import client_config
from streams.runtime.settings import Settings

Say = Callable[[str], None]
SEED = 16  # the synthetic master's seed
CHANGE_SEED = 161  # the 1% update's seed: 3 of its ~960 changed rows are targets
CHANGED_FRACTION = 0.01
POLL_S = 0.02
_COLUMNS = ", ".join(COLUMNS)


def _import(conn: psycopg.Connection[Any], path: Path, say: Say, what: str) -> tuple[MasterDiff, WriteResult | None]:
    """Import ``path`` as the command does: read and parse the file, compare with the table, write the
    difference (nothing if it is empty); say the split of the time."""
    started = time.perf_counter()
    master = read_csv(path.read_bytes())
    read_s = time.perf_counter() - started
    current = master_rows(conn)
    conn.commit()
    diff = diff_master(current, master.rows)
    diff_s = time.perf_counter() - started - read_s
    result = None if diff.empty else write_import(conn, diff, f"bench-master:{uuid.uuid4()}")
    write_s = time.perf_counter() - started - read_s - diff_s
    say(f"master: {what}: {diff.summary()}; read {read_s:.2f}s ({len(master.rows):,} rows, {master.encoding}, "
        f"{len(master.errors)} errors), diff {diff_s:.2f}s, write {write_s:.2f}s")
    return diff, result


def _rows(settings: Settings, side: str, codes: list[str] | None = None) -> dict[str, tuple[Any, ...]]:
    """``medical_id -> (version, *synced columns)`` on ``side``: of ``codes`` if given, else the hospital's
    targets or everything the cloud holds."""
    where = "medical_id = ANY(%s)" if codes is not None else "is_target" if side == "local" else "true"
    with connect(settings, side, "meta") as conn:
        cur = conn.execute(f"SELECT version, {_COLUMNS} FROM {MASTER_TABLE} WHERE {where}",  # noqa: S608
                           (codes,) if codes is not None else None)
        return {str(r[1]): tuple(r) for r in cur}


def _wait_versions(settings: Settings, wanted: dict[str, tuple[Any, ...]], timeout_s: float) -> dict[str, Any]:
    """Poll the cloud until it holds every row of ``wanted`` at (at least) its version; what it holds."""
    deadline = time.monotonic() + timeout_s
    while True:
        held = _rows(settings, "remote", list(wanted))
        if all(c in held and held[c][0] >= row[0] for c, row in wanted.items()) or time.monotonic() >= deadline:
            return held
        time.sleep(POLL_S)


def _end_offset(settings: Settings) -> int:
    consumer = Consumer({**client_config(settings), "group.id": f"bench-master-{uuid.uuid4()}"})
    try:
        return int(consumer.get_watermark_offsets(TopicPartition(settings.topic("local", "meta"), 0), timeout=10)[1])
    finally:
        consumer.close()


def _master_messages(settings: Settings, low: int, high: int, timeout_s: float) -> tuple[list[str], int, int]:
    """Between the offsets: the keys of the master's change events, the bytes of the messages carrying them,
    and the bytes of every message."""
    codec = message_codec(settings)
    consumer = Consumer({**client_config(settings), "group.id": f"bench-master-{uuid.uuid4()}",
                         "enable.auto.commit": False})
    consumer.assign([TopicPartition(settings.topic("local", "meta"), 0, low)])
    keys: list[str] = []
    master_bytes = all_bytes = 0
    position, deadline = low, time.monotonic() + timeout_s
    try:
        while position < high and time.monotonic() < deadline:
            msg = consumer.poll(1.0)
            if msg is None or msg.error() or msg.offset() >= high:
                continue
            position = msg.offset() + 1
            value = msg.value() or b""
            all_bytes += len(value)
            events = [e for e in codec.decode_changes(value) if e.table == MASTER_TABLE]
            if events:
                keys += [str(e.key) for e in events]
                master_bytes += len(value)
    finally:
        consumer.close()
    if position < high:
        raise RuntimeError(f"read the META topic up to offset {position} of {high} in {timeout_s:.0f}s")
    return keys, master_bytes, all_bytes


def _synced(settings: Settings, timeout_s: float) -> None:
    pending = wait_synced(settings, timeout_s)
    if pending:
        raise RuntimeError(f"the pipeline did not drain in {timeout_s:.0f}s: {pending}")


def master_sync(settings: Settings, rows: int, targets: int, timeout_s: float, say: Say) -> ScenarioResult:
    """Import a ``rows``-row synthetic master with ``targets`` targets; re-import it unchanged; import 1% changed.

    ``master_import_s``: the full import into the empty master (read + diff + write);
    ``master_initial_sync_s``: from its start until the cloud holds every target row; ``master_noop_events``:
    the master's change events of the unchanged re-import; ``master_delta_sync_s``: from the start of the 1%
    import until every changed target row is applied in the cloud; ``master_topic_bytes_per_row``: the bytes
    of the META topic's messages carrying the update's events per changed target row.
    """
    result = ScenarioResult()
    folder = settings.data_dir / "bench-master"
    folder.mkdir(parents=True, exist_ok=True)
    say(f"master: generating a synthetic {rows:,}-row master (CP932) and its 1% update")
    all_rows = list(generate_rows(rows, SEED))
    chosen = [str(r["medical_id"]) for r in all_rows[::max(1, rows // targets)][:targets]]
    (folder / "master.csv").write_bytes(to_csv(all_rows, "cp932"))
    update = changed(all_rows, CHANGED_FRACTION, CHANGE_SEED)
    moved = sorted(str(a["medical_id"]) for a, b in zip(all_rows, update, strict=True) if a != b)
    crossing = sorted(set(moved) & set(chosen))
    (folder / "master-1pct.csv").write_bytes(to_csv(update, "cp932"))
    with psycopg.connect(libpq_dsn(settings, "local", "meta", "app")) as conn:
        conn.execute("SELECT pg_advisory_lock(%s)", (LOCK_KEY,))  # as 'platsync master' holds it, read to write
        conn.commit()
        added, _ = change_targets(conn, f"bench-master:{uuid.uuid4()}", upsert={c: "bench" for c in chosen})
        say(f"master: {added} targets set, spread over the file; importing into the empty master")
        started = time.monotonic()
        full, _ = _import(conn, folder / "master.csv", say, "full import")
        import_s = time.monotonic() - started
        wanted = _rows(settings, "local")
        held = _wait_versions(settings, wanted, timeout_s)
        initial_s = time.monotonic() - started
        result.checks.append(Check("master: the full import's target rows arrived", held == wanted and
                                   len(held) == len(chosen), f"{len(held)} of {len(chosen)} target rows"))
        say(f"master: the cloud held {len(held)} of {len(wanted)} target rows {initial_s:.2f}s after the import "
            "started; re-importing the same file")
        _synced(settings, timeout_s)
        low = _end_offset(settings)
        started = time.monotonic()
        noop, written = _import(conn, folder / "master.csv", say, "unchanged re-import")
        noop_s = time.monotonic() - started
        _synced(settings, timeout_s)
        noop_keys, _, _ = _master_messages(settings, low, _end_offset(settings), timeout_s)
        result.checks.append(Check("master: an unchanged re-import writes nothing and makes no change event",
                                   noop.empty and written is None and not noop_keys,
                                   f"{noop.summary()}; {len(noop_keys)} change events"))
        say(f"master: {len(noop_keys)} change events; importing the 1% update ({len(crossing)} changed targets)")
        low = _end_offset(settings)
        started = time.monotonic()
        delta, _ = _import(conn, folder / "master-1pct.csv", say, "1% update")
        wanted = _rows(settings, "local", crossing)
        held = _wait_versions(settings, wanted, timeout_s)
        delta_s = time.monotonic() - started
    say(f"master: the changed target rows applied in the cloud {delta_s:.2f}s after the import started; "
        "scanning the META topic")
    _synced(settings, timeout_s)
    keys, master_bytes, all_bytes = _master_messages(settings, low, _end_offset(settings), timeout_s)
    _check(settings, result, delta, moved, wanted, held, keys)
    result.figures.update(
        master_rows=len(full.new), master_targets=len(chosen), master_import_s=round(import_s, 2),
        master_initial_sync_s=round(initial_s, 2), master_noop_import_s=round(noop_s, 2),
        master_noop_events=len(noop_keys), master_delta_changed_rows=len(delta.changed),
        master_delta_target_rows=len(crossing), master_delta_sync_s=round(delta_s, 2),
        master_topic_events=len(keys), master_topic_bytes=master_bytes, master_topic_bytes_all=all_bytes,
        master_topic_bytes_per_row=round(master_bytes / len(crossing), 1) if crossing else None)
    say(f"master: {len(keys)} change events in {master_bytes:,} topic bytes for {len(crossing)} changed target rows")
    return result


def _check(settings: Settings, result: ScenarioResult, delta: MasterDiff, moved: list[str],
           wanted: dict[str, tuple[Any, ...]], held: dict[str, Any], keys: list[str]) -> None:
    """The 1% update's checks: the diff found the changed rows, they arrived, only targets crossed, once each."""
    found = sorted(str(r["medical_id"]) for r in delta.changed)
    result.checks.append(Check("master: the 1% update writes exactly the changed rows",
                               found == moved and not delta.new and not delta.gone, delta.summary()))
    arrived = sum(held.get(code) == row for code, row in wanted.items())
    result.checks.append(Check("master: the changed target rows arrived, equal", bool(wanted) and
                               arrived == len(wanted), f"{arrived} of {len(wanted)} rows at the hospital's version"))
    result.checks.append(Check("master: exactly the changed target rows crossed", sorted(keys) == sorted(wanted),
                               f"{len(keys)} master change events in the META topic for {len(wanted)} changed "
                               "target rows"))
    hospital, cloud = _rows(settings, "local"), _rows(settings, "remote")
    result.checks.append(Check("master: only target rows in the cloud, equal to the hospital's", cloud == hospital,
                               f"{len(cloud)} rows in the cloud, {len(hospital)} targets on the hospital"))
