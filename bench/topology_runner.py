"""``platsync bench --topology FILE``: the fan-in scenario on a fresh network, figures per hospital and per node.

Order: start a private network of the topology (fresh data dir, free ports; the default topology runs
today's two-site stack) -> every hospital bulk-registers at once (bench/fanin.py) -> drain and stop.
Memory and CPU of every process are read from ``/proc`` during the scenario and summed per node
(bench/nodes.py). The exit code says whether every correctness check passed; the target is reported,
never enforced.
"""

from __future__ import annotations

import shutil
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from bench.cpu import CpuMeter
from bench.fanin import fan_in
from bench.memory import MemorySampler
from bench.nodes import NODE_KINDS, NetworkProcesses, node_kind, processes_by_node, sum_by_kind, sum_by_node
from bench.runner import commit_id, machine, target_status, write_report
from bench.signals import uninterrupted
from infra.local.isolated import isolated_settings, make_data_dir
from infra.local.network import Network
from infra.local.stack import Stack
from streams.routing.matrix_model import load_matrix
from streams.runtime.settings import Settings
from streams.topology.load import load_topology
from streams.topology.model import Topology
from streams.topology.plan import NetworkPlan, build_plan

Say = Callable[[str], None]

#: Documents each hospital registers (the default bulk's count, per hospital: not divided).
FULL_DOCUMENTS = 50_000
QUICK_DOCUMENTS = 20_000
#: key -> (comparison, target): issue 14, for the regional topology's embedded stack (shown for any topology).
TOPOLOGY_TARGETS: dict[str, tuple[str, float]] = {"peak_rss_mb": ("<=", 6_000)}
#: Shown in the table, in this order.
TOPOLOGY_TABLE_KEYS = ("fanin_rows_per_s", "fanin_seconds", "fanin_lag_max_s", "fanin_row_lag_p50_ms",
                       "fanin_row_lag_p99_ms", "fanin_start_skew_s", "fanin_cpu_s", "fanin_cpu_us_per_row",
                       "peak_rss_mb", "peak_rss_mb_hospital", "peak_rss_mb_cloud", "peak_rss_mb_regional")


@dataclass
class Deployment:
    """What the benchmark starts for a topology: a network, or today's stack for the default topology."""

    plan: NetworkPlan
    links: dict[str, Settings]  # hospital -> its home link's two-party settings
    link_dirs: dict[str, Path]  # hospital -> the data dir of its link's stack (empty: one stack, plan names)
    up: Callable[[Say], None]
    down: Callable[[Say, float], None]


def deployment(settings: Settings, topology: Topology) -> Deployment:
    """The deployment of ``topology`` in ``settings.data_dir`` (a :class:`ProcessError` if it cannot run here)."""
    if topology.is_default:
        stack = Stack(settings)
        return Deployment(build_plan(topology, load_matrix()), {topology.hospitals[0].id: settings}, {},
                          lambda say: stack.up(say=say), lambda say, t: stack.down(say=say, drain_timeout_s=t))
    network = Network(settings, topology)
    links = dict(network.links)
    return Deployment(network.plan, links, {h: s.data_dir for h, s in links.items()},
                      lambda say: network.up(say=say), lambda say, t: network.down(say=say, drain_timeout_s=t))


def derived_figures(figures: dict[str, Any], cpu: dict[str, float], peak_mb: dict[str, float],
                    nodes: dict[str, str], plan: NetworkPlan) -> dict[str, Any]:
    """CPU per row and peak memory per node and node kind, from the per-process readings (pure)."""
    by_node = sum_by_node(peak_mb, nodes)
    by_kind = sum_by_kind(by_node, plan)
    cpu_total = cpu.get("total", round(sum(v for k, v in cpu.items() if k != "total"), 2))
    rows = figures.get("fanin_rows") or 0
    derived: dict[str, Any] = {
        "fanin_cpu_s": cpu_total,
        "fanin_cpu_us_per_row": round(cpu_total * 1e6 / rows, 1) if rows else None,
        "peak_rss_mb": round(sum(peak_mb.values()), 1),
        **{f"peak_rss_mb_{kind}": round(by_kind.get(kind, 0.0), 1) for kind in NODE_KINDS},
    }
    if by_kind.get("unattributed"):
        derived["peak_rss_mb_unattributed"] = by_kind["unattributed"]
    return derived


def _value(key: str, value: Any) -> str:
    if value is None:
        return "-"
    return f"{value:,}" if isinstance(value, int) else f"{value:,.1f}"


def render_topology_table(report: dict[str, Any]) -> str:
    """The fan-in figures, per hospital, per node and the checks as a plain-text table."""
    figures, targets = report["figures"], report["targets"]
    hospitals = figures.get("fanin_hospitals", 0)
    lines = [f"topology {report['topology']}: {hospitals} hospital{'' if hospitals == 1 else 's'} x "
             f"{report['sizes']['documents_per_hospital']:,} documents at once", "",
             f"{'figure':<24} {'value':>12}  {'target':<10} ", "-" * 56]
    for key in TOPOLOGY_TABLE_KEYS:
        target = targets.get(key)
        verdict = "" if target is None else f"{target['target']:<10} {'met' if target['met'] else 'MISSED'}"
        lines.append(f"{key:<24} {_value(key, figures.get(key)):>12}  {verdict}")
    lines += ["", f"{'hospital':<16} {'rows':>9} {'rows/s':>9} {'lag s':>7} {'row lag p50/p99 ms':>20}", "-" * 64]
    for hospital, h in report["per_hospital"].items():
        lags = f"{h['row_lag_p50_ms']:,.0f} / {h['row_lag_p99_ms']:,.0f}"
        lines.append(f"{hospital:<16} {h['rows']:>9,} {h['rows_per_s']:>9,.1f} {h['lag_s']:>7.2f} {lags:>20}")
    cpu_by_node = report["cpu_s_by_node"].get("fanin", {})
    lines += ["", f"{'node':<16} {'kind':<12} {'peak RSS MB':>12} {'CPU s':>8}  processes", "-" * 64]
    for node, mb in report["peak_rss_mb_by_node"].items():
        kind = report["node_kinds"].get(node, "unattributed")
        count = len(report["processes_by_node"].get(node, []))
        lines.append(f"{node:<16} {kind:<12} {mb:>12,.1f} {cpu_by_node.get(node, 0.0):>8.1f}  {count}")
    lines.append("-" * 64)
    failed = [c for c in report["checks"] if not c["ok"]]
    lines.append(f"correctness: {len(report['checks']) - len(failed)} of {len(report['checks'])} checks passed"
                 + "".join(f"\n  FAILED {c['name']}: {c['detail']}" for c in failed))
    return "\n".join(lines)


def run_topology_bench(topology_path: Path, quick: bool, json_path: Path | None, say: Say,
                       work_dir: Path | None = None, keep: bool = False,
                       documents: int | None = None) -> dict[str, Any]:
    """Run the fan-in benchmark on a fresh network of ``topology_path``; return (and optionally write) the report.

    Raises :class:`streams.topology.load.TopologyError` for an invalid file and
    :class:`infra.local.process.ProcessError` for a network the embedded stack cannot run, before
    anything is started."""
    topology = load_topology(topology_path)
    documents = documents or (QUICK_DOCUMENTS if quick else FULL_DOCUMENTS)
    timeout_s = 600.0
    data_dir = make_data_dir("platsync-bench-net-", work_dir)
    started = time.monotonic()
    try:
        target = deployment(isolated_settings(data_dir), topology)
        processes = NetworkProcesses(target.plan, data_dir, target.link_dirs)
        say(f"benchmark fan-in ({'quick' if quick else 'full'}) of {topology_path} in {data_dir}")
        try:
            target.up(lambda m: say(f"network: {m}"))
            processes.refresh()
            meter = CpuMeter(processes)
            with MemorySampler(processes) as memory:
                meter.start()
                result = fan_in(target.links, documents, timeout_s, say)
                cpu = meter.stop()
            say("stopping the network")
            target.down(lambda m: say(f"network: {m}"), 120)  # Ctrl-C here: stopped at once below
        except BaseException:
            say("benchmark failed; stopping the network (Ctrl-C is ignored until it stopped)")
            with uninterrupted():
                target.down(lambda m: say(f"network: {m}"), 0)
            raise
    finally:
        if not keep:
            shutil.rmtree(data_dir, ignore_errors=True)
    plan, nodes = target.plan, processes.nodes
    figures = {**result.figures, **derived_figures(result.figures, cpu, memory.report.peak_mb, nodes, plan)}
    by_node = sum_by_node(memory.report.peak_mb, nodes)
    report: dict[str, Any] = {
        "topology": str(topology_path), "quick": quick, "sizes": {"documents_per_hospital": documents},
        "figures": figures, "targets": target_status(figures, TOPOLOGY_TARGETS),
        "checks": [asdict(c) for c in result.checks], "per_hospital": result.context["per_hospital"],
        "api_call_s": result.context["api_call_s"],
        "node_of_process": dict(sorted(nodes.items())),
        "node_kinds": {n.id: node_kind(plan, n.id) for n in plan.topology.nodes},
        "processes_by_node": processes_by_node(nodes, nodes),
        "peak_rss_mb_by_process": memory.report.peak_mb, "peak_rss_mb_by_node": by_node,
        "memory_samples": memory.report.samples,
        "cpu_s_by_process": {"fanin": cpu}, "cpu_s_by_node": {"fanin": sum_by_node(cpu, nodes)},
        "machine": machine(), "commit": commit_id(),
        "finished_at": time.strftime("%Y-%m-%dT%H:%M:%S%z"), "duration_s": round(time.monotonic() - started, 1),
    }
    report.update({key: figures.get(key) for key in TOPOLOGY_TABLE_KEYS})
    write_report(report, json_path)
    return report

