"""The fan-out benchmark's figures, correctness checks and table (pure: no stack, no I/O).

``bench/fanout_bench.py`` measures; this module turns what it observed into the report:

- **latencies** in ms from the approval's commit (nearest-rank p50/p99 and the max);
- **CPU** per document of each process, and **peak memory** per process and per kind of node;
- **checks** that every subscriber got every document exactly once (copies, notifications recorded, on the
  topic and at the webhook, duplicates by idempotency key counted) and that no other hospital got anything.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from bench.timing import percentile

LATENCIES = (("copy", "copy at the subscriber"), ("notify_topic", "notification on its topic"),
             ("webhook", "webhook acknowledged"))


@dataclass(frozen=True)
class Check:
    """One correctness check of the run."""

    name: str
    ok: bool
    detail: str


@dataclass
class SubscriberSeen:
    """What one subscribed hospital holds and received at the end of the run."""

    copies: list[str] = field(default_factory=list)  # record ids in its fructos_subscribed (every patient)
    notifications: list[tuple[str, str]] = field(default_factory=list)  # (idempotency key, record id) recorded
    topic: Counter[str] = field(default_factory=Counter)  # deliveries on its notification topic, by key
    webhook: Counter[str] = field(default_factory=Counter)  # POSTs its webhook acknowledged, by key


def latency_figures(samples: Mapping[str, list[float]]) -> dict[str, float | None]:
    """p50, p99 and max in ms of each kind of latency (empty kinds give None)."""
    out: dict[str, float | None] = {}
    for kind, values in samples.items():
        for name, value in (("p50", percentile(values, 50) if values else None),
                            ("p99", percentile(values, 99) if values else None),
                            ("max", max(values) if values else None)):
            out[f"{kind}_{name}_ms"] = None if value is None else round(value, 1)
    return out


def cpu_per_document(cpu: Mapping[str, float], documents: int) -> dict[str, float]:
    """CPU milliseconds per document of each process (and the total), in the order given."""
    return {name: round(seconds * 1000 / documents, 2) for name, seconds in cpu.items()} if documents else {}


def memory_by_kind(peak_mb: Mapping[str, float], simulated: list[str]) -> dict[str, float]:
    """Peak RSS in MB: all processes, the network's (both hospitals and the cloud), and per simulated
    subscriber (its subscriber process plus its PostgreSQL, the mean over ``simulated``)."""
    sim_names = {f"{kind}-{node}" for node in simulated for kind in ("subscriber", "pg")}
    sims = sum(mb for name, mb in peak_mb.items() if name in sim_names)
    total = sum(peak_mb.values())
    return {"total": round(total, 1), "network": round(total - sims, 1),
            "per_simulated_subscriber": round(sims / len(simulated), 1) if simulated else 0.0,
            "subscriber_process_mean": round(sum(peak_mb.get(f"subscriber-{n}", 0.0) for n in simulated)
                                             / len(simulated), 1) if simulated else 0.0}


def _duplicates(counts: Counter[str]) -> int:
    return sum(n - 1 for n in counts.values() if n > 1)


def _exactly(name: str, what: str, wrong: dict[str, str], ok_detail: str) -> Check:
    if not wrong:
        return Check(name, True, ok_detail)
    shown = "; ".join(f"{node}: {why}" for node, why in sorted(wrong.items())[:5])
    return Check(name, False, f"{len(wrong)} subscriber(s) {what}: {shown}")


def checks_of(documents: list[str], seen: Mapping[str, SubscriberSeen],
              others: Mapping[str, Mapping[str, int]]) -> list[Check]:
    """The run's checks. ``documents``: the record ids A approved; ``seen``: per subscriber; ``others``: per
    hospital that did not subscribe (the author included), how many copies and notifications it holds."""
    docs = set(documents)
    n = len(documents)
    wrong_copies, wrong_notes, wrong_topic, wrong_hook = {}, {}, {}, {}
    topic_dups = hook_dups = 0
    for node, s in seen.items():
        if len(s.copies) != n or set(s.copies) != docs:
            wrong_copies[node] = f"{len(s.copies)} copies, {len(docs - set(s.copies))} documents missing"
        keys = {key for key, _ in s.notifications}
        about = Counter(record for _, record in s.notifications)
        if len(s.notifications) != n or set(about) != docs or len(keys) != n:
            extra = sum(c - 1 for c in about.values())
            wrong_notes[node] = (f"{len(s.notifications)} recorded, {len(docs - set(about))} documents without one, "
                                 f"{extra} documents notified twice")
        if set(s.topic) != keys:
            wrong_topic[node] = f"{len(keys - set(s.topic))} missing, {len(set(s.topic) - keys)} unknown keys"
        if set(s.webhook) != keys:
            wrong_hook[node] = f"{len(keys - set(s.webhook))} missing, {len(set(s.webhook) - keys)} unknown keys"
        topic_dups += _duplicates(s.topic)
        hook_dups += _duplicates(s.webhook)
    total = n * len(seen)
    leaked = {node: dict(c) for node, c in others.items() if any(c.values())}
    return [
        _exactly("copies", "differ", wrong_copies, f"each of {len(seen)} subscribers holds exactly the {n} documents"),
        _exactly("notifications", "differ", wrong_notes,
                 f"{total} recorded: one per document and subscriber, each its own idempotency key"),
        _exactly("topic", "differ", wrong_topic, f"every recorded key on its subscriber's topic; "
                 f"{topic_dups} duplicate deliveries (at-least-once, dropped by key)"),
        _exactly("webhook", "differ", wrong_hook, f"every recorded key acknowledged by its subscriber's webhook; "
                 f"{hook_dups} duplicate deliveries (at-least-once, dropped by key)"),
        Check("not subscribed", not leaked, f"{', '.join(sorted(others))} hold no copy and no notification"
              if not leaked else f"hold: {leaked}"),
    ]


def render_fanout_table(report: Mapping[str, Any]) -> str:
    """The figures, the CPU per document of the busiest processes, memory and the checks as plain text."""
    f = report["figures"]
    lines = [f"fan-out: {f['documents']} documents, one at a time, each to {f['subscribers']} subscribers", "",
             f"{'latency from approval commit (ms)':<34} {'p50':>8} {'p99':>8} {'max':>8}", "-" * 62]
    for kind, label in LATENCIES:
        lines.append(f"{label:<34} " + " ".join(
            f"{'-':>8}" if f[f"{kind}_{q}_ms"] is None else f"{f[f'{kind}_{q}_ms']:>8,.1f}"
            for q in ("p50", "p99", "max")))
    if f.get("copy_first_document_max_ms") is not None:
        lines.append(f"(the first document's copy, while consumer groups may still settle: max "
                     f"{f['copy_first_document_max_ms']:,.1f} ms)")
    lines += ["", f"CPU per document: {f['cpu_ms_per_document']:,.1f} ms in all; busiest processes (ms):"]
    busiest = [(k, v) for k, v in report["cpu_ms_per_document_by_process"].items() if k != "total"][:8]
    lines += [f"  {name:<34} {ms:>8,.2f}" for name, ms in busiest]
    m = report["memory_mb"]
    lines.append(f"peak RSS: {m['total']:,.0f} MB in all; the network {m['network']:,.0f} MB; each simulated "
                 f"subscriber {m['per_simulated_subscriber']:,.0f} MB (its process {m['subscriber_process_mean']:,.0f}"
                 f" MB, the rest its PostgreSQL)")
    failed = [c for c in report["checks"] if not c["ok"]]
    lines.append(f"correctness: {len(report['checks']) - len(failed)} of {len(report['checks'])} checks passed")
    lines += [f"  {'ok    ' if c['ok'] else 'FAILED'} {c['name']}: {c['detail']}" for c in report["checks"]]
    return "\n".join(lines)
