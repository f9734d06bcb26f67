"""The network overview of 'platsync status' (streams/cli/network_status.py) over a laid-out network: a row per
node (its processes, the latest backup of each of its nodes' stores) and per link."""

from __future__ import annotations

import itertools
from datetime import UTC, datetime, timedelta
from pathlib import Path

from infra.local.network import Network
from streams.cli.network_status import network_overview, render_overview
from streams.cli.subscription_status import render_subscriptions
from streams.ops.backup_format import MANIFEST, Manifest, backup_name
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


def notes(**counts: object) -> dict[str, object]:
    return {"total": 0, "unpublished": 0, "undelivered": 0, "failing": 0, "webhook": False, "last_error": None,
            **counts}


def test_a_line_of_subscriptions_per_hospital_says_what_is_behind() -> None:
    lines = render_subscriptions({
        "hosp-a": {"fanout": {"asked": 2, "open": 2},
                   "subscriber": {"patients": 2, "copies": 5, "last_received_at": "2026-12-05T09:00:00.5+00:00",
                                  "notifications": notes(total=7, webhook=True)}},
        "hosp-b": {"fanout": {"asked": 1, "open": 1},  # its link was cut: the subscriber has not opened it yet
                   "subscriber": {"patients": 0, "copies": 0, "last_received_at": None,
                                  "notifications": notes(total=3, unpublished=1, undelivered=2, failing=2,
                                                         webhook=True, last_error="HTTP 503")}},
        "hosp-c": {"fanout": {"error": "sharing on remote unreachable: connection refused"},
                   "subscriber": {"patients": 0, "copies": 0, "last_received_at": None, "notifications": notes()}},
    })
    assert lines[0] == ("subscriptions hosp-a         2 asked, 2 open; holds 2 patient(s), 5 copies, last copy "
                        "2026-12-05T09:00:00; notifications 7, 0 undelivered by webhook")
    assert lines[1].endswith("notifications 3, 1 unpublished, 2 undelivered by webhook (2 failing: HTTP 503)  BEHIND")
    assert lines[2] == "subscriptions hosp-c         UNKNOWN: sharing on remote unreachable: connection refused"


def held_backup(root: Path, node: str, at: datetime) -> str:
    """A backup of ``node`` taken at ``at`` in the backup dir ``root`` (a manifest without databases)."""
    name = backup_name(node, at)
    (root / node / name).mkdir(parents=True)
    manifest = Manifest(node=node, side="remote" if "." in node else "local", created_at=at.isoformat(),
                        server_version="15.10", databases=(), duration_s=0.1)
    (root / node / name / MANIFEST).write_text(manifest.to_json(), encoding="utf-8")
    return name


def test_each_node_shows_the_age_and_name_of_its_latest_backup(tmp_path: Path) -> None:
    ports = itertools.count(36100)
    net = Network(load_settings(env={}, data_dir=tmp_path), load_topology(TOPOLOGIES / "regional.toml"),
                  port=lambda: next(ports))
    now = datetime(2026, 12, 5, 21, 0, tzinfo=UTC)
    root = tmp_path / "backups"  # where 'platsync backup create --node N' keeps a network's backups
    held_backup(root, "hosp-a", now - timedelta(days=1))
    newest = held_backup(root, "hosp-a", now - timedelta(hours=3, minutes=12))
    cloud = held_backup(root, "remote.hosp-a", now - timedelta(minutes=5))
    statuses = {h: link_status({"pg-local": True}, {}) for h in ("hosp-a", "hosp-b")}
    for status in statuses.values():
        status["backups"] = {"local": None, "remote": None}  # a link's own data dir holds none
    overview = network_overview(net, statuses, now=now)
    nodes = overview["nodes"]
    assert nodes["hosp-a"]["backups"] == {"hosp-a": {"name": newest, "age_s": 11520}}
    assert nodes["hosp-b"]["backups"] == {"hosp-b": None}
    assert nodes["remote"]["backups"] == {"remote.hosp-a": {"name": cloud, "age_s": 300}, "remote.hosp-b": None}
    assert "backups" not in nodes["region-1"]  # read-only replicas: never backed up
    # Each link's section of 'platsync status' shows its two nodes' backups, not its own (empty) data dir's.
    assert statuses["hosp-a"]["backups"] == {"local": {"name": newest, "age_s": 11520},
                                             "remote": {"name": cloud, "age_s": 300}}
    text = render_overview(net, overview).splitlines()
    at = {line.split()[1]: i for i, line in enumerate(text) if line.startswith("node ")}
    assert text[at["hosp-a"] + 1] == f"     backups hosp-a: 3.2 h ago ({newest})"
    assert text[at["hosp-b"] + 1] == "     backups hosp-b: none ('platsync backup create --node hosp-b')"
    assert text[at["remote"] + 1] == (f"     backups remote.hosp-a: 5 min ago ({cloud})  remote.hosp-b: none "
                                      "('platsync backup create --node remote.hosp-b')")
    assert text[at["region-1"] + 1].startswith(("node ", "link "))
