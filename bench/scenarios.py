"""The engine's scenarios: a bulk registration, steady traffic both ways, catch-up after a cut.

Each returns its figures and the correctness checks of what it measured (every row arrived,
contents equal on both sides, nothing written where the matrix forbids it).
"""

from __future__ import annotations

import threading
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from bench.timing import commit_times, percentile
from bench.workload import (
    TAGGED,
    Watch,
    chunks,
    connect,
    count_tagged,
    digest_tagged,
    document_changes,
    new_documents,
    wait_count,
    wait_rows,
)
from connectors.reference_api.payloads import DocumentsPayload
from connectors.reference_api.service import ReferenceApi
from infra.local.link import set_link, wait_enforced
from streams.runtime.settings import Settings

Say = Callable[[str], None]
OTHER = {"local": "remote", "remote": "local"}
API_BATCH = 1000  # documents per API call when a scenario writes many
CALLERS_PER_SIDE = 4  # concurrent API callers per side in the steady scenario


@dataclass
class Check:
    """One correctness check of a scenario."""

    name: str
    ok: bool
    detail: str


@dataclass
class ScenarioResult:
    """Figures and checks of one scenario."""

    figures: dict[str, Any] = field(default_factory=dict)
    checks: list[Check] = field(default_factory=list)
    context: dict[str, Any] = field(default_factory=dict)


def _tag(name: str) -> str:
    return f"bench-{name}-{uuid.uuid4().hex[:8]}"


def _check_arrived(settings: Settings, result: ScenarioResult, tag: str, target: str, expected: int,
                   min_version: int, timeout_s: float) -> None:
    """Every tagged row at its version on ``target``, and the contents equal on both sides."""
    source = OTHER[target]
    for store in TAGGED:
        found = wait_count(settings, target, store, tag, expected, timeout_s, min_version)
        result.checks.append(Check(f"all rows arrived in {target}/{store}", found == expected,
                                   f"{found} of {expected} rows at version >= {min_version}"))
        same = digest_tagged(settings, target, store, tag) == digest_tagged(settings, source, store, tag)
        result.checks.append(Check(f"{store} contents equal on both sides", same,
                                   "every column of every row" if same else "digests differ"))


def _check_not_in_patient_store(settings: Settings, result: ScenarioResult, tag: str) -> None:
    """PRV_DOC_006/007 never write the patient-management FRUCtoS (matrix: not a target)."""
    with connect(settings, "remote", "fructos_patient") as conn:
        row = conn.execute("SELECT count(*) FROM signed_records WHERE signed_by = %s", (tag,)).fetchone()
    leaked = int(row[0]) if row else -1
    result.checks.append(Check("nothing written to remote/fructos_patient", leaked == 0,
                               f"{leaked} rows there (matrix: PRV_DOC_006/007 do not target it)"))


def bulk_registration(settings: Settings, documents: int, timeout_s: float, say: Say) -> ScenarioResult:
    """One PRV_DOC_006 of ``documents`` on the local side: API commit -> every remote target store holds them."""
    result = ScenarioResult()
    tag = _tag("bulk")
    docs = new_documents(tag, documents, seed=1)
    say(f"bulk: PRV_DOC_006 of {documents:,} documents on the local side (one call)")
    with ReferenceApi(settings, "local") as api:
        started = time.monotonic()
        written = api.register_documents(DocumentsPayload(tuple(docs)))["written"]
        say(f"bulk: API call committed in {time.monotonic() - started:.1f}s; waiting for the remote side")
    last = {"meta": written["meta"]["documents"][-1], "fructos_own": written["fructos_own"]["signed_records"][-1]}
    wait_rows(settings, "remote", [Watch(store, row_id) for store, row_id in last.items()], timeout_s)
    _check_arrived(settings, result, tag, "remote", documents, 1, timeout_s)
    _check_not_in_patient_store(settings, result, tag)
    committed = [t for store in TAGGED for t in commit_times(settings, "local", store, tag).values()]
    applied = [t for store in TAGGED for t in commit_times(settings, "remote", store, tag).values()]
    seconds = max(applied) - min(committed)
    rows = len(applied)
    result.figures.update(bulk_documents=documents, bulk_rows=rows, bulk_seconds=round(seconds, 2),
                          bulk_rows_per_s=round(rows / seconds, 1))
    result.context.update(tag=tag, last_ids=last, rows=rows)
    say(f"bulk: {rows:,} rows in {seconds:.2f}s = {rows / seconds:,.0f} rows/s")
    return result


class _SidePacer(threading.Thread):
    """Calls PRV_DOC_006 with one document on one side at its slots of the shared schedule."""

    def __init__(self, settings: Settings, side: str, tag: str, slots: list[float], seed: int) -> None:
        super().__init__(name=f"steady-{side}-{seed}", daemon=True)
        self.settings, self.side, self.tag, self.slots, self.seed = settings, side, tag, slots, seed
        self.ids: dict[str, list[str]] = {"meta": [], "fructos_own": []}
        self.late_ms: list[float] = []
        self.error: BaseException | None = None

    def run(self) -> None:
        try:
            docs = new_documents(self.tag, len(self.slots), seed=self.seed)
            with ReferenceApi(self.settings, self.side) as api:
                for due, doc in zip(self.slots, docs, strict=True):
                    delay = due - time.monotonic()
                    if delay > 0:
                        time.sleep(delay)
                    self.late_ms.append(max(0.0, -delay) * 1000)
                    written = api.register_documents(DocumentsPayload((doc,)))["written"]
                    for store, (table, _) in TAGGED.items():
                        self.ids[store].append(written[store][table][0])
        except BaseException as exc:  # noqa: BLE001 - reported by the scenario
            self.error = exc


def steady_traffic(settings: Settings, rate_per_s: int, duration_s: float, timeout_s: float,
                   say: Say) -> ScenarioResult:
    """``rate_per_s`` single-document calls per second for ``duration_s``, alternating sides.

    Latency per change (a META row or a signed record) is its apply commit on the other side
    minus its API commit on its own side.
    """
    result = ScenarioResult()
    tag = _tag("steady")
    total = int(rate_per_s * duration_s)
    start = time.monotonic() + 1.0
    slots = [start + i / rate_per_s for i in range(total)]
    # Open loop: calls start at their slot whatever the previous one took, so each side gets
    # several callers (a call commits twice, and commits wait for the WAL flush).
    side_slots = {side: slots[offset::2] for offset, side in enumerate(("local", "remote"))}
    pacers = [_SidePacer(settings, side, tag, side_slots[side][k::CALLERS_PER_SIDE], seed=10 * k + offset)
              for offset, side in enumerate(("local", "remote")) for k in range(CALLERS_PER_SIDE)]
    say(f"steady: {rate_per_s} single-document PRV_DOC_006 calls/s for {duration_s:.0f}s, alternating sides "
        f"({total:,} calls)")
    for pacer in pacers:
        pacer.start()
    for pacer in pacers:
        pacer.join()
        if pacer.error is not None:
            raise RuntimeError(f"steady traffic on {pacer.side} failed: {pacer.error}") from pacer.error
    elapsed = time.monotonic() - start
    say(f"steady: {total:,} calls made in {elapsed:.1f}s; waiting for both sides")
    for pacer in pacers:
        wait_rows(settings, OTHER[pacer.side],
                  [Watch(store, ids[-1]) for store, ids in pacer.ids.items() if ids], timeout_s)
    latencies: list[float] = []
    for store in TAGGED:
        times = {side: commit_times(settings, side, store, tag) for side in ("local", "remote")}
        for pacer in pacers:
            source, target = times[pacer.side], times[OTHER[pacer.side]]
            latencies.extend((target[i] - source[i]) * 1000 for i in pacer.ids[store] if i in target)
    for side in ("local", "remote"):
        for store in TAGGED:
            found = wait_count(settings, side, store, tag, total, timeout_s)
            result.checks.append(Check(f"steady: all rows on {side}/{store}", found == total,
                                       f"{found} of {total} rows"))
    for store in TAGGED:
        same = digest_tagged(settings, "local", store, tag) == digest_tagged(settings, "remote", store, tag)
        result.checks.append(Check(f"steady: {store} contents equal on both sides", same,
                                   "every column of every row" if same else "digests differ"))
    result.checks.append(Check("steady: a latency for every change", len(latencies) == 2 * total,
                               f"{len(latencies)} of {2 * total} changes (META row + signed record per call)"))
    late = [ms for p in pacers for ms in p.late_ms]
    result.figures.update(
        steady_calls=total, steady_rate_achieved_per_s=round(total / elapsed, 1),
        steady_calls_late_over_50ms=sum(1 for ms in late if ms > 50),
        steady_p50_ms=round(percentile(latencies, 50), 1), steady_p99_ms=round(percentile(latencies, 99), 1),
        steady_max_ms=round(max(latencies), 1))
    say(f"steady: p50 {result.figures['steady_p50_ms']} ms, p99 {result.figures['steady_p99_ms']} ms "
        f"over {len(latencies):,} changes")
    return result


def catch_up(settings: Settings, changes: int, timeout_s: float, say: Say) -> ScenarioResult:
    """``changes`` row changes on the local side while the link is cut; link restore -> all applied.

    Half of the changes register documents (PRV_DOC_006, a META row and a signed record each),
    the other half update every one of them (PRV_DOC_007), so each document ends at version 2.
    """
    result = ScenarioResult()
    tag = _tag("catchup")
    documents = changes // 4
    set_link(settings, False, note="benchmark: catch-up")
    if wait_enforced(settings, False) is None:
        raise RuntimeError("the link proxy did not cut the link within 10s")
    say(f"catch-up: link cut; {documents * 4:,} changes on the local side ({documents:,} documents registered, "
        "then each updated)")
    ids: dict[str, list[str]] = {"meta": [], "fructos_own": []}
    with ReferenceApi(settings, "local") as api:
        for batch in chunks(new_documents(tag, documents, seed=3), API_BATCH):
            written = api.register_documents(DocumentsPayload(tuple(batch)))["written"]
            for store, (table, _) in TAGGED.items():
                ids[store].extend(written[store][table])
        for batch in chunks(document_changes(tag, ids["meta"], seed=4), API_BATCH):
            api.update_documents(DocumentsPayload(tuple(batch)))
    crossed = {store: count_tagged(settings, "remote", store, tag) for store in TAGGED}
    result.checks.append(Check("catch-up: nothing crossed the cut link", not any(crossed.values()),
                               f"rows on the remote side before restore: {crossed}"))
    say("catch-up: changes made; restoring the link")
    restored = time.time()
    set_link(settings, True, note="benchmark: catch-up done")
    if wait_enforced(settings, True) is None:
        raise RuntimeError("the link proxy did not restore the link within 10s")
    wait_rows(settings, "remote", [Watch(store, row_ids[-1], 2) for store, row_ids in ids.items()], timeout_s)
    _check_arrived(settings, result, tag, "remote", documents, 2, timeout_s)
    applied = [t for store in TAGGED for t in commit_times(settings, "remote", store, tag, 2).values()]
    seconds = max(applied) - restored
    result.figures.update(catchup_changes=documents * 4, catchup_s=round(seconds, 2),
                          catchup_changes_per_s=round(documents * 4 / seconds, 1))
    say(f"catch-up: {documents * 4:,} changes applied {seconds:.2f}s after the link was restored")
    return result
