"""infra/k8s/backup_job.py: the nightly backup of each node's stores, a CronJob per captured endpoint (issue 18).

On the committed manifests and the example topologies: the schedule (``backup_schedule``, UTC), ``Forbid``, the
deadlines and history, the command the CLI accepts (in a network ``--name <endpoint>``: the backups carry the
node), ``backup_dir`` on the endpoint's claim and ``backup_parent_dir`` on the parent's (``--no-ship`` without one),
the admin password from a Secret and never on the command line, settings that make the dump connect to the node's
databases as the admin, no Kafka, and network policies that let the pod reach its node's PostgreSQL (and Keycloak's
database) and DNS only.
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import pytest
from psycopg.conninfo import conninfo_to_dict

from infra.k8s.backup_job import BACKUP_DIR, PARENT_DIR
from infra.k8s.config import DEFAULT_DEPLOYMENT_FILE, DeploymentError, load_deployment
from infra.k8s.generate import render
from infra.k8s.scope import res
from infra.k8s.validate import validate_document
from streams.cli.backup import backup_node
from streams.cli.main import build_parser
from streams.cli.network import resolve_node
from streams.ops.backup import dump_sources
from streams.runtime.settings import load_settings
from tests.unit.test_k8s_manifests import DEPLOYMENT, VERSION, of_kind
from tests.unit.test_k8s_master_import import container, egress_of, env, pod, volume
from tests.unit.test_k8s_network import NETWORKS, plan, resources

CFG = DEPLOYMENT.config.backup


def is_backup(doc: dict[str, Any]) -> bool:
    return doc["metadata"].get("labels", {}).get("platsync.io/component") == "backup"


def backups() -> dict[str, dict[str, Any]]:
    """The committed backup CronJobs by side."""
    return {d["metadata"]["labels"]["platsync.io/side"]: d for d in of_kind("CronJob") if is_backup(d)}


def mounts(cronjob: dict[str, Any]) -> dict[str, str]:
    return {m["name"]: m["mountPath"] for m in container(cronjob)["volumeMounts"]}


def pod_settings(tmp_path: Path, cronjob: dict[str, Any], configmaps: dict[str, dict[str, Any]]) -> Any:
    """The settings the job's ``platsync`` reads: its ConfigMap's file plus its environment (Secrets filled)."""
    cm = configmaps[volume(cronjob, "settings")["configMap"]["name"]]
    path = tmp_path / f"{cronjob['metadata']['name']}.toml"
    path.write_text(cm["data"]["platsync.toml"], encoding="utf-8")
    variables = {k: v if isinstance(v, str) else f"secret-{v['secretKeyRef']['name']}-{v['secretKeyRef']['key']}"
                 for k, v in env(cronjob).items()}
    assert variables.pop("PLATSYNC_CONFIG") == "/etc/platsync/platsync.toml"
    return load_settings(path, env=variables)


def test_each_side_has_a_nightly_backup_cronjob_on_the_backup_schedule() -> None:
    jobs = backups()
    assert set(jobs) == {"local", "remote"}
    assert DEPLOYMENT.settings.backup_schedule == "30 17 * * *"  # 02:30 JST, in UTC
    for side, cronjob in jobs.items():
        assert cronjob["apiVersion"] == "batch/v1" and cronjob["metadata"]["name"] == f"platsync-backup-{side}"
        spec = cronjob["spec"]
        assert (spec["schedule"], spec["timeZone"], spec["concurrencyPolicy"]) == ("30 17 * * *", "Etc/UTC", "Forbid")
        assert spec["startingDeadlineSeconds"] == CFG.starting_deadline_seconds > 0
        assert (spec["successfulJobsHistoryLimit"], spec["failedJobsHistoryLimit"]) == (3, 3)
        job = spec["jobTemplate"]["spec"]
        assert (job["backoffLimit"], job["activeDeadlineSeconds"]) == (CFG.backoff_limit, CFG.active_deadline_seconds)
        assert pod(cronjob)["spec"]["restartPolicy"] == "Never"
        c = container(cronjob)
        assert c["image"] == DEPLOYMENT.config.image
        assert c["resources"] == DEPLOYMENT.config.resources["backup"].as_k8s()
        assert validate_document(cronjob, VERSION) == []


def test_the_command_backs_up_the_side_and_ships_only_the_hospitals_backups() -> None:
    jobs = backups()
    assert container(jobs["local"])["command"] == ["platsync", "backup", "create", "--node", "local"]
    # The cloud is the root: no parent to ship to.
    assert container(jobs["remote"])["command"] == ["platsync", "backup", "create", "--node", "remote", "--no-ship"]
    for cronjob in jobs.values():  # the endpoint ids are the sides: no --name, the embedded stack's names
        args = build_parser().parse_args(container(cronjob)["command"][1:])
        assert (args.backup_action, args.side, args.name) == (
            "create", cronjob["metadata"]["labels"]["platsync.io/side"], None)


def test_backup_dir_is_the_endpoints_claim_and_backup_parent_dir_the_parents() -> None:
    jobs = backups()
    claims = {d["metadata"]["name"]: d for d in of_kind("PersistentVolumeClaim")}
    for side, cronjob in jobs.items():
        claim = volume(cronjob, "backups")["persistentVolumeClaim"]["claimName"]
        assert claim == f"{CFG.claim}-{side}" and mounts(cronjob)["backups"] == BACKUP_DIR
        assert env(cronjob)["PLATSYNC_BACKUP_DIR"] == BACKUP_DIR
        assert claims[claim]["spec"] == {"accessModes": ["ReadWriteOnce"],
                                         "resources": {"requests": {"storage": CFG.storage}}}
        c = container(cronjob)
        assert c["securityContext"]["readOnlyRootFilesystem"] is True and c["securityContext"]["runAsNonRoot"] is True
        assert pod(cronjob)["spec"]["automountServiceAccountToken"] is False
    # The hospital's copies go to the parent's storage: an existing claim, never rendered here.
    assert CFG.parent_claim == "platsync-parent-backups" and CFG.parent_claim not in claims
    local = jobs["local"]
    assert volume(local, "parent-backups")["persistentVolumeClaim"] == {"claimName": CFG.parent_claim}
    assert mounts(local)["parent-backups"] == PARENT_DIR == env(local)["PLATSYNC_BACKUP_PARENT_DIR"]
    writable = {m["mountPath"] for m in container(local)["volumeMounts"] if not m.get("readOnly")}
    assert writable == {"/var/lib/platsync", "/tmp", BACKUP_DIR, PARENT_DIR}
    remote = jobs["remote"]
    assert "parent-backups" not in mounts(remote) and "PLATSYNC_BACKUP_PARENT_DIR" not in env(remote)


def test_it_dumps_the_sides_databases_as_the_admin_the_password_never_on_argv(tmp_path: Path) -> None:
    jobs = backups()
    secrets = {d["metadata"]["name"]: d for d in of_kind("Secret")}
    configmaps = {d["metadata"]["name"]: d for d in of_kind("ConfigMap")}
    for side, cronjob in jobs.items():
        ref = env(cronjob)["PLATSYNC_PG_PASSWORD"]["secretKeyRef"]
        assert ref == {"name": f"platsync-db-admin-{side}", "key": "admin-password"}
        assert secrets[ref["name"]]["stringData"] == {"admin-password": "REPLACE-ME"}
        # Keycloak's configured database DSN has no password: libpq takes it from PGPASSWORD, like the capture's.
        assert env(cronjob)["PGPASSWORD"]["secretKeyRef"] == {"name": f"platsync-keycloak-{side}", "key": "db-password"}
        assert not any("password" in a.lower() or "secret" in a.lower() for a in container(cronjob)["command"])
        settings = pod_settings(tmp_path, cronjob, configmaps)
        assert settings.backup_dir == BACKUP_DIR
        link, resolved = resolve_node(settings, side)
        assert resolved == side
        sources = {s.store: s for s in dump_sources(link, resolved)}
        assert set(sources) == {*DEPLOYMENT.settings.captured_stores(side), "keycloak"}
        for store in set(sources) - {"keycloak"}:
            assert conninfo_to_dict(sources[store].conninfo) == {
                "host": DEPLOYMENT.settings.pg_host(side), "port": "5432", "dbname": store, "user": settings.pg_user,
                "password": f"secret-platsync-db-admin-{side}-admin-password"}
        assert sources["keycloak"].conninfo == DEPLOYMENT.settings.node(side).keycloak_db


def test_it_has_no_kafka_and_may_reach_its_sides_databases_and_dns_only() -> None:
    policies = of_kind("NetworkPolicy")
    cidrs = {"local": DEPLOYMENT.config.local_db_cidrs, "remote": DEPLOYMENT.config.remote_db_cidrs}
    for side, cronjob in backups().items():
        assert not any(name.startswith("PLATSYNC_BROKER") for name in env(cronjob))
        assert "kafka-ca" not in mounts(cronjob)
        labels = pod(cronjob)["metadata"]["labels"]
        assert "platsync.io/kafka-client" not in labels and "platsync.io/db-client" not in labels
        rules = egress_of(policies, labels)
        dns = [r for r in rules if {p["port"] for p in r["ports"]} == {53}]
        assert len(dns) == 1
        (database,) = [r for r in rules if r not in dns]
        assert [t["ipBlock"]["cidr"] for t in database["to"]] == list(cidrs[side])
        assert database["ports"] == [{"protocol": "TCP", "port": 5432}]  # PostgreSQL; no Keycloak HTTP, no Kafka
        assert not any("podSelector" in t for r in rules if r is not dns[0] for t in r["to"])


@pytest.mark.parametrize("name", NETWORKS)
def test_a_network_backs_up_each_captured_endpoint_on_its_node(name: str, tmp_path: Path) -> None:
    p = plan(name)
    cronjobs = {doc["metadata"]["name"]: (node, doc) for node, doc in resources(name, "CronJob") if is_backup(doc)}
    captured = [e for e in p.endpoints if e.captured]
    assert set(cronjobs) == {f"platsync-backup-{res(e.id)}" for e in captured}
    regional = {n.id for n in p.topology.nodes if n.kind == "common" and n.parent is not None}
    assert not {node for node, _ in cronjobs.values()} & regional  # read-only replicas: nothing captured
    claims = {doc["metadata"]["name"]: node for node, doc in resources(name, "PersistentVolumeClaim")}
    secrets = {doc["metadata"]["name"]: node for node, doc in resources(name, "Secret")}
    configmaps = {doc["metadata"]["name"]: doc for _, doc in resources(name, "ConfigMap")}
    policies = [doc for _, doc in resources(name, "NetworkPolicy")]
    for e in captured:
        node, cronjob = cronjobs[f"platsync-backup-{res(e.id)}"]
        assert node == e.node and cronjob["metadata"]["labels"]["platsync.io/node"] == e.node
        hospital = e.role == "local"
        # --node: the side in the link's settings; --name: the node the backups are named after (not `local`).
        command = container(cronjob)["command"]
        assert command == ["platsync", "backup", "create", "--node", e.role, "--name", e.id,
                           *([] if hospital else ["--no-ship"])]
        args = build_parser().parse_args(command[1:])
        assert (args.side, args.name) == (e.role, e.id)
        assert claims[volume(cronjob, "backups")["persistentVolumeClaim"]["claimName"]] == e.node
        admin = env(cronjob)["PLATSYNC_PG_PASSWORD"]["secretKeyRef"]["name"]
        assert admin == f"platsync-db-admin-{res(e.node)}" and secrets[admin] == e.node
        if hospital:  # each hospital's backups in the directory of the node they are named after, <parent>/<id>/
            assert env(cronjob)["PLATSYNC_BACKUP_PARENT_DIR"] == PARENT_DIR
        settings = pod_settings(tmp_path, cronjob, configmaps)
        # The name is one this pod's CLI accepts (no node of its two-party settings) and a backup's node name.
        assert backup_node(settings, e.role, e.id) == e.id
        link, side = resolve_node(settings, e.role)
        host = DEPLOYMENT.config.nodes[e.node].pg_host if hospital else DEPLOYMENT.settings.pg_host("remote")
        sources = dump_sources(link, side)
        assert {s.store for s in sources} == set(e.captured) | {"keycloak"}
        for source in sources:  # a hospital's Keycloak: its configured database; the cloud's: keycloak_<h> there
            assert source.database == e.database(source.store), (e.id, source.store)
            if source.store != "keycloak" or not hospital:
                params = conninfo_to_dict(source.conninfo)
                assert (params["host"], params["user"], params["password"]) == (
                    host, "platsync", f"secret-{admin}-admin-password")
        labels = pod(cronjob)["metadata"]["labels"]
        (database,) = [r for r in egress_of(policies, labels) if {q["port"] for q in r["ports"]} != {53}]
        expected = DEPLOYMENT.config.nodes[e.node].db_cidrs if hospital else DEPLOYMENT.config.remote_db_cidrs
        assert [t["ipBlock"]["cidr"] for t in database["to"]] == list(expected)


def _deployment_with(tmp_path: Path, table: str, settings: str = "") -> Path:
    text = DEFAULT_DEPLOYMENT_FILE.read_text(encoding="utf-8")
    start = text.index("[k8s.backup]")
    end = text.index("\n\n", start)
    path = tmp_path / "deployment.toml"
    path.write_text(text[:start] + table + text[end:] + settings, encoding="utf-8")
    return path


def _backup_jobs(files: dict[str, str]) -> str:
    return files["43-cronjobs.yaml"].split("name: platsync-backup-", 1)[1]


def test_without_parent_storage_every_job_runs_with_no_ship(tmp_path: Path) -> None:
    files = render(load_deployment(_deployment_with(tmp_path, "[k8s.backup]\ncreate_claim = false\n")))
    jobs = _backup_jobs(files)
    assert jobs.count("- --no-ship\n") == 2 and "parent" not in jobs
    assert "platsync-backups-" not in files["40-volumes.yaml"]  # existing claims: not rendered
    assert "claimName: platsync-backups-local\n" in jobs


def test_a_node_may_override_the_schedule_and_the_parent_storage(tmp_path: Path) -> None:
    table = ('[k8s.backup]\nparent_claim = "cloud-backups"\n\n[k8s.backup.nodes.local]\nschedule = "0 18 * * *"\n'
             'parent_claim = ""\n\n[k8s.backup.nodes.remote]\nparent_claim = "offsite-backups"\n')
    files = render(load_deployment(_deployment_with(tmp_path, table, 'backup_schedule = "15 16 * * *"\n')))
    local, remote = _backup_jobs(files).split("name: platsync-backup-remote", 1)
    assert "schedule: 0 18 * * *\n" in local and "- --no-ship\n" in local and "cloud-backups" not in local
    assert "schedule: 15 16 * * *\n" in remote and "--no-ship" not in remote
    assert "claimName: offsite-backups\n" in remote


def test_the_keycloak_databases_port_is_opened_too(tmp_path: Path) -> None:
    text = DEFAULT_DEPLOYMENT_FILE.read_text(encoding="utf-8")
    path = tmp_path / "deployment.toml"
    path.write_text(text.replace("host=keycloak-db.hospital.example.internal port=5432",
                                 "host=keycloak-db.hospital.example.internal port=6432"), encoding="utf-8")
    policies = render(load_deployment(path))["50-network-policies.yaml"]
    local = policies.split("name: local-backup-egress", 1)[1].split("---", 1)[0]
    assert re.findall(r"port: (\d+)", local) == ["5432", "6432"]


def test_a_bad_backup_table_or_schedule_is_refused(tmp_path: Path) -> None:
    path = _deployment_with(tmp_path, '[k8s.backup]\nclaim = "Backups"\nstorage = "lots"\nbackoff_limit = -1\n'
                                      'parent_claim = 3\nbogus = 1\n\n[k8s.backup.nodes.local]\nschedule = "nightly"\n'
                                      'when = "now"\n')
    with pytest.raises(DeploymentError) as info:
        load_deployment(path)
    faults = "\n".join(info.value.faults)
    for expected in ("[k8s.backup] claim 'Backups' is not a DNS label", "[k8s.backup] storage 'lots' is not a quantity",
                     "[k8s.backup] backoff_limit must be >= 0", "[k8s.backup] parent_claim expects str",
                     "[k8s.backup] unknown key 'bogus'",
                     "[k8s.backup.nodes.local] schedule 'nightly' is not a cron schedule",
                     "[k8s.backup.nodes.local] unknown key 'when'"):
        assert expected in faults, faults
    bad_setting = _deployment_with(tmp_path, "[k8s.backup]\n", 'backup_schedule = "at 2:30"\n')
    with pytest.raises(DeploymentError, match="backup of node local: schedule 'at 2:30' is not a cron schedule"):
        render(load_deployment(bad_setting))
