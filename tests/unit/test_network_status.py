"""The network overview of 'platsync status' (streams/cli/network_status.py) over a laid-out network."""

from __future__ import annotations

import itertools
from pathlib import Path

from infra.local.network import Network
from streams.cli.network_status import network_overview, render_overview
from streams.runtime.settings import load_settings
from streams.topology.load import load_topology

TOPOLOGIES = Path(__file__).resolve().parents[2] / "infra" / "topologies"


def store(lag_ms: int, lag_bytes: int) -> dict[str, int]:
    return {"lag_ms": lag_ms, "lag_bytes": lag_bytes}


def link_status(pids: dict[str, bool], lags: dict[str, dict[str, dict[str, int]]]) -> dict[str, object]:
    return {"processes": {p: {"running": up} for p, up in pids.items()},
            "routes": {route: {"stores": stores} for route, stores in lags.items()}}


def test_a_row_per_node_and_per_link_with_lag(tmp_path: Path) -> None:
    ports = itertools.count(36000)
    net = Network(load_settings(env={}, data_dir=tmp_path), load_topology(TOPOLOGIES / "regional.toml"),
                  port=lambda: next(ports))
    everything_up = {"pg-local": True, "capture-local": True, "capture-remote": True, "worker-local_to_remote": True,
                     "worker-remote_to_local": True, "worker-local_to_region-1": True, "mode-local": True,
                     "mode-remote": True}
    statuses = {
        "hosp-a": link_status({**everything_up, "worker-local_to_region-1": False},
                              {"local_to_remote": {"meta": store(0, 0)},
                               "local_to_region-1": {"local.fructos_own": store(1500, 42)}}),
        "hosp-b": link_status({**everything_up, "capture-local": False},
                              {"local_to_remote": {"meta": store(250, 10), "fructos_own": store(900, 5)}}),
    }
    overview = network_overview(net, statuses)
    nodes = overview["nodes"]
    assert set(nodes) == {"remote", "region-1", "hosp-a", "hosp-b"}
    # A hospital's own processes (its subscriber too: nothing runs in this test, so it is down everywhere).
    assert nodes["hosp-b"]["down"] == ["capture-local", "subscriber"]
    assert "fanout" in nodes["remote"]["down"] and "subscriber" in nodes["hosp-a"]["down"]
    assert "capture-remote@hosp-a" in nodes["remote"]["running"]  # the cloud side of every home link
    # nothing runs here: its server, its declarer to the patient index, the replica worker fed by hosp-a
    assert nodes["region-1"]["down"] == ["pg-region-1", "worker-local_to_region-1@hosp-a", "declarer-region-1"]
    assert "pg-remote" in nodes["remote"]["down"]
    links = overview["links"]
    assert links["home.hosp-b"] == {"up": True, "lag_ms": 900, "stores_behind": 2}
    assert links["home.hosp-a"]["stores_behind"] == 0
    assert links["replica.hosp-a.region-1"] == {"up": True, "lag_ms": 1500, "stores_behind": 1}
    text = render_overview(net, overview)
    assert text.splitlines()[1].startswith("node remote ")  # tree order, the cloud first
    assert "link replica.hosp-a.region-1  up   lag    1500 ms  1 store(s) behind" in text
    assert "DEGRADED, down: capture-local" in text
