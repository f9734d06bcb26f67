"""Kubernetes workload of the cloud's FHIR worker (docs/fhir.md): ``python -m streams.apply.fhir_worker``.

Once per cloud, on the cloud root (the default deployment's ``remote``; a network's root): a Deployment of one
replica (a second would be safe, the summarizer holding an advisory lock and the submitter locking its rows with
``SKIP LOCKED``, but one is enough), run like the embedded stack runs it plus ``--metrics-port``, so that its
liveness and readiness probes read ``/healthz`` and ``/readyz`` like the workers'. It reads the settings of the
cloud's own processes (``platsync-settings``; a network's ``platsync-settings-<root>``), where the cloud's
PostgreSQL is the node ``remote``, and connects to ``fructos_patient`` there as ``platsync_fhir``. Its Secret
``platsync-fhir-<root>`` holds that role's password (``fhir-password``, as ``PLATSYNC_PG_FHIR_PASSWORD``) and the
sharing service's bearer token (``submission-token``, as ``PLATSYNC_FHIR_SUBMISSION_TOKEN``). It uses no Kafka:
no KafkaUser, no cluster CA, no ``platsync.io/kafka-client`` label.

It submits to ``fhir_submission_url`` of the deployment's ``[settings]``, which :func:`infra.k8s.config.load_deployment`
requires: Kubernetes runs no stand-in. Its NetworkPolicy ``<root>-fhir-egress`` lets it reach only the cloud's
PostgreSQL (``db_cidrs`` on its ``pg_port``) and ``fhir_service_cidrs`` on the URL's port (443 for ``https``);
it is no ``platsync.io/db-client``, so the cloud's Keycloak stays out of its reach. DNS comes with the
namespace-wide policies; everything else stays denied by the default deny.
"""

from __future__ import annotations

from typing import Any
from urllib.parse import urlsplit

from infra.k8s.netpol import network_policy
from infra.k8s.scope import CONFIG_PATH, Scope, res
from infra.k8s.workloads import PLACEHOLDER, container_spec, deployment_doc, object_meta, secret_env
from streams.runtime.credentials import FHIR

COMPONENT = "fhir"
ROLE = FHIR  # its database role key (streams/ops/access_policy.py process_roles: "fhir-remote")
PG_NODE = "remote"  # the cloud's PostgreSQL in the cloud's own settings
TOKEN_KEY = "submission-token"


def on(scope: Scope, nodes: frozenset[str]) -> bool:
    """Whether ``nodes`` hold the cloud root, where the FHIR worker runs."""
    return scope.root in nodes


def name(scope: Scope) -> str:
    """The Deployment's name: ``platsync-fhir-<root>`` (``platsync-fhir-remote``)."""
    return f"platsync-{COMPONENT}-{res(scope.root)}"


def secret_name(scope: Scope) -> str:
    """The Secret with the ``platsync_fhir`` password and the sharing service's bearer token."""
    return f"platsync-{COMPONENT}-{res(scope.root)}"


def service_port(url: str) -> int:
    """The port of the sharing service's URL (443 for ``https``, 80 for ``http`` unless it names one)."""
    parts = urlsplit(url)
    return parts.port or (443 if parts.scheme == "https" else 80)


def command(scope: Scope) -> list[str]:
    """How the pod runs the worker: on the cloud's store, with ``--metrics-port``."""
    return ["python", "-m", "streams.apply.fhir_worker", "--pg-node", PG_NODE,
            "--metrics-port", str(scope.dep.config.container_port)]


def _labels(scope: Scope) -> dict[str, str]:
    side = {"platsync.io/side": PG_NODE}
    return {**side, **({} if scope.is_default else scope.node_label(scope.root)), "platsync.io/component": COMPONENT}


def secrets(scope: Scope, nodes: frozenset[str]) -> list[dict[str, Any]]:
    """The FHIR worker's Secret, with placeholders (fill it before use)."""
    if not on(scope, nodes):
        return []
    note = {"platsync.io/fill-before-use": "true"}
    return [{"apiVersion": "v1", "kind": "Secret", "type": "Opaque",
             "metadata": {**object_meta(scope.dep, secret_name(scope)), "annotations": note},
             "stringData": {f"{ROLE}-password": PLACEHOLDER, TOKEN_KEY: PLACEHOLDER}}]


def deployments(scope: Scope, nodes: frozenset[str]) -> list[dict[str, Any]]:
    """The cloud's FHIR worker, one replica, beside the cloud's store."""
    if not on(scope, nodes):
        return []
    secret = secret_name(scope)
    env = [{"name": "PLATSYNC_CONFIG", "value": CONFIG_PATH},
           secret_env(f"PLATSYNC_PG_{ROLE.upper()}_PASSWORD", secret, f"{ROLE}-password"),
           secret_env("PLATSYNC_FHIR_SUBMISSION_TOKEN", secret, TOKEN_KEY)]
    container = container_spec(scope.dep, COMPONENT, command(scope), env, COMPONENT, kafka=False)
    return [deployment_doc(scope.dep, name(scope), _labels(scope), container, 1, {"emptyDir": {}},
                           scope.settings_configmap(scope.root, None), kafka=False)]


def network_policies(scope: Scope, nodes: frozenset[str]) -> list[dict[str, Any]]:
    """The FHIR worker may reach the cloud's PostgreSQL and the sharing service, nothing else (DNS aside)."""
    if not on(scope, nodes):
        return []
    cfg, cloud = scope.dep.config, scope.node_config(scope.root)
    selector = {"matchLabels": {**scope.node_label(scope.root), "platsync.io/component": COMPONENT}}
    port = service_port(scope.dep.settings.fhir_submission_url)
    return [network_policy(scope.dep, f"{res(scope.root)}-{COMPONENT}-egress", selector, egress=[
        {"to": [{"ipBlock": {"cidr": c}} for c in cloud.db_cidrs],
         "ports": [{"protocol": "TCP", "port": cloud.pg_port}]},
        {"to": [{"ipBlock": {"cidr": c}} for c in cfg.fhir_service_cidrs],
         "ports": [{"protocol": "TCP", "port": port}]},
    ])]
