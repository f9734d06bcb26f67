"""infra/k8s: the committed manifests are valid, up to date, and follow the capture config.

Validation is offline: core resources against the Kubernetes OpenAPI schemas bundled by
kubernetes-validate, Strimzi resources against infra/k8s/crds (see its SOURCES.md).
"""

from __future__ import annotations

import copy
import shutil
import zipfile
from functools import cache
from pathlib import Path
from typing import Any

import pytest
import yaml

from connectors.capture.debezium import connector_properties
from infra.k8s.config import DEFAULT_DEPLOYMENT_FILE, DEFAULT_OUT_DIR, DeploymentError, load_deployment
from infra.k8s.generate import HEADER, render, render_file, stale
from infra.k8s.kafka import CONNECT_ONLY_KEYS, ENGINE_ONLY_KEYS, connect_settings
from infra.k8s.validate import validate_dir, validate_document
from infra.k8s.workloads import PLACEHOLDER
from streams.cli.main import main
from streams.core.model import CAPTURED_STORES, ROUTES, SIDES
from streams.runtime.credentials import kafka_principals

REPO = Path(__file__).resolve().parents[2]
DEPLOYMENT = load_deployment()
VERSION = DEPLOYMENT.config.kubernetes_version


@cache
def _documents() -> tuple[dict[str, Any], ...]:
    loader = getattr(yaml, "CSafeLoader", yaml.SafeLoader)
    return tuple(d for p in sorted(DEFAULT_OUT_DIR.glob("*.yaml"))
                 for d in yaml.load_all(p.read_text(encoding="utf-8"), Loader=loader) if d)


def documents() -> list[dict[str, Any]]:
    """Every resource of the committed manifests (copies: tests may change them)."""
    return copy.deepcopy(list(_documents()))


def of_kind(kind: str) -> list[dict[str, Any]]:
    return [d for d in documents() if d["kind"] == kind]


def test_every_committed_manifest_validates() -> None:
    files = sorted(DEFAULT_OUT_DIR.glob("*.yaml"))
    assert len(files) >= 10
    assert validate_dir(DEFAULT_OUT_DIR, VERSION) == {}
    kinds = {d["kind"] for d in documents()}
    assert {"Namespace", "ConfigMap", "Secret", "Kafka", "KafkaNodePool", "KafkaTopic", "KafkaUser", "KafkaConnect",
            "KafkaConnector", "Deployment", "Service", "PersistentVolumeClaim", "NetworkPolicy"} <= kinds
    assert all(p.read_text(encoding="utf-8").startswith(HEADER) for p in files)


def test_render_check_reports_nothing_stale() -> None:
    assert stale(DEFAULT_OUT_DIR, render_file()) == []
    assert main(["k8s", "render", "--check"]) == 0


def test_render_check_names_a_stale_and_a_missing_file(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["k8s", "render", "--out", str(tmp_path)]) == 0
    (tmp_path / "11-topics.yaml").write_text((tmp_path / "11-topics.yaml").read_text().replace("partitions: 1",
                                                                                                 "partitions: 2", 1))
    (tmp_path / "42-services.yaml").unlink()
    assert main(["k8s", "render", "--check", "--out", str(tmp_path)]) == 1
    err = capsys.readouterr().err
    assert "11-topics.yaml: differs" in err and "42-services.yaml: missing" in err


def _broken(kind: str, change: Any) -> list[str]:
    doc = copy.deepcopy(of_kind(kind)[0])
    change(doc)
    return validate_document(doc, VERSION)


def _drop_image(d: dict[str, Any]) -> None:
    del d["spec"]["template"]["spec"]["containers"][0]["image"]


def _misspell(path: list[str], old: str, new: str) -> Any:
    def change(d: dict[str, Any]) -> None:
        node = d
        for key in path:
            node = node[key]
        node[new] = node.pop(old)
    return change


@pytest.mark.parametrize(("kind", "change", "expected"), [
    ("Deployment", _drop_image, "no image"),
    ("Deployment", lambda d: d["spec"]["template"]["spec"]["containers"][0].pop("readinessProbe"), "readinessProbe"),
    ("Deployment", _misspell(["spec", "template", "spec"], "containers", "container"), "container"),
    ("KafkaConnector", _misspell(["spec"], "tasksMax", "taskMax"), "'taskMax' was unexpected"),
    ("KafkaConnect", _misspell(["spec"], "bootstrapServers", "bootstrapServer"), "bootstrapServer"),
    ("KafkaTopic", lambda d: d["spec"].update(partitions=0), "less than the minimum"),
    ("KafkaUser", lambda d: d["spec"]["authorization"]["acls"][0].update(operations=["Wrte"]), "'Wrte' is not one"),
    ("Kafka", lambda d: d["spec"]["kafka"]["listeners"][0].update(type="public"), "'public' is not one"),
    ("NetworkPolicy", _misspell(["spec"], "podSelector", "podSelectr"), "podSelectr"),
    ("KafkaConnector", lambda d: d["metadata"].update(name="platsync_local_meta"), "DNS-1123"),
])
def test_a_broken_manifest_is_rejected(kind: str, change: Any, expected: str) -> None:
    errors = _broken(kind, change)
    assert any(expected in e for e in errors), errors


def test_connector_configs_are_connector_properties_minus_the_documented_exclusions() -> None:
    connectors = {(d["metadata"]["labels"]["platsync.io/side"], d["spec"]["config"]["database.dbname"]): d
                  for d in of_kind("KafkaConnector")}
    assert set(connectors) == {(side, store) for side in SIDES for store in CAPTURED_STORES[side]}
    docs = (REPO / "docs" / "kubernetes.md").read_text(encoding="utf-8")
    assert all(f"`{key}`" in docs for key in ENGINE_ONLY_KEYS), "every excluded key is documented"
    topics = {d["spec"]["topicName"]: d["spec"]["partitions"] for d in of_kind("KafkaTopic")}
    for (side, store), doc in connectors.items():
        embedded = connector_properties(connect_settings(DEPLOYMENT, side), side, store, echo_filter=True)
        config = doc["spec"]["config"]
        assert doc["spec"]["class"] == embedded["connector.class"]
        assert set(config) == (set(embedded) - set(ENGINE_ONLY_KEYS)) | set(CONNECT_ONLY_KEYS)
        for key in set(embedded) - set(ENGINE_ONLY_KEYS) - {"transforms"}:
            assert config[key] == embedded[key], key
        assert config["transforms"].split(",") == [*filter(None, [embedded.get("transforms")]), "route"]
        assert config["database.password"].startswith("${env:"), "no password in the manifest"
        raw = config["transforms.route.replacement"]
        assert (config["transforms.route.regex"], topics[raw]) == (".*", 1), "one raw topic and partition per database"


def test_worker_replicas_never_exceed_the_source_partitions(tmp_path: Path) -> None:
    topics = {d["spec"]["topicName"]: d["spec"]["partitions"] for d in of_kind("KafkaTopic")}
    s = DEPLOYMENT.settings
    workers = {d["spec"]["template"]["spec"]["containers"][0]["command"][-1]: d["spec"]["replicas"]
               for d in of_kind("Deployment") if d["metadata"]["labels"]["platsync.io/component"] == "worker"}
    assert set(workers) == set(ROUTES)
    for route, (source, _) in ROUTES.items():
        assert 1 <= workers[route] <= min(topics[s.topic(source, store)] for store in CAPTURED_STORES[source])
    too_many = DEFAULT_DEPLOYMENT_FILE.read_text(encoding="utf-8").replace("local_to_remote = 1", "local_to_remote = 3")
    (tmp_path / "deployment.toml").write_text(too_many, encoding="utf-8")
    with pytest.raises(DeploymentError, match=r"local_to_remote: 3 replicas but its source topics have 1 partition"):
        render(load_deployment(tmp_path / "deployment.toml"))


def test_secrets_hold_placeholders_and_every_principal_has_a_kafka_user() -> None:
    for secret in of_kind("Secret"):
        assert set(secret["stringData"].values()) == {PLACEHOLDER}, secret["metadata"]["name"]
    users = {d["metadata"]["name"] for d in of_kind("KafkaUser")}
    assert {p.replace("_", "-") for p in kafka_principals(DEPLOYMENT.settings).values()} <= users
    assert {"platsync-connect-local", "platsync-connect-remote", "platsync-schema-registry"} <= users


def test_a_credential_in_the_deployment_settings_is_refused(tmp_path: Path) -> None:
    text = DEFAULT_DEPLOYMENT_FILE.read_text(encoding="utf-8") + 'pg_apply_password = "hunter2"\nbogus = 1\n'
    (tmp_path / "deployment.toml").write_text(text, encoding="utf-8")
    with pytest.raises(DeploymentError) as info:
        load_deployment(tmp_path / "deployment.toml")
    assert any("pg_apply_password is a credential" in f for f in info.value.faults)
    assert any("bogus" in f for f in info.value.faults)


@pytest.mark.skipif(shutil.which("javac") is None, reason="no JDK (javac) on this machine to compile the echo filter")
def test_the_echo_filter_jar_is_reproducible(tmp_path: Path) -> None:
    from infra.k8s.echo_jar import build_jar
    from streams.runtime.settings import load_settings

    settings = load_settings(env={}, data_dir=tmp_path)
    first, second = build_jar(settings, tmp_path / "a.jar"), build_jar(settings, tmp_path / "b.jar")
    assert first == second and len(first) == 128
    with zipfile.ZipFile(tmp_path / "a.jar") as jar:
        assert {"META-INF/MANIFEST.MF", "platsync/EchoFilter.class"} <= set(jar.namelist())
