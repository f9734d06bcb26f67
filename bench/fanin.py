"""The fan-in scenario of a network: every hospital bulk-registers documents at once.

Each hospital makes one PRV_DOC_006 call of the same number of documents on its own side, all
calls released together (a barrier); the cloud receives every institution's rows at once over
their home links. Figures come from PostgreSQL commit timestamps (one machine, one clock, like
:mod:`bench.scenarios`): the API's commits at each hospital, the sinks' apply commits in that
institution's databases in the cloud. Checks: every row arrived in its own institution's cloud
databases, identical; no row of one institution in any database of another (hospital or cloud
side); nothing in the shared patient-management FRUCtoS (not a PRV_DOC_006 target).
"""

from __future__ import annotations

import threading
import time
import uuid
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

from bench.scenarios import Check, ScenarioResult
from bench.timing import commit_times, percentile
from bench.workload import TAGGED, Watch, connect, count_tagged, digest_tagged, new_documents, wait_count, wait_rows
from connectors.reference_api.payloads import DocumentsPayload
from connectors.reference_api.service import ReferenceApi
from streams.core.model import SIDES
from streams.runtime.settings import Settings

Say = Callable[[str], None]
#: A row's key in the figures: (store, row id).
RowKey = tuple[str, str]


@dataclass(frozen=True)
class HospitalTimes:
    """Commit times of one hospital's bulk: at the hospital (API) and in the cloud (apply), by row."""

    committed: dict[RowKey, float]
    applied: dict[RowKey, float]


def _rounded(value: float, digits: int = 1) -> float:
    return round(value, digits)


def fanin_figures(times: Mapping[str, HospitalTimes]) -> tuple[dict[str, Any], dict[str, dict[str, Any]]]:
    """The fan-in's figures from each hospital's commit times (pure): (overall figures, figures per hospital).

    Overall: rows applied in the cloud, all institutions together, from the first API commit at any
    hospital to the last apply commit in the cloud. Per hospital: its rows/s over the same kind of
    window; its lag, from its last API commit to its last row applied in the cloud; each row's lag
    (apply commit minus API commit), as p50/p99. ``start_skew_s`` tells how close together the
    hospitals' calls committed first (the load is really at once when it is small against the run).
    """
    per_hospital: dict[str, dict[str, Any]] = {}
    row_lags_ms: list[float] = []
    first_commits, last_applies = [], []
    rows = 0
    for hospital, t in times.items():
        if not t.committed or not t.applied:
            raise ValueError(f"{hospital}: no commit times ({len(t.committed)} committed, {len(t.applied)} applied)")
        first, last_commit, last_apply = min(t.committed.values()), max(t.committed.values()), max(t.applied.values())
        lags = [(applied - t.committed[key]) * 1000 for key, applied in t.applied.items() if key in t.committed]
        seconds = last_apply - first
        per_hospital[hospital] = {
            "rows": len(t.applied), "seconds": _rounded(seconds, 2), "rows_per_s": _rounded(len(t.applied) / seconds),
            "lag_s": _rounded(last_apply - last_commit, 2),
            "row_lag_p50_ms": _rounded(percentile(lags, 50)), "row_lag_p99_ms": _rounded(percentile(lags, 99))}
        row_lags_ms.extend(lags)
        first_commits.append(first)
        last_applies.append(last_apply)
        rows += len(t.applied)
    seconds = max(last_applies) - min(first_commits)
    figures = {
        "fanin_hospitals": len(times), "fanin_rows": rows, "fanin_seconds": _rounded(seconds, 2),
        "fanin_rows_per_s": _rounded(rows / seconds),
        "fanin_lag_max_s": max(h["lag_s"] for h in per_hospital.values()),
        "fanin_row_lag_p50_ms": _rounded(percentile(row_lags_ms, 50)),
        "fanin_row_lag_p99_ms": _rounded(percentile(row_lags_ms, 99)),
        "fanin_start_skew_s": _rounded(max(first_commits) - min(first_commits), 2),
    }
    return figures, per_hospital


class _BulkCaller(threading.Thread):
    """One hospital's PRV_DOC_006 call, released by the shared barrier."""

    def __init__(self, hospital: str, link: Settings, tag: str, documents: int, seed: int,
                 barrier: threading.Barrier) -> None:
        super().__init__(name=f"fanin-{hospital}", daemon=True)
        self.hospital, self.link, self.tag, self.barrier = hospital, link, tag, barrier
        self.docs = new_documents(tag, documents, seed=seed)
        self.last: dict[str, str] = {}
        self.seconds = 0.0
        self.error: BaseException | None = None

    def run(self) -> None:
        try:
            with ReferenceApi(self.link, "local") as api:
                self.barrier.wait(timeout=300)
                started = time.monotonic()
                written = api.register_documents(DocumentsPayload(tuple(self.docs)))["written"]
                self.seconds = time.monotonic() - started
            self.last = {store: written[store][table][-1] for store, (table, _) in TAGGED.items()}
        except BaseException as exc:  # noqa: BLE001 - reported by the scenario
            self.error = exc
            self.barrier.abort()


def _check_isolation(links: Mapping[str, Settings], tags: Mapping[str, str]) -> list[Check]:
    """No row of one institution in any database (hospital or cloud side) of another."""
    checks = []
    for hospital, tag in tags.items():
        found = {f"{other}/{side}/{store}": n for other, link in links.items() if other != hospital
                 for side in SIDES for store in TAGGED if (n := count_tagged(link, side, store, tag))}
        looked = (len(links) - 1) * len(SIDES) * len(TAGGED)
        checks.append(Check(f"fan-in: no row of {hospital} in another institution's databases", not found,
                            f"found {found}" if found else f"none in {looked} databases of the other institutions"))
    return checks


def _check_patient_store(link: Settings, tags: Mapping[str, str]) -> Check:
    """PRV_DOC_006 never writes the cloud's shared patient-management FRUCtoS."""
    with connect(link, "remote", "fructos_patient") as conn:
        row = conn.execute("SELECT count(*) FROM signed_records WHERE signed_by = ANY(%s)",
                           (list(tags.values()),)).fetchone()
    leaked = int(row[0]) if row else -1
    return Check("fan-in: nothing written to the cloud's fructos_patient", leaked == 0,
                 f"{leaked} rows there (matrix: PRV_DOC_006 does not target it)")


def fan_in(links: Mapping[str, Settings], documents: int, timeout_s: float, say: Say) -> ScenarioResult:
    """Every hospital of ``links`` (hospital -> its home link's settings) registers ``documents`` at once."""
    result = ScenarioResult()
    run = uuid.uuid4().hex[:8]
    tags = {hospital: f"bench-fanin-{hospital}-{run}" for hospital in links}
    barrier = threading.Barrier(len(links))
    callers = [_BulkCaller(hospital, link, tags[hospital], documents, seed=100 + i, barrier=barrier)
               for i, (hospital, link) in enumerate(links.items())]
    say(f"fan-in: {len(links)} hospitals ({', '.join(links)}) each call PRV_DOC_006 with {documents:,} documents "
        "at once")
    for caller in callers:
        caller.start()
    for caller in callers:
        caller.join()
    errors = [c for c in callers if c.error is not None]
    if errors:  # the one that failed, not those its failure released from the barrier
        first = next((c for c in errors if not isinstance(c.error, threading.BrokenBarrierError)), errors[0])
        raise RuntimeError(f"fan-in: the bulk call at {first.hospital} failed: {first.error}") from first.error
    say("fan-in: API calls committed in " + ", ".join(f"{c.hospital} {c.seconds:.1f}s" for c in callers)
        + "; waiting for the cloud")
    for caller in callers:
        wait_rows(links[caller.hospital], "remote", [Watch(store, row_id) for store, row_id in caller.last.items()],
                  timeout_s)
    times: dict[str, HospitalTimes] = {}
    for hospital, link in links.items():
        tag = tags[hospital]
        for store in TAGGED:
            found = wait_count(link, "remote", store, tag, documents, timeout_s)
            result.checks.append(Check(f"fan-in: all rows of {hospital} arrived in the cloud's {store}",
                                       found == documents, f"{found} of {documents} rows"))
            same = digest_tagged(link, "remote", store, tag) == digest_tagged(link, "local", store, tag)
            result.checks.append(Check(f"fan-in: {hospital}'s {store} equal at the hospital and in the cloud", same,
                                       "every column of every row" if same else "digests differ"))
        times[hospital] = HospitalTimes(
            committed={(store, i): t for store in TAGGED for i, t in commit_times(link, "local", store, tag).items()},
            applied={(store, i): t for store in TAGGED for i, t in commit_times(link, "remote", store, tag).items()})
    result.checks.extend(_check_isolation(links, tags))
    result.checks.append(_check_patient_store(next(iter(links.values())), tags))
    figures, per_hospital = fanin_figures(times)
    result.figures.update(fanin_documents_per_hospital=documents, **figures)
    result.context.update(per_hospital=per_hospital, tags=tags,
                          api_call_s={c.hospital: round(c.seconds, 2) for c in callers})
    say(f"fan-in: {figures['fanin_rows']:,} rows in the cloud in {figures['fanin_seconds']:.2f}s = "
        f"{figures['fanin_rows_per_s']:,.0f} rows/s; lag " + ", ".join(
            f"{h} {f['lag_s']:.2f}s" for h, f in per_hospital.items()))
    return result
