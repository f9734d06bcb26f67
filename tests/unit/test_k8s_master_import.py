"""infra/k8s/master_import.py: the hospital's scheduled MHLW master import, a CronJob per hospital (issue 16).

On the committed manifests and the example topologies: the CronJob's schedule and time zone, ``Forbid``, its
deadlines and history, the command, the claim mounted read-only, the hospital's settings and database role, and
network policies that let its pod reach the hospital's PostgreSQL and DNS only, never Kafka.
"""

from __future__ import annotations

import copy
from pathlib import Path
from typing import Any

import pytest

from infra.k8s.config import DEFAULT_DEPLOYMENT_FILE, DeploymentError, load_deployment
from infra.k8s.generate import render
from infra.k8s.validate import validate_document
from streams.runtime.connections import dsn
from streams.runtime.settings import load_settings
from tests.unit.test_k8s_manifests import DEPLOYMENT, VERSION, of_kind
from tests.unit.test_k8s_network import NETWORKS, plan, resources

CFG = DEPLOYMENT.config.master_import


def pod(cronjob: dict[str, Any]) -> dict[str, Any]:
    return cronjob["spec"]["jobTemplate"]["spec"]["template"]


def container(cronjob: dict[str, Any]) -> dict[str, Any]:
    (only,) = pod(cronjob)["spec"]["containers"]
    return only


def env(cronjob: dict[str, Any]) -> dict[str, Any]:
    return {e["name"]: e.get("value", e.get("valueFrom")) for e in container(cronjob)["env"]}


def volume(cronjob: dict[str, Any], name: str) -> dict[str, Any]:
    return next(v for v in pod(cronjob)["spec"]["volumes"] if v["name"] == name)


def the_cronjob() -> dict[str, Any]:
    (cronjob,) = [d for d in of_kind("CronJob") if d["metadata"]["labels"]["platsync.io/component"] == "master-import"]
    return cronjob


def test_the_deployment_file_configures_a_daily_import_in_tokyo_time() -> None:
    assert (CFG.schedule, CFG.time_zone, CFG.file, CFG.claim) == (
        "0 3 * * *", "Asia/Tokyo", "/master/master.csv", "platsync-master-files")
    assert CFG.mount_path == "/master"


def test_the_hospital_has_one_cronjob_importing_its_file_on_schedule() -> None:
    cronjob = the_cronjob()
    assert cronjob["apiVersion"] == "batch/v1" and cronjob["metadata"]["name"] == "platsync-master-import"
    spec = cronjob["spec"]
    assert (spec["schedule"], spec["timeZone"], spec["concurrencyPolicy"]) == ("0 3 * * *", "Asia/Tokyo", "Forbid")
    assert spec["startingDeadlineSeconds"] == CFG.starting_deadline_seconds > 0
    assert (spec["successfulJobsHistoryLimit"], spec["failedJobsHistoryLimit"]) == (3, 3)
    job = spec["jobTemplate"]["spec"]
    assert (job["backoffLimit"], job["activeDeadlineSeconds"]) == (CFG.backoff_limit, CFG.active_deadline_seconds)
    assert pod(cronjob)["spec"]["restartPolicy"] == "Never"
    c = container(cronjob)
    assert c["command"] == ["platsync", "master", "import", "--node", "local", "/master/master.csv"]
    assert c["image"] == DEPLOYMENT.config.image
    assert c["resources"] == DEPLOYMENT.config.resources["master_import"].as_k8s()
    labels = pod(cronjob)["metadata"]["labels"]
    assert labels["platsync.io/side"] == "local" and labels["platsync.io/component"] == "master-import"
    assert validate_document(cronjob, VERSION) == []


def test_the_file_claim_is_mounted_read_only_and_rendered() -> None:
    cronjob = the_cronjob()
    mount = next(m for m in container(cronjob)["volumeMounts"] if m["name"] == "master-files")
    assert mount == {"name": "master-files", "mountPath": "/master", "readOnly": True}
    assert volume(cronjob, "master-files")["persistentVolumeClaim"] == {"claimName": CFG.claim, "readOnly": True}
    claims = {d["metadata"]["name"]: d for d in of_kind("PersistentVolumeClaim")}
    assert claims[CFG.claim]["spec"]["accessModes"] == ["ReadWriteMany"]
    # Everything else it may write is a scratch volume: the root file system is read-only, like every pod's.
    c = container(cronjob)
    assert c["securityContext"]["readOnlyRootFilesystem"] is True and c["securityContext"]["runAsNonRoot"] is True
    assert pod(cronjob)["spec"]["automountServiceAccountToken"] is False
    writable = {m["mountPath"] for m in c["volumeMounts"] if not m.get("readOnly")}
    assert writable == {"/var/lib/platsync", "/tmp"}


def test_it_connects_to_the_hospitals_database_as_the_app_role_and_has_no_kafka_credentials(tmp_path: Path) -> None:
    cronjob = the_cronjob()
    variables = env(cronjob)
    ref = variables["PLATSYNC_PG_APP_PASSWORD"]["secretKeyRef"]
    assert ref == {"name": "platsync-db-local", "key": "app-password"}
    secrets = {d["metadata"]["name"]: d for d in of_kind("Secret")}
    assert "app-password" in secrets["platsync-db-local"]["stringData"]
    # The cloud's app role serves its reference API only (infra/k8s/api.py); no master import there.
    assert not [d for d in of_kind("CronJob") if d["metadata"]["labels"].get("platsync.io/side") == "remote"
                and d["metadata"]["labels"]["platsync.io/component"] == "master-import"]
    assert not any(name.startswith("PLATSYNC_BROKER") for name in variables)
    # The settings are the hospital pods' own (the stamper of the hospital mounts the same ConfigMap).
    configmap = volume(cronjob, "settings")["configMap"]["name"]
    stamper = next(d for d in of_kind("Deployment") if d["metadata"]["name"] == "platsync-stamper-local")
    assert configmap == next(v for v in stamper["spec"]["template"]["spec"]["volumes"]
                             if v["name"] == "settings")["configMap"]["name"]
    (cm,) = [d for d in of_kind("ConfigMap") if d["metadata"]["name"] == configmap]
    path = tmp_path / "platsync.toml"
    path.write_text(cm["data"]["platsync.toml"], encoding="utf-8")
    settings = load_settings(path, env={"PLATSYNC_PG_APP_PASSWORD": "pw"})
    url = dsn(settings, "local", "meta", "app")
    assert f"platsync_app:pw@{DEPLOYMENT.settings.pg_host('local')}:5432/" in url


def _selects(selector: dict[str, Any], labels: dict[str, str]) -> bool:
    """Whether a podSelector selects a pod with ``labels`` (matchLabels and Exists expressions)."""
    if any(labels.get(k) != v for k, v in selector.get("matchLabels", {}).items()):
        return False
    return all(e["operator"] == "Exists" and e["key"] in labels for e in selector.get("matchExpressions", []))


def egress_of(policies: list[dict[str, Any]], labels: dict[str, str]) -> list[dict[str, Any]]:
    """Every egress rule that applies to a pod with ``labels`` (the union of the policies selecting it)."""
    return [rule for p in policies
            if "Egress" in p["spec"]["policyTypes"] and _selects(p["spec"]["podSelector"], labels)
            for rule in p["spec"].get("egress", [])]


def test_its_pod_may_reach_the_hospitals_postgresql_and_dns_only_never_kafka() -> None:
    labels = pod(the_cronjob())["metadata"]["labels"]
    assert "platsync.io/kafka-client" not in labels and "platsync.io/db-client" not in labels
    rules = egress_of(of_kind("NetworkPolicy"), labels)
    dns = [r for r in rules if {p["port"] for p in r["ports"]} == {53}]
    assert len(dns) == 1 and dns[0]["to"] == [{"namespaceSelector": {},
                                               "podSelector": {"matchLabels": {"k8s-app": "kube-dns"}}}]
    (database,) = [r for r in rules if r not in dns]
    assert [t["ipBlock"]["cidr"] for t in database["to"]] == list(DEPLOYMENT.config.local_db_cidrs)
    assert database["ports"] == [{"protocol": "TCP", "port": 5432}]
    # The cloud's databases and the Kafka cluster are out of reach (the default deny holds the rest).
    assert not any("podSelector" in t for r in rules if r is not dns[0] for t in r["to"])
    assert not set(DEPLOYMENT.config.remote_db_cidrs) & {t["ipBlock"]["cidr"] for t in database["to"]}


@pytest.mark.parametrize("name", NETWORKS)
def test_a_network_has_one_cronjob_per_hospital_on_its_node(name: str, tmp_path: Path) -> None:
    p = plan(name)
    hospitals = {h.id for h in p.topology.hospitals}
    cronjobs = {doc["metadata"]["name"]: (node, doc) for node, doc in resources(name, "CronJob")
                if doc["metadata"]["labels"]["platsync.io/component"] == "master-import"}
    assert set(cronjobs) == {f"platsync-master-import-{h}" for h in hospitals}
    claims = {doc["metadata"]["name"]: node for node, doc in resources(name, "PersistentVolumeClaim")}
    secrets = {doc["metadata"]["name"]: doc for _, doc in resources(name, "Secret")}
    configmaps = {doc["metadata"]["name"]: doc for _, doc in resources(name, "ConfigMap")}
    policies = [doc for _, doc in resources(name, "NetworkPolicy")]
    for hospital in hospitals:
        node, cronjob = cronjobs[f"platsync-master-import-{hospital}"]
        assert node == hospital and cronjob["metadata"]["labels"]["platsync.io/node"] == hospital
        assert container(cronjob)["command"][3:5] == ["--node", "local"]  # its own databases, in its link's settings
        claim = volume(cronjob, "master-files")["persistentVolumeClaim"]["claimName"]
        assert claims[claim] == hospital == claim.removeprefix(f"{CFG.claim}-")
        ref = env(cronjob)["PLATSYNC_PG_APP_PASSWORD"]["secretKeyRef"]
        assert ref["name"] == f"platsync-db-{hospital}" and "app-password" in secrets[ref["name"]]["stringData"]
        cm = configmaps[volume(cronjob, "settings")["configMap"]["name"]]
        path = tmp_path / f"{hospital}.toml"
        path.write_text(cm["data"]["platsync.toml"], encoding="utf-8")
        settings = load_settings(path, env={"PLATSYNC_PG_APP_PASSWORD": "pw"})
        assert f"@{DEPLOYMENT.config.nodes[hospital].pg_host}:" in dsn(settings, "local", "meta", "app")
        labels = pod(cronjob)["metadata"]["labels"]
        (database,) = [r for r in egress_of(policies, labels) if {p["port"] for p in r["ports"]} != {53}]
        assert [t["ipBlock"]["cidr"] for t in database["to"]] == list(DEPLOYMENT.config.nodes[hospital].db_cidrs)


def _deployment_with(tmp_path: Path, table: str) -> Path:
    text = DEFAULT_DEPLOYMENT_FILE.read_text(encoding="utf-8")
    start = text.index("[k8s.master_import]")
    end = text.index("\n\n", start)
    path = tmp_path / "deployment.toml"
    path.write_text(text[:start] + table + text[end:], encoding="utf-8")
    return path


def test_strict_and_an_existing_claim_are_options(tmp_path: Path) -> None:
    path = _deployment_with(tmp_path, '[k8s.master_import]\nstrict = true\ncreate_claim = false\n'
                                      'file = "/srv/mhlw/master.csv"\nclaim = "mhlw-drop"\nschedule = "@daily"\n')
    files = render(load_deployment(path))
    assert "platsync-master-files" not in files["40-volumes.yaml"] and "mhlw-drop" not in files["40-volumes.yaml"]
    assert "mhlw-drop" in files["43-cronjobs.yaml"]
    assert "- --strict\n            - /srv/mhlw/master.csv\n" in files["43-cronjobs.yaml"]
    assert "mountPath: /srv/mhlw\n" in files["43-cronjobs.yaml"]


def test_a_bad_master_import_table_is_refused_listing_every_fault(tmp_path: Path) -> None:
    path = _deployment_with(tmp_path, '[k8s.master_import]\nschedule = "daily at 3"\ntime_zone = "Tokyo time"\n'
                                      'file = "master.csv"\nclaim = "Master_Files"\nbackoff_limit = "2"\nbogus = 1\n')
    with pytest.raises(DeploymentError) as info:
        load_deployment(path)
    faults = "\n".join(info.value.faults)
    for expected in ("schedule 'daily at 3' is not a cron schedule", "time_zone 'Tokyo time' is not a time zone",
                     "file 'master.csv' must be an absolute path", "claim 'Master_Files' is not a DNS label",
                     "backoff_limit expects int", "unknown key 'bogus'"):
        assert f"[k8s.master_import] {expected}" in faults
    hidden = _deployment_with(tmp_path, '[k8s.master_import]\nfile = "/etc/platsync/master.csv"\n')
    with pytest.raises(DeploymentError, match="its directory would hide one the pod needs"):
        load_deployment(hidden)


def test_a_cronjob_without_resources_is_rejected_but_needs_no_probes() -> None:
    cronjob = copy.deepcopy(the_cronjob())
    assert "livenessProbe" not in container(cronjob) and validate_document(cronjob, VERSION) == []
    del container(cronjob)["resources"]["limits"]
    del container(cronjob)["image"]
    errors = validate_document(cronjob, VERSION)
    assert any("resources.limits lacks cpu, memory" in e for e in errors), errors
    assert any("no image" in e for e in errors), errors
    pod(cronjob)["metadata"]["labels"]["platsync.io/side"] = "x" * 64
    assert any("spec.jobTemplate.spec.template.metadata.labels.platsync.io/side" in e
               for e in validate_document(cronjob, VERSION))
