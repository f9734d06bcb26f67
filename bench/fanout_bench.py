"""``platsync bench --fanout``: one shared document to N subscribed hospitals (issue 15, bench/RESULTS.md).

Order: a private network of ``infra/topologies/two_hospitals.toml`` (fresh data dir, free ports: hospital A,
the author, and hospital B, which subscribes to nothing) -> N simulated hospitals (bench/fanout_nodes.py: each
its PostgreSQL, ``fructos_subscribed`` and the real subscriber with its notifier, a webhook on a local receiver)
-> each subscribes to one patient of A -> A registers (PRV_DOC_006) and approves (PRV_DOC_009) that patient's
documents through its reference API, one at a time, each waited for at every subscriber -> stop everything.

Per document and subscriber, all from PostgreSQL clocks of this machine, from the approval's commit (the
commit timestamp of the approved version in A's ``fructos_own``):

- **copy**: to the commit of the copy in the subscriber's ``fructos_subscribed.signed_records`` (its
  notification is recorded in the same transaction);
- **notification**: to the notification published on ``<link>.notifications`` (``published_at``, set once the
  broker acknowledged it), and to the webhook's acknowledgement (``delivered_at``).

The checks are bench/fanout_report.py's. Targets are reported, never enforced.
"""

from __future__ import annotations

import shutil
import time
import uuid
from collections.abc import Callable
from dataclasses import asdict
from pathlib import Path
from typing import Any

import psycopg
from sqlalchemy import create_engine

from bench.cpu import CpuMeter
from bench.fanout_nodes import SimulatedHospital
from bench.fanout_receiver import WebhookReceiver
from bench.fanout_report import SubscriberSeen, checks_of, cpu_per_document, latency_figures, memory_by_kind
from bench.fanout_topics import TopicCounter
from bench.memory import MemorySampler
from bench.nodes import NetworkProcesses
from bench.runner import commit_id, machine, write_report
from bench.signals import uninterrupted
from connectors.reference_api.service import ReferenceApi
from connectors.stores.fanout_state import SHARING_DATABASE, add_subscription
from infra.local.isolated import isolated_settings, make_data_dir
from infra.local.network import Network
from streams.runtime.connections import dsn, libpq_dsn
from streams.topology.load import load_topology

Say = Callable[[str], None]
TOPOLOGY = Path(__file__).resolve().parents[1] / "infra" / "topologies" / "two_hospitals.toml"
FULL_DOCUMENTS, QUICK_DOCUMENTS = 200, 30
SUBSCRIBERS = 10
WAIT_S = 120.0
POLL_S = 0.05  # decides only when to send the next document: every figure is a difference of stored times
SUBSCRIBED = "fructos_subscribed"
ARRIVAL = ("SELECT extract(epoch FROM pg_xact_commit_timestamp(s.xmin))::float8, "
           "extract(epoch FROM n.published_at)::float8, extract(epoch FROM n.delivered_at)::float8 "
           "FROM signed_records s LEFT JOIN notifications n ON n.record_id = s.id WHERE s.id = %s")


def _register(api: ReferenceApi, patient: str, i: int) -> str:
    """Register and approve one document of ``patient`` at A; its signed record's id."""
    written = api.call("PRV_DOC_006", {"patient_id": patient, "doc_type": "referral", "title": f"紹介状 {i}",
                                       "media_type": "text/plain", "content_text": f"紹介状の本文 {i}",
                                       "signed_by": "dr-bench"})["written"]
    doc_id, record_id = written["meta"]["documents"][0], written["fructos_own"]["signed_records"][0]
    api.call("PRV_DOC_009", {"documents": [{"id": doc_id, "approved_by": "dr-chief"}]})
    return str(record_id)


def _wait_opened(network: Network, count: int) -> None:
    deadline = time.monotonic() + WAIT_S
    with psycopg.connect(libpq_dsn(network.settings, "remote", SHARING_DATABASE), autocommit=True) as conn:
        while conn.execute("SELECT count(*) FROM fanout_subscriptions").fetchone()[0] < count:
            if time.monotonic() > deadline:
                raise TimeoutError(f"the fan-out opened fewer than {count} subscriptions in {WAIT_S:.0f} s")
            time.sleep(0.2)


def _subscribe(network: Network, sims: list[SimulatedHospital], patient: str) -> None:
    """Subscribe every simulated hospital to ``patient`` (what ``platsync subscriptions add`` records)."""
    engine = create_engine(dsn(network.settings, "remote", SHARING_DATABASE))
    try:
        with engine.begin() as conn:
            for sim in sims:
                add_subscription(conn, sim.node, patient, "bench")
    finally:
        engine.dispose()
    _wait_opened(network, len(sims))


def _send_one(api: ReferenceApi, own: psycopg.Connection, conns: dict[str, psycopg.Connection], patient: str,
              i: int, samples: dict[str, list[float]]) -> str:
    """Register and approve document ``i``, wait until every subscriber's webhook acknowledged it, sample."""
    record_id = _register(api, patient, i)
    approved = own.execute("SELECT extract(epoch FROM pg_xact_commit_timestamp(xmin))::float8 FROM signed_records "
                           "WHERE id = %s", (record_id,)).fetchone()[0]
    if approved is None:
        raise RuntimeError("A's fructos_own has no commit timestamp (track_commit_timestamp must be on)")
    deadline = time.monotonic() + WAIT_S
    done: dict[str, tuple[float, float, float]] = {}
    while len(done) < len(conns):
        for node, conn in conns.items():
            if node not in done:
                row = conn.execute(ARRIVAL, (record_id,)).fetchone()
                if row is not None and None not in row:
                    done[node] = row
        if len(done) < len(conns):
            if time.monotonic() > deadline:
                raise TimeoutError(f"document {i}: {len(done)} of {len(conns)} subscribers had it copied, "
                                   f"published and delivered within {WAIT_S:.0f} s")
            time.sleep(POLL_S)
    for copied, published, delivered in done.values():
        samples["copy"].append((copied - approved) * 1000)
        samples["notify_topic"].append((published - approved) * 1000)
        samples["webhook"].append((delivered - approved) * 1000)
    return record_id


def measure(network: Network, sims: list[SimulatedHospital], documents: int, say: Say) -> dict[str, Any]:
    """Subscribe every simulated hospital to one patient of A, then send the documents one at a time."""
    a = network.link(network.topology.hospitals[0].id)
    patient = f"p-fanout-{uuid.uuid4().hex[:8]}"
    _subscribe(network, sims, patient)
    samples: dict[str, list[float]] = {"copy": [], "notify_topic": [], "webhook": []}
    records: list[str] = []
    conns = {s.node: psycopg.connect(libpq_dsn(s.settings, "local", SUBSCRIBED), autocommit=True) for s in sims}
    try:
        with psycopg.connect(libpq_dsn(a, "local", "fructos_own"), autocommit=True) as own, \
                ReferenceApi(a, "local") as api:
            for i in range(documents):
                records.append(_send_one(api, own, conns, patient, i, samples))
                if (i + 1) % max(1, documents // 10) == 0:
                    say(f"fan-out: {i + 1} of {documents} documents at all {len(sims)} subscribers")
    finally:
        for conn in conns.values():
            conn.close()
    return {"patient": patient, "records": records, "samples": samples}


def observed(sims: list[SimulatedHospital], receiver: WebhookReceiver,
             topics: TopicCounter) -> dict[str, SubscriberSeen]:
    """What every subscriber holds and received (its topic read until it carried every recorded key, or 30 s)."""
    seen = {}
    for sim in sims:
        with psycopg.connect(libpq_dsn(sim.settings, "local", SUBSCRIBED)) as conn:
            seen[sim.node] = SubscriberSeen(
                copies=[r[0] for r in conn.execute("SELECT id FROM signed_records").fetchall()],
                notifications=[(r[0], r[1]) for r in conn.execute("SELECT message_id, record_id FROM notifications")])
    topics.wait_for({sim.notification_topic: {k for k, _ in seen[sim.node].notifications} for sim in sims}, 30)
    for sim in sims:
        seen[sim.node].topic = topics.received(sim.notification_topic)
        seen[sim.node].webhook = receiver.received(sim.node)
    return seen


def held_by_others(network: Network) -> dict[str, dict[str, int]]:
    """Copies and notifications in the ``fructos_subscribed`` of every hospital of the network (none subscribed)."""
    held = {}
    for hospital in network.topology.hospitals:
        with psycopg.connect(libpq_dsn(network.link(hospital.id), "local", SUBSCRIBED)) as conn:
            held[hospital.id] = {
                "copies": conn.execute("SELECT count(*) FROM signed_records").fetchone()[0],
                "notifications": conn.execute("SELECT count(*) FROM notifications").fetchone()[0]}
    return held


def run_fanout_bench(quick: bool, json_path: Path | None, say: Say, work_dir: Path | None = None,
                     keep: bool = False, subscribers: int = SUBSCRIBERS, documents: int | None = None
                     ) -> dict[str, Any]:
    """Run the fan-out benchmark on a fresh network; return (and optionally write) the report."""
    documents = documents or (QUICK_DOCUMENTS if quick else FULL_DOCUMENTS)
    root = make_data_dir("platsync-bench-fanout-", work_dir)
    started = time.monotonic()
    network = Network(isolated_settings(root / "network"), load_topology(TOPOLOGY))
    sims = [SimulatedHospital(network, f"sim-{i:02d}", root / "sims" / f"sim-{i:02d}")
            for i in range(1, subscribers + 1)]
    processes = NetworkProcesses(network.plan, network.settings.data_dir,
                                 {h: s.data_dir for h, s in network.links.items()})

    def components() -> dict[str, int | None]:
        return {**processes(), **{k: v for s in sims for k, v in s.pids().items()}}

    try:
        with WebhookReceiver() as receiver:
            try:
                say(f"benchmark fan-out ({'quick' if quick else 'full'}): {documents} documents to {subscribers} "
                    f"subscribers, in {root}")
                network.up(say=lambda m: say(f"network: {m}"))
                for sim in sims:
                    sim.start(receiver.url)
                say(f"{subscribers} simulated hospitals started (their PostgreSQL and subscriber)")
                processes.refresh()
                meter = CpuMeter(components)
                with TopicCounter(network.settings, [s.notification_topic for s in sims]) as topics, \
                        MemorySampler(components) as memory:
                    meter.start()
                    result = measure(network, sims, documents, say)
                    cpu = meter.stop()
                    say("reading what every subscriber holds and received (copies, notifications, topic, webhook)")
                    seen = observed(sims, receiver, topics)
                    say("read; closing the topic reader")
                say("checking that hosp-a, hosp-b hold nothing")
                checks = checks_of(result["records"], seen, held_by_others(network))
            finally:
                with uninterrupted():
                    say("stopping the simulated hospitals and the network")
                    for sim in sims:
                        sim.stop()
                    network.down(say=lambda m: say(f"network: {m}"), drain_timeout_s=0)
    finally:
        if not keep:
            shutil.rmtree(root, ignore_errors=True)
    memory_mb = memory_by_kind(memory.report.peak_mb, [s.node for s in sims])
    first = result["samples"]["copy"][:subscribers]  # the first document's: consumer groups may still settle
    figures = {**latency_figures(result["samples"]), "documents": documents, "subscribers": subscribers,
               "copy_first_document_max_ms": round(max(first), 1) if first else None,
               "cpu_ms_per_document": cpu_per_document(cpu, documents).get("total"),
               "peak_rss_mb": memory_mb["total"]}
    report: dict[str, Any] = {
        "scenario": "fanout", "quick": quick, "figures": figures, "checks": [asdict(c) for c in checks],
        "cpu_ms_per_document_by_process": cpu_per_document(cpu, documents), "memory_mb": memory_mb,
        "peak_rss_mb_by_process": memory.report.peak_mb, "machine": machine(), "commit": commit_id(),
        "finished_at": time.strftime("%Y-%m-%dT%H:%M:%S%z"), "duration_s": round(time.monotonic() - started, 1),
    }
    write_report(report, json_path)
    return report
