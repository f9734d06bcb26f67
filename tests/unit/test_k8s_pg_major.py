"""The nodes' PostgreSQL major versions in the deployment file: from 16, a node's KafkaConnectors stream
pgoutput's ``origin = none`` (connectors/stores/origins.py), as the embedded capture does after asking the
server. Kubernetes renders before any server is reachable, so the version is declared, and checked."""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import pytest
import yaml

from infra.k8s.config import DEFAULT_DEPLOYMENT_FILE, DeploymentError, load_deployment
from infra.k8s.generate import render
from streams.topology.load import load_topology

REPO = Path(__file__).resolve().parents[2]
ORIGIN_NONE = {"slot.stream.params": "origin=none"}


def _deployment(tmp_path: Path, k8s: str = "", settings: str = "", nodes: str = "") -> Path:
    """The committed deployment file with ``k8s`` lines replacing its [k8s] keys, ``settings`` added to [settings] and
    ``nodes`` to every ``[k8s.nodes.<id>]`` table."""
    text = DEFAULT_DEPLOYMENT_FILE.read_text(encoding="utf-8")
    assert text.count("[k8s]\n") == 1 and text.rfind("\n[") == text.find("\n[settings]"), "[settings] comes last"
    for line in filter(None, k8s.splitlines()):
        key = line.split("=")[0].strip()
        text, replaced = re.subn(rf"^{key} = .*$", line, text, count=1, flags=re.MULTILINE)
        assert replaced, f"{key} is in the committed file"
    if nodes:
        for node in ("hosp-a", "hosp-b", "region-1"):
            text = text.replace(f"[k8s.nodes.{node}]\n", f"[k8s.nodes.{node}]\n{nodes}\n", 1)
    path = tmp_path / "deployment.toml"
    path.write_text(text + f"\n{settings}\n", encoding="utf-8")
    return path


def _connectors(files: dict[str, str]) -> dict[tuple[str, str, str], dict[str, str]]:
    """(node directory or "", side label, database) -> spec.config of every rendered KafkaConnector."""
    out: dict[tuple[str, str, str], dict[str, str]] = {}
    for path, text in files.items():
        node = path.split("/")[0] if "/" in path else ""
        for doc in yaml.safe_load_all(text):
            if isinstance(doc, dict) and doc.get("kind") == "KafkaConnector":
                config = doc["spec"]["config"]
                out[(node, doc["metadata"]["labels"]["platsync.io/side"], config["database.dbname"])] = config
    return out


def _origin_params(config: dict[str, Any]) -> dict[str, str]:
    return {k: v for k, v in config.items() if k == "slot.stream.params"}


def test_by_default_no_connector_streams_origin_none() -> None:
    connectors = _connectors(render(load_deployment(DEFAULT_DEPLOYMENT_FILE)))
    assert connectors, "the default deployment renders KafkaConnectors"
    assert all(not _origin_params(c) for c in connectors.values())


def test_a_postgresql_16_node_streams_origin_none_except_keycloak(tmp_path: Path) -> None:
    connectors = _connectors(render(load_deployment(_deployment(tmp_path, k8s="remote_pg_major = 16"))))
    remote = {db: c for (_, side, db), c in connectors.items() if side == "remote"}
    assert {"meta", "fructos_own", "keycloak"} <= set(remote), connectors.keys()
    for dbname, config in remote.items():
        assert _origin_params(config) == ({} if dbname == "keycloak" else ORIGIN_NONE), dbname
    local = [c for (_, side, _), c in connectors.items() if side == "local"]
    assert local and all(not _origin_params(c) for c in local), "the hospital's server is still 15"


def test_pg_origin_filter_false_leaves_origin_none_off(tmp_path: Path) -> None:
    path = _deployment(tmp_path, k8s="local_pg_major = 17\nremote_pg_major = 18", settings="pg_origin_filter = false")
    assert all(not _origin_params(c) for c in _connectors(render(load_deployment(path))).values())


def test_a_network_node_declares_its_own_major(tmp_path: Path) -> None:
    deployment = load_deployment(_deployment(tmp_path, nodes="pg_major = 16"))
    connectors = _connectors(render(deployment, load_topology(REPO / "infra" / "topologies" / "two_hospitals.toml")))
    hospitals = {k: c for k, c in connectors.items() if k[0] in ("hosp-a", "hosp-b")}
    cloud = {k: c for k, c in connectors.items() if k[0] not in ("hosp-a", "hosp-b")}
    assert hospitals and cloud, connectors.keys()
    assert all(_origin_params(c) == ({} if k[2] == "keycloak" else ORIGIN_NONE) for k, c in hospitals.items())
    assert all(not _origin_params(c) for c in cloud.values()), "the cloud root is still 15"


@pytest.mark.parametrize(("k8s", "nodes", "fault"), [
    ("remote_pg_major = 160004", "", "[k8s] remote_pg_major expects a PostgreSQL major version (15..99), got 160004"),
    ('local_pg_major = "16"', "", "[k8s] local_pg_major expects int, got '16'"),
    ("local_pg_major = 14", "", "[k8s] local_pg_major expects a PostgreSQL major version (15..99), got 14"),
    ("", "pg_major = 16.0", "[k8s.nodes.hosp-a] pg_major expects a PostgreSQL major version (15..99), got 16.0"),
])
def test_a_wrong_major_is_refused_with_where_and_what(tmp_path: Path, k8s: str, nodes: str, fault: str) -> None:
    with pytest.raises(DeploymentError) as info:
        load_deployment(_deployment(tmp_path, k8s=k8s, nodes=nodes))
    assert fault in info.value.faults, info.value.faults
