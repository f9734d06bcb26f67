"""The fan-in benchmark's pure parts: processes placed on nodes, the figures' arithmetic, the table (issue 14)."""

from __future__ import annotations

import argparse
import os
import signal
import time
from pathlib import Path

import pytest

from bench.fanin import HospitalTimes, fanin_figures
from bench.nodes import (
    NetworkProcesses,
    find_run_dirs,
    node_kind,
    node_of,
    plan_name,
    processes_by_node,
    sum_by_kind,
    sum_by_node,
)
from bench.runner import target_status
from bench.signals import sigterm_unwinds, uninterrupted
from bench.topology_runner import TOPOLOGY_TARGETS, deployment, derived_figures, render_topology_table
from infra.local.process import write_pid_file
from streams.cli.bench import cmd_bench
from streams.routing.matrix_model import load_matrix
from streams.runtime.settings import load_settings
from streams.topology.load import load_topology
from streams.topology.plan import NetworkPlan, build_plan

TOPOLOGIES = Path(__file__).resolve().parents[2] / "infra" / "topologies"


def plan_of(name: str) -> NetworkPlan:
    return build_plan(load_topology(TOPOLOGIES / f"{name}.toml"), load_matrix())


def test_a_link_stack_s_processes_get_the_plan_s_names_and_nodes() -> None:
    plan = plan_of("two_hospitals")
    placed = {name: (plan_name(plan, "hosp-b", name), node_of(plan, plan_name(plan, "hosp-b", name)))
              for name in ("pg-local", "capture-local", "capture-remote", "worker-local_to_remote",
                           "worker-remote_to_local", "mode-local", "mode-remote", "keycloak-local", "keycloak-remote",
                           "subscriber")}
    assert placed == {
        "pg-local": ("pg-hosp-b", "hosp-b"),
        "capture-local": ("capture-hosp-b", "hosp-b"),
        "capture-remote": ("capture-remote.hosp-b", "remote"),
        "worker-local_to_remote": ("worker-hosp-b_to_remote.hosp-b", "remote"),  # beside the stores it writes
        "worker-remote_to_local": ("worker-remote.hosp-b_to_hosp-b", "hosp-b"),
        "mode-local": ("mode-hosp-b", "hosp-b"),
        "mode-remote": ("mode-remote.hosp-b", "remote"),
        "keycloak-local": ("keycloak-hosp-b", "hosp-b"),  # not a plan process: placed by its endpoint
        "keycloak-remote": ("keycloak-remote.hosp-b", "remote"),
        "subscriber": ("subscriber-hosp-b", "hosp-b"),  # the hospital's subscriber (its feed, its store)
    }
    # Every process the plan names is renamed onto itself and placed as the plan places it.
    for process in plan.processes():
        assert node_of(plan, plan_name(plan, None, process)) == plan.node_of_process(process)


def test_shared_and_regional_processes_are_placed_by_their_names() -> None:
    plan = plan_of("regional")
    assert node_of(plan, "pg-remote") == "remote"
    assert node_of(plan, "broker") == node_of(plan, "link") == "remote"  # the cloud's Kafka in production
    assert node_of(plan, "pg-region-1") == "region-1"
    assert node_of(plan, plan_name(plan, "hosp-a", "worker-local_to_region-1")) == "region-1"
    assert node_of(plan, "fanout") == "remote"  # the network's shared data dir: the cloud's fan-out
    # The cloud's FHIR worker and the sharing service stand-in it submits to (docs/fhir.md).
    assert node_of(plan, "fhir-remote") == node_of(plan, "fhir-standin") == "remote"
    assert node_of(plan, plan_name(plan, "hosp-a", "api-local")) == "hosp-a"  # the HTTP API beside its stores
    assert node_of(plan, "mystery") == "unattributed"
    assert [node_kind(plan, n) for n in ("remote", "region-1", "hosp-a", "nowhere")] == [
        "cloud", "regional", "hospital", "unattributed"]


def test_the_default_topology_s_names_are_today_s_stack_names() -> None:
    plan = build_plan(load_topology(TOPOLOGIES / "default.toml"), load_matrix())
    assert {p: node_of(plan, p) for p in ("capture-local", "worker-local_to_remote", "keycloak-remote", "broker")} \
        == {"capture-local": "local", "worker-local_to_remote": "remote", "keycloak-remote": "remote",
            "broker": "remote"}


def test_processes_are_found_by_their_pid_files_in_every_run_dir(tmp_path: Path) -> None:
    plan = plan_of("two_hospitals")
    link_dir = tmp_path / "links" / "hosp-a"
    for directory in (tmp_path / "run", link_dir / "run", tmp_path / "pg" / "remote" / "run"):
        directory.mkdir(parents=True)
    (tmp_path / "pg" / "remote" / "PG_VERSION").write_text("15\n")  # a PostgreSQL data dir is never entered
    write_pid_file(tmp_path, "broker", os.getpid())
    write_pid_file(link_dir, "capture-local", os.getpid())
    (link_dir / "run" / "worker-local_to_remote.pid").write_text("999999999\n")  # its process is gone
    assert set(find_run_dirs(tmp_path)) == {tmp_path / "run", link_dir / "run"}
    processes = NetworkProcesses(plan, tmp_path, {"hosp-a": link_dir})
    processes.refresh()
    assert processes() == {"broker": os.getpid(), "capture-hosp-a": os.getpid(),
                           "worker-hosp-a_to_remote.hosp-a": None}
    assert processes.nodes == {"broker": "remote", "capture-hosp-a": "hosp-a",
                               "worker-hosp-a_to_remote.hosp-a": "remote"}
    assert processes_by_node(processes.nodes, processes.nodes) == {
        "hosp-a": ["capture-hosp-a"], "remote": ["broker", "worker-hosp-a_to_remote.hosp-a"]}


def test_figures_are_summed_per_node_and_per_kind() -> None:
    plan = plan_of("regional")
    nodes = {"pg-hosp-a": "hosp-a", "capture-hosp-a": "hosp-a", "pg-remote": "remote", "pg-region-1": "region-1"}
    peak = {"pg-hosp-a": 100.0, "capture-hosp-a": 400.5, "pg-remote": 300.0, "pg-region-1": 50.0, "odd": 1.0}
    by_node = sum_by_node({**peak, "total": 851.5}, nodes)  # a CPU reading's "total" is not a process
    assert by_node == {"hosp-a": 500.5, "remote": 300.0, "region-1": 50.0, "unattributed": 1.0}
    assert list(by_node) == ["hosp-a", "remote", "region-1", "unattributed"]  # largest first
    assert sum_by_kind(by_node, plan) == {"hospital": 500.5, "cloud": 300.0, "regional": 50.0, "unattributed": 1.0}
    derived = derived_figures({"fanin_rows": 1000}, {"a": 1.5, "total": 2.0}, peak, nodes, plan)
    assert derived == {"fanin_cpu_s": 2.0, "fanin_cpu_us_per_row": 2000.0, "peak_rss_mb": 851.5,
                       "peak_rss_mb_hospital": 500.5, "peak_rss_mb_cloud": 300.0, "peak_rss_mb_regional": 50.0,
                       "peak_rss_mb_unattributed": 1.0}
    assert target_status(derived, TOPOLOGY_TARGETS) == {
        "peak_rss_mb": {"target": "<= 6000", "value": 851.5, "met": True}}


def test_fan_in_figures_from_commit_times() -> None:
    # Hospital A commits its two rows at t=10 and t=11, the cloud applies them at 12 and 14;
    # B commits at 10.5 and the cloud applies its one row at 13.
    times = {
        "hosp-a": HospitalTimes(committed={("meta", "1"): 10.0, ("fructos_own", "1"): 11.0},
                                applied={("meta", "1"): 12.0, ("fructos_own", "1"): 14.0}),
        "hosp-b": HospitalTimes(committed={("meta", "9"): 10.5}, applied={("meta", "9"): 13.0}),
    }
    figures, per_hospital = fanin_figures(times)
    assert figures == {"fanin_hospitals": 2, "fanin_rows": 3, "fanin_seconds": 4.0, "fanin_rows_per_s": 0.8,
                       "fanin_lag_max_s": 3.0, "fanin_row_lag_p50_ms": 2500.0, "fanin_row_lag_p99_ms": 3000.0,
                       "fanin_start_skew_s": 0.5}
    assert per_hospital["hosp-a"] == {"rows": 2, "seconds": 4.0, "rows_per_s": 0.5, "lag_s": 3.0,
                                      "row_lag_p50_ms": 2000.0, "row_lag_p99_ms": 3000.0}
    assert per_hospital["hosp-b"]["lag_s"] == 2.5 and per_hospital["hosp-b"]["rows_per_s"] == 0.4
    with pytest.raises(ValueError, match="hosp-c"):
        fanin_figures({"hosp-c": HospitalTimes(committed={}, applied={})})


def test_the_table_shows_figures_hospitals_nodes_and_failed_checks() -> None:
    figures = {"fanin_hospitals": 2, "fanin_rows_per_s": 1234.5, "fanin_lag_max_s": 1.25, "peak_rss_mb": 7000.0}
    report = {
        "topology": "t.toml", "sizes": {"documents_per_hospital": 200}, "figures": figures,
        "targets": target_status(figures, TOPOLOGY_TARGETS),
        "per_hospital": {"hosp-a": {"rows": 400, "rows_per_s": 99.5, "lag_s": 0.5, "row_lag_p50_ms": 300.0,
                                    "row_lag_p99_ms": 480.0}},
        "cpu_s_by_node": {"fanin": {"remote": 3.5}}, "peak_rss_mb_by_node": {"remote": 4000.0, "hosp-a": 3000.0},
        "node_kinds": {"remote": "cloud", "hosp-a": "hospital"},
        "processes_by_node": {"remote": ["broker", "pg-remote"], "hosp-a": ["pg-hosp-a"]},
        "checks": [{"name": "a", "ok": True, "detail": ""}, {"name": "b", "ok": False, "detail": "1 of 2"}],
    }
    table = render_topology_table(report)
    assert "2 hospitals x 200 documents" in table
    assert "1,234.5" in table and "<= 6000" in table and "MISSED" in table
    assert "hosp-a" in table and "300 / 480" in table and "99.5" in table
    assert "cloud" in table and "4,000.0" in table and "3.5" in table
    assert "1 of 2 checks passed" in table and "FAILED b: 1 of 2" in table


def test_the_regional_topology_is_laid_out_without_starting_anything(tmp_path: Path) -> None:
    settings = load_settings(env={}, data_dir=tmp_path)
    laid_out = deployment(settings, load_topology(TOPOLOGIES / "regional.toml"))
    assert sorted(laid_out.links) == ["hosp-a", "hosp-b"]  # the region runs with the network, fed by both links
    assert all(link.replica_nodes == ("region-1",) for link in laid_out.links.values())
    assert not (tmp_path / "run").exists()


def test_bench_options_are_checked(capsys: pytest.CaptureFixture[str]) -> None:
    args = argparse.Namespace(documents=5, topology=None, quick=False, json=None, work_dir=None, keep=False,
                              fanout=False, subscribers=None)
    assert cmd_bench(args) == 2
    assert "--documents applies to --topology and --fanout only" in capsys.readouterr().err


def test_sigterm_unwinds_inside_and_is_restored_after() -> None:
    before = signal.getsignal(signal.SIGTERM)
    with pytest.raises(SystemExit) as exited, sigterm_unwinds():
        os.kill(os.getpid(), signal.SIGTERM)
        time.sleep(5)  # the handler raises before this ends
    assert exited.value.code == 128 + signal.SIGTERM
    assert signal.getsignal(signal.SIGTERM) == before
    with uninterrupted():
        assert signal.getsignal(signal.SIGINT) == signal.SIG_IGN == signal.getsignal(signal.SIGTERM)
    assert signal.getsignal(signal.SIGTERM) == before
