"""Kubernetes workloads of a network's sharing processes (docs/sharing.md): the fan-out, each hospital's
subscriber (with its notifier thread), the indexer and each common server's declarer.

Each is a Deployment of one replica on the node the plan places it on (``NetworkPlan.node_of_process``), run
like the embedded stack runs it (``python -m streams.apply.<process>``) plus ``--metrics-port``, so that its
liveness and readiness probes read ``/healthz`` and ``/readyz`` like the workers'. Its database role
(:mod:`streams.ops.sharing_access`) takes its password from a Secret of its own, ``platsync-db-<process>``
(key ``<role>-password``), and its Kafka user is the plan's principal (its KafkaUser, :mod:`infra.k8s.users`).
The fan-out, the indexer and the declarers read the network's own settings (``platsync-settings-<node>``:
the deployment's settings, on a regional server with its node table); a subscriber reads its hospital's link
settings. A default deny holds every pod: a subscriber's notifier may reach its hospital's webhook only where
``[k8s.nodes.<id>] webhook_cidrs`` says (``<node>-webhook-egress``).
"""

from __future__ import annotations

from typing import Any

from infra.k8s.netpol import network_policy
from infra.k8s.scope import Scope, res
from infra.k8s.users import user_name
from infra.k8s.workloads import PLACEHOLDER, container_spec, deployment_doc, object_meta, secret_env
from streams.runtime.credentials import DECLARER, FANOUT, INDEXER, SUBSCRIBER

#: The database role of each kind of sharing process (streams/ops/sharing_access.py).
ROLES = {"fanout": FANOUT, "subscriber": SUBSCRIBER, "indexer": INDEXER, "declarer": DECLARER}
CLOUD_SIDE = "remote"  # the cloud's node in the network's settings


def processes(scope: Scope, nodes: frozenset[str]) -> list[str]:
    """The sharing processes of the plan that run on ``nodes`` (none in the default topology)."""
    return [p for p in scope.plan.subscription_processes() if scope.plan.node_of_process(p) in nodes]


def db_secret(process: str) -> str:
    """The Secret holding the password of a sharing process's database role."""
    return f"platsync-db-{res(process)}"


def secrets(scope: Scope, nodes: frozenset[str]) -> list[dict[str, Any]]:
    """One Secret per sharing process on ``nodes``, with a placeholder password (fill it before use)."""
    note = {"platsync.io/fill-before-use": "true"}
    return [{"apiVersion": "v1", "kind": "Secret", "type": "Opaque",
             "metadata": {**object_meta(scope.dep, db_secret(p)), "annotations": note},
             "stringData": {f"{ROLES[p.partition('-')[0]]}-password": PLACEHOLDER}} for p in processes(scope, nodes)]


def command(scope: Scope, process: str) -> list[str]:
    """How the pod runs ``process``: its module, its arguments, ``--metrics-port``."""
    plan = scope.plan
    kind, _, name = process.partition("-")
    if kind == "fanout":
        args = ["--homes", ",".join(h.id for h in plan.topology.hospitals)]
    elif kind == "subscriber":
        args = ["--node", name]
    elif kind == "indexer":
        args = ["--servers", ",".join(plan.common_servers())]
    else:  # a declarer: the cloud's shared store is the settings' remote node, a regional server's its own
        args = ["--server", name, "--pg-node", CLOUD_SIDE if name == scope.root else name]
    return ["python", "-m", f"streams.apply.{kind}", *args, "--metrics-port", str(scope.dep.config.container_port)]


def _env(scope: Scope, process: str) -> list[dict[str, Any]]:
    """Settings file, its database role's password, its Kafka user (Strimzi's KafkaUser Secret)."""
    role = ROLES[process.partition("-")[0]]
    user = user_name(scope.plan.principal(scope.prefix, process))
    return [{"name": "PLATSYNC_CONFIG", "value": "/etc/platsync/platsync.toml"},
            secret_env(f"PLATSYNC_PG_{role.upper()}_PASSWORD", db_secret(process), f"{role}-password"),
            {"name": "PLATSYNC_BROKER_USERNAME", "value": user},
            secret_env("PLATSYNC_BROKER_PASSWORD", user, "password")]


def _side(scope: Scope, node: str) -> str:
    """The node's role as the pods' ``platsync.io/side`` says it: a hospital, the cloud, a regional server."""
    if scope.plan.topology.node(node).kind == "hospital":
        return "local"
    return CLOUD_SIDE if node == scope.root else "replica"


def deployments(scope: Scope, nodes: frozenset[str]) -> list[dict[str, Any]]:
    """A Deployment per sharing process on ``nodes``, beside the stores it uses."""
    out = []
    for process in processes(scope, nodes):
        kind = process.partition("-")[0]
        node, tenant = scope.plan.node_of_process(process), scope.in_link(process)[0]
        labels = {"platsync.io/node": node, "platsync.io/side": _side(scope, node), "platsync.io/component": kind,
                  "platsync.io/db-client": "true", "platsync.io/kafka-client": "true",
                  **({"platsync.io/link": tenant} if tenant else {})}
        container = container_spec(scope.dep, kind, command(scope, process), _env(scope, process), kind)
        out.append(deployment_doc(scope.dep, f"platsync-{res(process)}", labels, container, 1, {"emptyDir": {}},
                                  scope.settings_configmap(node, tenant)))
    return out


def network_policies(scope: Scope, nodes: frozenset[str]) -> list[dict[str, Any]]:
    """Each hospital's subscriber may reach its webhook receiver (``webhook_cidrs``), on ``webhook_ports``."""
    cfg, out = scope.dep.config, []
    for node in sorted({scope.plan.node_of_process(p) for p in processes(scope, nodes) if p.startswith("subscriber-")}):
        cidrs = scope.node_config(node).webhook_cidrs
        if cidrs:
            subscriber = {"matchLabels": {"platsync.io/node": node, "platsync.io/component": "subscriber"}}
            out.append(network_policy(scope.dep, f"{res(node)}-webhook-egress", subscriber,
                                      egress=[{"to": [{"ipBlock": {"cidr": c}} for c in cidrs],
                                               "ports": [{"protocol": "TCP", "port": p} for p in cfg.webhook_ports]}]))
    return out
