"""The nightly backup of each node's stores: a CronJob per captured endpoint (docs/backups.md, docs/kubernetes.md).

Each endpoint with captured stores (the default deployment's ``local`` and ``remote``; in a network each hospital
and each hospital's stores in the cloud, ``remote.<hospital>``; a regional server's replicas are not backed up)
gets, like the master import (infra/k8s/master_import.py):

- a ``batch/v1`` CronJob ``platsync-backup-<endpoint>`` running the engine image's ``platsync backup create
  --node <side> [--name <endpoint>] [--no-ship]`` on the setting ``backup_schedule`` (UTC: ``timeZone:
  Etc/UTC``), or the node's ``[k8s.backup.nodes.<id>] schedule``: ``concurrencyPolicy: Forbid``, a starting
  deadline, history limits, a back-off limit and an active deadline. ``<side>`` is the endpoint's name in the
  link settings its pod reads (``local`` or ``remote``), as ``--node`` accepts outside an embedded network; in a
  network ``--name <endpoint>`` names the backups after the node (``hosp-a-<time>``, ``remote.hosp-a-<time>``)
  as the embedded network does, where the side would call every hospital's ``local``. The pod
  connects as the admin ``pg_user`` (``PLATSYNC_PG_PASSWORD`` from the node's Secret ``platsync-db-admin-<node>``,
  rendered here) and, where the node's Keycloak database is a configured DSN without a password, with
  ``PGPASSWORD`` from its Keycloak Secret like the capture. It needs no Kafka;
- its ``backup_dir``: the claim ``<claim>-<endpoint>`` (rendered in ``40-volumes.yaml`` unless ``create_claim =
  false``), mounted at :data:`BACKUP_DIR` and passed as ``PLATSYNC_BACKUP_DIR``;
- its ``backup_parent_dir``: for a hospital the existing claim ``parent_claim`` (the cloud's storage: each
  hospital's backups go into ``<endpoint>/`` of it, the directory of the node they are named after), mounted at
  :data:`PARENT_DIR`; none configured (and the cloud root, which has no parent, unless its node table names one):
  ``--no-ship``;
- a NetworkPolicy per node letting the jobs reach only the node's PostgreSQL and Keycloak's database
  (``db_cidrs`` on ``pg_port`` and the port of ``keycloak_db``); DNS comes with the namespace-wide policies.
"""

from __future__ import annotations

from typing import Any

from psycopg.conninfo import conninfo_to_dict

from infra.k8s.backup_config import cron_fault
from infra.k8s.config import DeploymentError
from infra.k8s.netpol import network_policy
from infra.k8s.scope import CONFIG_PATH, DATA_DIR, Scope, res
from infra.k8s.workloads import PLACEHOLDER, object_meta, secret_env
from streams.topology.plan import Endpoint

COMPONENT = "backup"
#: Where the job mounts the node's own backups (``backup_dir``) and the parent's storage (``backup_parent_dir``).
BACKUP_DIR = "/var/backups/platsync"
PARENT_DIR = "/var/backups/platsync-parent"
TIME_ZONE = "Etc/UTC"  # backup_schedule is UTC (streams/runtime/settings.py)
ADMIN_KEY = "admin-password"


def endpoints(scope: Scope, nodes: frozenset[str]) -> list[Endpoint]:
    """The endpoints backed up on ``nodes``: those with captured stores (what ``backup create`` dumps)."""
    return scope.captures(nodes)


def name(endpoint: Endpoint) -> str:
    """The CronJob's name: ``platsync-backup-<endpoint>``."""
    return f"platsync-{COMPONENT}-{res(endpoint.id)}"


def claim(scope: Scope, endpoint: Endpoint) -> str:
    """The claim holding the endpoint's own backups: ``<claim>-<endpoint>``."""
    return f"{scope.dep.config.backup.claim}-{res(endpoint.id)}"


def admin_secret(node: str) -> str:
    """The Secret with the admin's password on a node's PostgreSQL (``admin-password``)."""
    return f"platsync-db-admin-{res(node)}"


def parent_claim(scope: Scope, endpoint: Endpoint) -> str:
    """The claim of the parent's storage the endpoint ships to; "" for none (``--no-ship``)."""
    return scope.dep.config.backup.parent_of(endpoint.node, has_parent=endpoint.role == "local")


def schedule(scope: Scope, endpoint: Endpoint) -> str:
    """When the endpoint's job runs (UTC): its node's override, else ``backup_schedule``."""
    when = scope.dep.config.backup.schedule(endpoint.node, scope.dep.settings.backup_schedule)
    fault = cron_fault(when)
    if fault:
        raise DeploymentError(str(scope.dep.source), [f"backup of node {endpoint.node}: {fault}"])
    return when


def backup_node(endpoint: Endpoint) -> str:
    """The node the endpoint's backups are named after: its id (``hosp-a``, ``remote.hosp-a``; the default
    deployment's ``local`` and ``remote``), the name the embedded stack gives the same node's backups."""
    return endpoint.id


def command(scope: Scope, endpoint: Endpoint) -> list[str]:
    """``platsync backup create --node <side> [--name <endpoint id>] [--no-ship]``: ``--name`` where the side is
    not the endpoint's id (a network), so that the backups say which node they are of."""
    side, node = scope.side(endpoint.id), backup_node(endpoint)
    name = [] if node == side else ["--name", node]
    ship = [] if parent_claim(scope, endpoint) else ["--no-ship"]
    return ["platsync", "backup", "create", "--node", side, *name, *ship]


def _keycloak_db(scope: Scope, endpoint: Endpoint) -> str:
    """The configured DSN of the endpoint's Keycloak database ("" when it is a store of the node's PostgreSQL)."""
    settings = scope.node_settings(endpoint.node, endpoint.tenant)
    return settings.node(scope.side(endpoint.id)).keycloak_db if "keycloak" in endpoint.stores else ""


def _labels(scope: Scope, endpoint: Endpoint) -> dict[str, str]:
    labels = {"app.kubernetes.io/name": name(endpoint), "app.kubernetes.io/part-of": "platsync",
              **scope.labels(endpoint.node, endpoint.id, endpoint.tenant), "platsync.io/component": COMPONENT}
    return dict(sorted(labels.items()))


def _pod_spec(scope: Scope, endpoint: Endpoint) -> dict[str, Any]:
    dep, parent = scope.dep, parent_claim(scope, endpoint)
    env = [{"name": "PLATSYNC_CONFIG", "value": CONFIG_PATH}, {"name": "PLATSYNC_BACKUP_DIR", "value": BACKUP_DIR},
           *([{"name": "PLATSYNC_BACKUP_PARENT_DIR", "value": PARENT_DIR}] if parent else []),
           secret_env("PLATSYNC_PG_PASSWORD", admin_secret(endpoint.node), ADMIN_KEY)]
    if _keycloak_db(scope, endpoint):  # its DSN carries no password: libpq takes it from PGPASSWORD
        env.append(secret_env("PGPASSWORD", scope.keycloak_secret(endpoint.id), "db-password"))
    mounts = [{"name": "settings", "mountPath": "/etc/platsync", "readOnly": True},
              {"name": "data", "mountPath": DATA_DIR}, {"name": "tmp", "mountPath": "/tmp"},
              {"name": "backups", "mountPath": BACKUP_DIR},
              *([{"name": "parent-backups", "mountPath": PARENT_DIR}] if parent else [])]
    container = {
        "name": COMPONENT, "image": dep.config.image, "imagePullPolicy": dep.config.image_pull_policy,
        "command": command(scope, endpoint), "env": env,
        "resources": dep.config.resources["backup"].as_k8s(),
        "securityContext": {"allowPrivilegeEscalation": False, "readOnlyRootFilesystem": True,
                            "runAsNonRoot": True, "capabilities": {"drop": ["ALL"]}},
        "volumeMounts": mounts,
    }
    return {
        "restartPolicy": "Never",  # a failed run is a new pod (backoffLimit), its log kept for the history
        "automountServiceAccountToken": False,
        "securityContext": {"runAsNonRoot": True, "runAsUser": 10001, "fsGroup": 10001,
                            "seccompProfile": {"type": "RuntimeDefault"}},
        "containers": [container],
        "volumes": [{"name": "settings", "configMap": {"name": scope.settings_configmap(endpoint.node,
                                                                                         endpoint.tenant)}},
                    {"name": "data", "emptyDir": {}}, {"name": "tmp", "emptyDir": {}},
                    {"name": "backups", "persistentVolumeClaim": {"claimName": claim(scope, endpoint)}},
                    *([{"name": "parent-backups", "persistentVolumeClaim": {"claimName": parent}}] if parent else [])],
    }


def cronjobs(scope: Scope, nodes: frozenset[str]) -> list[dict[str, Any]]:
    """One CronJob per endpoint with captured stores on ``nodes``, backing it up on schedule."""
    cfg, out = scope.dep.config.backup, []
    for endpoint in endpoints(scope, nodes):
        labels = _labels(scope, endpoint)
        job = {"backoffLimit": cfg.backoff_limit, "activeDeadlineSeconds": cfg.active_deadline_seconds,
               "template": {"metadata": {"labels": dict(labels)}, "spec": _pod_spec(scope, endpoint)}}
        out.append({"apiVersion": "batch/v1", "kind": "CronJob",
                    "metadata": object_meta(scope.dep, name(endpoint), labels),
                    "spec": {"schedule": schedule(scope, endpoint), "timeZone": TIME_ZONE,
                             "concurrencyPolicy": "Forbid",
                             "startingDeadlineSeconds": cfg.starting_deadline_seconds,
                             "successfulJobsHistoryLimit": cfg.successful_jobs_history_limit,
                             "failedJobsHistoryLimit": cfg.failed_jobs_history_limit,
                             "jobTemplate": {"metadata": {"labels": dict(labels)}, "spec": job}}})
    return out


def volumes(scope: Scope, nodes: frozenset[str]) -> list[dict[str, Any]]:
    """The claims of the endpoints' own backups (none when ``create_claim`` is false: they exist). The parent's
    storage is never rendered: its copies must outlive these manifests."""
    cfg = scope.dep.config.backup
    if not cfg.create_claim:
        return []
    return [{"apiVersion": "v1", "kind": "PersistentVolumeClaim",
             "metadata": object_meta(scope.dep, claim(scope, e),
                                     None if scope.is_default else scope.labels(e.node, e.id, e.tenant)),
             "spec": {"accessModes": list(cfg.access_modes), "resources": {"requests": {"storage": cfg.storage}}}}
            for e in endpoints(scope, nodes)]


def _nodes_backed_up(scope: Scope, nodes: frozenset[str]) -> list[str]:
    return list(dict.fromkeys(e.node for e in endpoints(scope, nodes)))


def secrets(scope: Scope, nodes: frozenset[str]) -> list[dict[str, Any]]:
    """Per node backed up, the admin's password on its PostgreSQL (the role provisioning uses): a placeholder."""
    note = {"platsync.io/fill-before-use": "true"}
    return [{"apiVersion": "v1", "kind": "Secret", "type": "Opaque",
             "metadata": {**object_meta(scope.dep, admin_secret(node)), "annotations": note},
             "stringData": {ADMIN_KEY: PLACEHOLDER}} for node in _nodes_backed_up(scope, nodes)]


def database_ports(scope: Scope, node: str) -> list[int]:
    """The ports a node's backups connect to: its PostgreSQL's and its Keycloak database's."""
    ports = [scope.node_config(node).pg_port]
    for endpoint in endpoints(scope, frozenset({node})):
        dsn = _keycloak_db(scope, endpoint)
        if dsn:
            ports.append(int(conninfo_to_dict(dsn).get("port") or 5432))
    return sorted(set(ports))


def network_policies(scope: Scope, nodes: frozenset[str]) -> list[dict[str, Any]]:
    """Each node's backup jobs may reach its PostgreSQL and Keycloak's database and nothing else (DNS aside)."""
    out = []
    for node in _nodes_backed_up(scope, nodes):
        selector = {"matchLabels": {**scope.node_label(node), "platsync.io/component": COMPONENT}}
        ports = [{"protocol": "TCP", "port": p} for p in database_ports(scope, node)]
        out.append(network_policy(scope.dep, f"{res(node)}-{COMPONENT}-egress", selector,
                                  egress=[{"to": [{"ipBlock": {"cidr": c}} for c in scope.node_config(node).db_cidrs],
                                           "ports": ports}]))
    return out
