"""The scheduled import of the MHLW medical institution master: a CronJob per hospital (docs/master.md).

Each hospital endpoint of the plan (the default deployment's ``local``; each hospital of a topology) gets:

- a ``batch/v1`` CronJob ``platsync-master-import`` (``-<hospital>`` in a network) running the engine image's
  ``platsync master import --node local <file>`` on ``[k8s.master_import]``'s schedule, in its time zone:
  ``concurrencyPolicy: Forbid`` (the command itself also refuses a second run while one holds the lock), a
  starting deadline, history limits, a back-off limit and an active deadline. The pod reads its link's settings
  (the ConfigMap its hospital's other pods mount), where the hospital's own databases are the node ``local``,
  and connects as the hospital's ``platsync_app`` role, its password from the hospital's database Secret
  (``app-password``, :func:`infra.k8s.workloads.secrets`). It needs no Kafka: it only writes the table, and the
  capture carries the changes;
- the PersistentVolumeClaim the MHLW file is dropped into (unless ``create_claim = false``), mounted read-only
  at the file's directory;
- a NetworkPolicy letting the job reach only its hospital's PostgreSQL (``db_cidrs`` on the node's ``pg_port``);
  DNS comes with the namespace-wide policies and everything else stays denied by the default deny.
"""

from __future__ import annotations

from typing import Any

from infra.k8s.config import MasterImportConfig
from infra.k8s.netpol import network_policy
from infra.k8s.scope import CONFIG_PATH, DATA_DIR, Scope, res
from infra.k8s.workloads import object_meta, secret_env
from streams.runtime.credentials import APP
from streams.topology.plan import Endpoint

COMPONENT = "master-import"
#: The role the import writes the master with (streams/ops/access_policy.py: the app role's master grants).
ROLE = APP
#: The node of the hospital's own databases in its pods' settings (its link's ``[nodes.local]``).
SETTINGS_NODE = "local"


def hospitals(scope: Scope, nodes: frozenset[str]) -> list[Endpoint]:
    """The hospital endpoints on ``nodes``: each holds a full master and imports it."""
    return [e for e in scope.plan.endpoints if e.role == "local" and e.node in nodes]


def name(scope: Scope, endpoint: Endpoint) -> str:
    """The CronJob's name: ``platsync-master-import``, in a network ``platsync-master-import-<hospital>``."""
    return f"platsync-{COMPONENT}" if scope.is_default else f"platsync-{COMPONENT}-{res(endpoint.id)}"


def claim(scope: Scope, endpoint: Endpoint) -> str:
    """The claim holding the hospital's MHLW file (``claim``, in a network ``<claim>-<hospital>``)."""
    base = scope.dep.config.master_import.claim
    return base if scope.is_default else f"{base}-{res(endpoint.id)}"


def command(cfg: MasterImportConfig) -> list[str]:
    """The job's command: ``platsync master import --node local [--strict] <file>``."""
    return ["platsync", "master", "import", "--node", SETTINGS_NODE, *(["--strict"] if cfg.strict else []), cfg.file]


def _labels(scope: Scope, endpoint: Endpoint) -> dict[str, str]:
    labels = {"app.kubernetes.io/name": name(scope, endpoint), "app.kubernetes.io/part-of": "platsync",
              **scope.labels(endpoint.node, endpoint.id, endpoint.tenant), "platsync.io/component": COMPONENT}
    return dict(sorted(labels.items()))


def _pod_spec(scope: Scope, endpoint: Endpoint) -> dict[str, Any]:
    dep, cfg = scope.dep, scope.dep.config.master_import
    settings = scope.settings_configmap(endpoint.node, endpoint.tenant)
    env = [{"name": "PLATSYNC_CONFIG", "value": CONFIG_PATH},
           secret_env(f"PLATSYNC_PG_{ROLE.upper()}_PASSWORD", scope.db_secret(endpoint.id), f"{ROLE}-password")]
    container = {
        "name": COMPONENT, "image": dep.config.image, "imagePullPolicy": dep.config.image_pull_policy,
        "command": command(cfg), "env": env,
        "resources": dep.config.resources["master_import"].as_k8s(),
        "securityContext": {"allowPrivilegeEscalation": False, "readOnlyRootFilesystem": True,
                            "runAsNonRoot": True, "capabilities": {"drop": ["ALL"]}},
        "volumeMounts": [{"name": "settings", "mountPath": "/etc/platsync", "readOnly": True},
                         {"name": "data", "mountPath": DATA_DIR}, {"name": "tmp", "mountPath": "/tmp"},
                         {"name": "master-files", "mountPath": cfg.mount_path, "readOnly": True}],
    }
    return {
        "restartPolicy": "Never",  # a failed run is a new pod (backoffLimit), its log kept for the history
        "automountServiceAccountToken": False,
        "securityContext": {"runAsNonRoot": True, "runAsUser": 10001, "fsGroup": 10001,
                            "seccompProfile": {"type": "RuntimeDefault"}},
        "containers": [container],
        "volumes": [{"name": "settings", "configMap": {"name": settings}},
                    {"name": "data", "emptyDir": {}}, {"name": "tmp", "emptyDir": {}},
                    {"name": "master-files", "persistentVolumeClaim": {"claimName": claim(scope, endpoint),
                                                                       "readOnly": True}}],
    }


def cronjobs(scope: Scope, nodes: frozenset[str]) -> list[dict[str, Any]]:
    """One CronJob per hospital on ``nodes``, importing its master file on schedule."""
    cfg, out = scope.dep.config.master_import, []
    for endpoint in hospitals(scope, nodes):
        labels = _labels(scope, endpoint)
        job = {"backoffLimit": cfg.backoff_limit, "activeDeadlineSeconds": cfg.active_deadline_seconds,
               "template": {"metadata": {"labels": dict(labels)}, "spec": _pod_spec(scope, endpoint)}}
        out.append({"apiVersion": "batch/v1", "kind": "CronJob",
                    "metadata": object_meta(scope.dep, name(scope, endpoint), labels),
                    "spec": {"schedule": cfg.schedule, "timeZone": cfg.time_zone, "concurrencyPolicy": "Forbid",
                             "startingDeadlineSeconds": cfg.starting_deadline_seconds,
                             "successfulJobsHistoryLimit": cfg.successful_jobs_history_limit,
                             "failedJobsHistoryLimit": cfg.failed_jobs_history_limit,
                             "jobTemplate": {"metadata": {"labels": dict(labels)}, "spec": job}}})
    return out


def volumes(scope: Scope, nodes: frozenset[str]) -> list[dict[str, Any]]:
    """The claims the MHLW files are dropped into (none when ``create_claim`` is false: they exist)."""
    cfg = scope.dep.config.master_import
    if not cfg.create_claim:
        return []
    return [{"apiVersion": "v1", "kind": "PersistentVolumeClaim",
             "metadata": object_meta(scope.dep, claim(scope, e),
                                     None if scope.is_default else scope.labels(e.node, e.id, e.tenant)),
             "spec": {"accessModes": list(cfg.access_modes), "resources": {"requests": {"storage": cfg.storage}}}}
            for e in hospitals(scope, nodes)]


def network_policies(scope: Scope, nodes: frozenset[str]) -> list[dict[str, Any]]:
    """Each hospital's import job may reach its hospital's PostgreSQL and nothing else (DNS aside)."""
    out = []
    for endpoint in hospitals(scope, nodes):
        here = scope.node_config(endpoint.node)
        selector = {"matchLabels": {**scope.node_label(endpoint.node), "platsync.io/component": COMPONENT}}
        out.append(network_policy(scope.dep, f"{res(endpoint.node)}-{COMPONENT}-egress", selector,
                                  egress=[{"to": [{"ipBlock": {"cidr": c}} for c in here.db_cidrs],
                                           "ports": [{"protocol": "TCP", "port": here.pg_port}]}]))
    return out
