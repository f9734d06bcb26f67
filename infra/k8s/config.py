"""The inputs of ``platsync k8s render``: ``infra/k8s/deployment.toml``, validated.

The file has two tables:

- ``[k8s]``: what only a Kubernetes deployment has (namespace, images, replica and partition
  counts, resources, network ranges); :class:`DeploymentConfig` lists every key with its default;
- ``[settings]``: the PLAT Sync settings of the pods (``streams/runtime/settings.py``), written into the
  pods' ConfigMap as their ``platsync.toml``. Secrets never go here: the pods receive them from
  Kubernetes Secrets as ``PLATSYNC_*`` environment variables (docs/kubernetes.md).

One :class:`DeploymentError` lists every fault found, so that an operator fixes them in one go.
"""

from __future__ import annotations

import dataclasses
import re
import tomllib
from dataclasses import dataclass, field, fields
from pathlib import Path, PurePosixPath
from typing import Any
from urllib.parse import urlsplit

from infra.k8s.backup_config import BackupJobConfig, backup_from
from infra.k8s.formats import ACCESS_MODES, DNS_LABEL, QUANTITY, is_cron
from streams.core.errors import PlatSyncError
from streams.runtime.settings import Settings, SettingsError, load_settings

K8S_DIR = Path(__file__).resolve().parent
DEFAULT_DEPLOYMENT_FILE = K8S_DIR / "deployment.toml"
DEFAULT_OUT_DIR = K8S_DIR / "manifests"
#: Settings that hold credentials: refused in ``[settings]`` (they come from Secrets).
SECRET_SETTINGS = frozenset({"pg_password", "keycloak_admin_password", "credential_keys", "schema_registry_password"})
_SECRET_SUFFIXES = ("_password", "_keys", "_secret", "_token")
#: Settings every pod gets from the generator (its own Kafka user, TLS to Strimzi, the data volume).
GENERATED_SETTINGS = frozenset({"broker_username", "broker_security_protocol", "broker_sasl_mechanism",
                                "broker_ca_file", "data_dir"})
#: The PostgreSQL major versions a node may declare: the engine's oldest (Debian 12's 15), and a bound that catches
#: a server_version_num (160004) written where the major (16) belongs.
MIN_PG_MAJOR, MAX_PG_MAJOR = 15, 99
_CIDR = re.compile(r"^[0-9]{1,3}(\.[0-9]{1,3}){3}/[0-9]{1,2}$")
_TIME_ZONE = re.compile(r"^[A-Za-z][A-Za-z0-9_+-]*(/[A-Za-z0-9_+-]+)*$")
#: Where every PLAT Sync pod mounts its settings, data and temporary files: no master file directory there.
_POD_PATHS = ("/etc/platsync", "/var/lib/platsync", "/tmp", "/etc/kafka-ca")


class DeploymentError(PlatSyncError, ValueError):
    """The deployment file is invalid; ``faults`` lists every problem."""

    def __init__(self, source: str, faults: list[str]) -> None:
        self.faults = faults
        super().__init__(f"{source}: " + "; ".join(faults))


@dataclass(frozen=True)
class Resources:
    """Requests and limits of one container (Kubernetes quantities)."""

    cpu_request: str
    memory_request: str
    cpu_limit: str
    memory_limit: str

    def as_k8s(self) -> dict[str, dict[str, str]]:
        """The container ``resources`` block."""
        return {"requests": {"cpu": self.cpu_request, "memory": self.memory_request},
                "limits": {"cpu": self.cpu_limit, "memory": self.memory_limit}}


# Derived from bench/RESULTS.md (peak RSS per process of the embedded stack under the bulk and
# catch-up loads): capture-local 514 MB (one JVM with Debezium plus Python), broker 314 MB,
# pg-local 306 MB; the Python processes stay well below the capture. Limits leave ~50% headroom.
DEFAULT_RESOURCES: dict[str, Resources] = {
    "connect": Resources("500m", "1Gi", "2", "1536Mi"),  # JVM -Xmx768m in the embedded capture
    "stamper": Resources("250m", "256Mi", "1", "512Mi"),  # the capture's Python half
    "worker": Resources("250m", "256Mi", "1", "768Mi"),
    "mode": Resources("50m", "96Mi", "250m", "192Mi"),
    "registry": Resources("100m", "512Mi", "500m", "768Mi"),
    "kafka": Resources("500m", "2Gi", "2", "4Gi"),
    "operator": Resources("100m", "256Mi", "500m", "512Mi"),  # Strimzi entity operator containers
    # A network's sharing processes (bench/RESULTS.md, fan-out of subscriptions: a subscriber process peaked at
    # 85-120 MB, the fan-out takes 11-18 ms of CPU per shared document, the indexer and a declarer a few ms).
    "fanout": Resources("100m", "192Mi", "1", "512Mi"),
    "subscriber": Resources("100m", "160Mi", "500m", "384Mi"),  # with its notifier thread
    "indexer": Resources("50m", "128Mi", "250m", "384Mi"),
    "declarer": Resources("50m", "128Mi", "250m", "256Mi"),
    # The cloud's FHIR worker (infra/k8s/fhir.py): a batch of documents validated and summarised (3.2 ms each,
    # bench/RESULTS.md issue 17), one submission at a time. An estimate like the indexer's, not a measurement.
    "fhir": Resources("50m", "160Mi", "500m", "384Mi"),
    # The scheduled master import (infra/k8s/master_import.py): the file's ~100,000 rows and the table's, as dicts,
    # side by side for the difference. An estimate, not a measurement: raise the limit if the job is OOM-killed.
    "master_import": Resources("250m", "512Mi", "1", "1Gi"),
    # The nightly backup (infra/k8s/backup_job.py): pg_dump compressing one database at a time, beside a Python
    # process counting rows and hashing files. An estimate, not a measurement.
    "backup": Resources("250m", "256Mi", "2", "1Gi"),
    # The reference API over HTTP (infra/k8s/api.py): an aiohttp loop and 4 threads, each with its own engines
    # (two connections per store). An estimate like the mode server's, not a measurement.
    "api": Resources("100m", "192Mi", "1", "512Mi"),
}


@dataclass(frozen=True)
class NodeConfig:
    """Where one node of a topology keeps its databases (``[k8s.nodes.<id>]``; docs/kubernetes.md)."""

    pg_host: str
    db_cidrs: tuple[str, ...]  # the node's PostgreSQL and Keycloak: its pods' only database egress
    pg_port: int = 5432
    keycloak_url: str = ""  # empty: none (a regional server has no Keycloak)
    keycloak_db: str = ""  # libpq DSN of Keycloak's account database, without password
    # A hospital's webhook receiver (its subscriber's notifier POSTs there): the only egress opened for it.
    webhook_cidrs: tuple[str, ...] = ()
    # Major version of the node's PostgreSQL: from 16 its connectors stream origin = none (docs/kubernetes.md).
    pg_major: int = 15


@dataclass(frozen=True)
class MasterImportConfig:
    """The hospital's scheduled import of the MHLW master (``[k8s.master_import]``; a CronJob per hospital,
    infra/k8s/master_import.py, docs/kubernetes.md)."""

    schedule: str = "0 3 * * *"  # cron syntax, in time_zone
    time_zone: str = "Asia/Tokyo"  # the hospital's local time (CronJob spec.timeZone, an IANA name)
    file: str = "/master/master.csv"  # the file inside the job; its directory is where the claim is mounted
    claim: str = "platsync-master-files"  # the PersistentVolumeClaim the MHLW file is dropped into
    create_claim: bool = True  # False: the claim exists already (not rendered)
    storage: str = "1Gi"  # the rendered claim's size
    access_modes: tuple[str, ...] = ("ReadWriteMany",)  # the job reads while an upload pod or share writes
    strict: bool = False  # --strict: any invalid row fails the job and writes nothing
    starting_deadline_seconds: int = 3600  # a run missed by more than this (cluster down) is skipped
    active_deadline_seconds: int = 3600  # a run still going after this is stopped (and counts as failed)
    backoff_limit: int = 2  # retries of a failed run (a database restart); a refused file fails each time
    successful_jobs_history_limit: int = 3
    failed_jobs_history_limit: int = 3

    @property
    def mount_path(self) -> str:
        """The directory of ``file``: where the claim is mounted, read-only."""
        return str(PurePosixPath(self.file).parent)


@dataclass(frozen=True)
class DeploymentConfig:
    """Everything of the Kubernetes deployment that the PLAT Sync settings do not hold."""

    namespace: str = "platsync"
    kubernetes_version: str = "1.35.0"  # the schemas the manifests are validated against
    image: str = "registry.example.org/platsync/platsync:0.1.0"  # the engine image (docs/kubernetes.md)
    image_pull_policy: str = "IfNotPresent"
    kafka_cluster: str = "platsync"
    kafka_version: str = "4.1.0"
    kafka_nodes: int = 3  # KafkaNodePool replicas (combined controller+broker nodes)
    kafka_storage: str = "100Gi"
    topic_replicas: int = 3
    min_insync_replicas: int = 2
    retention_ms: int = 1_209_600_000  # 14 days: the retained log must outlast the longest outage
    source_topic_partitions: int = 1
    worker_replicas: dict[str, int] = field(default_factory=lambda: {"local_to_remote": 1, "remote_to_local": 1})
    connect_image: str = "registry.example.org/platsync/platsync-connect:3.6.3"  # spec.build output
    connect_push_secret: str = "platsync-registry-push"
    debezium_plugin_url: str = ("https://repo1.maven.org/maven2/io/debezium/debezium-connector-postgres/"
                                "3.6.3.Final/debezium-connector-postgres-3.6.3.Final-plugin.tar.gz")
    echo_filter_jar_url: str = "https://artifacts.example.org/platsync/platsync-echo-filter.jar"
    echo_filter_jar_sha512: str = ""
    schema_registry_image: str = "confluentinc/cp-schema-registry:7.9.0"
    container_port: int = 9102  # metrics/health of every PLAT Sync pod
    mode_port: int = 8090  # X-Hybridmode status endpoint
    api_port: int = 8092  # the reference API over HTTP (infra/k8s/api.py)
    api_replicas: int = 1  # its pods per endpoint (stateless: more are safe)
    stamper_storage: str = "1Gi"  # markers and progress of the stamper (PersistentVolumeClaim)
    local_db_cidrs: tuple[str, ...] = ("10.10.0.0/16",)  # hospital-side PostgreSQL and Keycloak
    remote_db_cidrs: tuple[str, ...] = ("10.20.0.0/16",)  # cloud-side PostgreSQL and Keycloak
    # Major versions of the [settings] nodes' PostgreSQL servers (other nodes: [k8s.nodes.<id>] pg_major). From 16,
    # the node's KafkaConnectors stream origin = none: the server leaves the workers' applies out of the capture.
    local_pg_major: int = 15
    remote_pg_major: int = 15
    db_port: int = 5432
    keycloak_ports: tuple[int, ...] = (443, 8443, 8080)
    webhook_ports: tuple[int, ...] = (443,)  # a subscriber's webhook (each hospital's webhook_cidrs)
    # The national sharing service at fhir_submission_url: the cloud's FHIR worker's only egress besides the cloud's
    # PostgreSQL, on the URL's port. A policy cannot name a host: narrow it to the service's ranges where known.
    fhir_service_cidrs: tuple[str, ...] = ("0.0.0.0/0",)
    resources: dict[str, Resources] = field(default_factory=lambda: dict(DEFAULT_RESOURCES))
    # A topology's nodes other than the cloud root (which is the settings' remote node) and a
    # hospital called "local": `platsync k8s render --topology` (docs/kubernetes.md).
    nodes: dict[str, NodeConfig] = field(default_factory=dict)
    master_import: MasterImportConfig = field(default_factory=MasterImportConfig)
    backup: BackupJobConfig = field(default_factory=BackupJobConfig)  # [k8s.backup] (infra/k8s/backup_config.py)


@dataclass(frozen=True)
class Deployment:
    """The validated deployment file: Kubernetes knobs plus the pods' settings."""

    config: DeploymentConfig
    settings: Settings
    settings_table: dict[str, Any]  # exactly what the pods' platsync.toml holds
    source: Path


def _check_config(cfg: DeploymentConfig) -> list[str]:
    faults: list[str] = []
    if not DNS_LABEL.match(cfg.namespace):
        faults.append(f"namespace {cfg.namespace!r} is not a DNS label")
    if not DNS_LABEL.match(cfg.kafka_cluster):
        faults.append(f"kafka_cluster {cfg.kafka_cluster!r} is not a DNS label")
    for name in ("kafka_nodes", "topic_replicas", "min_insync_replicas", "source_topic_partitions", "api_replicas"):
        if getattr(cfg, name) < 1:
            faults.append(f"{name} must be >= 1")
    for name in ("container_port", "mode_port", "api_port"):
        if not 1 <= getattr(cfg, name) <= 65535:
            faults.append(f"{name} must be a port (1..65535)")
    if cfg.topic_replicas > cfg.kafka_nodes:
        faults.append(f"topic_replicas {cfg.topic_replicas} > kafka_nodes {cfg.kafka_nodes}")
    if cfg.min_insync_replicas > cfg.topic_replicas:
        faults.append(f"min_insync_replicas {cfg.min_insync_replicas} > topic_replicas {cfg.topic_replicas}")
    for cidr in (*cfg.local_db_cidrs, *cfg.remote_db_cidrs, *cfg.fhir_service_cidrs):
        if not _CIDR.match(cidr):
            faults.append(f"{cidr!r} is not an IPv4 CIDR")
    for name in ("local_pg_major", "remote_pg_major"):
        faults += _pg_major_faults(f"[k8s] {name}", getattr(cfg, name))
    if not cfg.fhir_service_cidrs:
        faults.append("fhir_service_cidrs is empty: the FHIR worker could reach no sharing service")
    for name, res in cfg.resources.items():
        for f in fields(res):
            if not QUANTITY.match(getattr(res, f.name)):
                faults.append(f"resources.{name}.{f.name} {getattr(res, f.name)!r} is not a quantity")
    return faults


def _pg_major_faults(where: str, value: Any) -> list[str]:
    """A PostgreSQL major version the engine runs on (15 or later), else the fault."""
    if isinstance(value, bool) or not isinstance(value, int) or not MIN_PG_MAJOR <= value <= MAX_PG_MAJOR:
        return [f"{where} expects a PostgreSQL major version ({MIN_PG_MAJOR}..{MAX_PG_MAJOR}), got {value!r}"]
    return []


def _nodes_from(raw: Any, faults: list[str]) -> dict[str, NodeConfig]:
    """The ``[k8s.nodes.<id>]`` tables (every fault recorded in ``faults``)."""
    known = {f.name: f for f in fields(NodeConfig)}
    nodes: dict[str, NodeConfig] = {}
    for node, table in dict(raw if isinstance(raw, dict) else {}).items():
        where = f"[k8s.nodes.{node}]"
        if not isinstance(table, dict):
            faults.append(f"{where} must be a table of {', '.join(known)}")
            continue
        unknown = sorted(set(table) - set(known))
        missing = [k for k, f in known.items() if f.default is dataclasses.MISSING and k not in table]
        if unknown or missing:
            faults += [f"{where} unknown key {k!r}; known: {', '.join(known)}" for k in unknown]
            faults += [f"{where} missing {k}" for k in missing]
            continue
        values = {k: tuple(v) if k in ("db_cidrs", "webhook_cidrs") else v for k, v in table.items()}
        faults += [f"{where} {k}: {c!r} is not an IPv4 CIDR" for k in ("db_cidrs", "webhook_cidrs")
                   for c in values.get(k, ()) if not _CIDR.match(c)]
        if not values["db_cidrs"]:
            faults.append(f"{where} db_cidrs is empty: the node's pods could reach no database")
        if not isinstance(values.get("pg_port", 5432), int):
            faults.append(f"{where} pg_port expects an int")
        faults += _pg_major_faults(f"{where} pg_major", values.get("pg_major", known["pg_major"].default))
        nodes[node] = NodeConfig(**values)
    if not isinstance(raw, dict):
        faults.append("[k8s] nodes must be a table of [k8s.nodes.<id>] tables")
    return nodes


def _master_import_from(raw: Any, faults: list[str]) -> MasterImportConfig:
    """The ``[k8s.master_import]`` table (every fault recorded in ``faults``)."""
    where, defaults = "[k8s.master_import]", MasterImportConfig()
    if not isinstance(raw, dict):
        faults.append(f"{where} must be a table")
        return defaults
    values: dict[str, Any] = {}
    for key, value in raw.items():
        if not hasattr(defaults, key) or key == "mount_path":
            faults.append(f"{where} unknown key {key!r}; known: {', '.join(f.name for f in fields(defaults))}")
            continue
        default = getattr(defaults, key)
        if isinstance(default, tuple) and isinstance(value, list):
            value = tuple(value)
        if type(value) is not type(default):
            faults.append(f"{where} {key} expects {type(default).__name__}, got {value!r}")
            continue
        values[key] = value
    cfg = dataclasses.replace(defaults, **values)
    faults += [f"{where} {fault}" for fault in _check_master_import(cfg)]
    return cfg


def _check_master_import(cfg: MasterImportConfig) -> list[str]:
    faults = []
    if not is_cron(cfg.schedule):
        faults.append(f"schedule {cfg.schedule!r} is not a cron schedule (5 fields, e.g. \"0 3 * * *\", or @daily)")
    if not _TIME_ZONE.match(cfg.time_zone):
        faults.append(f"time_zone {cfg.time_zone!r} is not a time zone name (e.g. Asia/Tokyo)")
    path = PurePosixPath(cfg.file)
    if not path.is_absolute() or cfg.file.endswith("/") or path.parent == PurePosixPath("/") or ".." in path.parts:
        faults.append(f"file {cfg.file!r} must be an absolute path in a directory of its own (e.g. /master/master.csv)")
    elif any(cfg.mount_path == p or cfg.mount_path.startswith(p + "/") or p.startswith(cfg.mount_path + "/")
             for p in _POD_PATHS):
        faults.append(f"file {cfg.file!r}: its directory would hide one the pod needs ({', '.join(_POD_PATHS)})")
    if not DNS_LABEL.match(cfg.claim) or len(cfg.claim) > 63:
        faults.append(f"claim {cfg.claim!r} is not a DNS label")
    if not QUANTITY.match(cfg.storage):
        faults.append(f"storage {cfg.storage!r} is not a quantity")
    if not cfg.access_modes or set(cfg.access_modes) - ACCESS_MODES:
        faults.append(f"access_modes {list(cfg.access_modes)} must be some of {', '.join(sorted(ACCESS_MODES))}")
    for name in ("starting_deadline_seconds", "active_deadline_seconds"):
        if getattr(cfg, name) < 1:
            faults.append(f"{name} must be >= 1")
    for name in ("backoff_limit", "successful_jobs_history_limit", "failed_jobs_history_limit"):
        if getattr(cfg, name) < 0:
            faults.append(f"{name} must be >= 0")
    return faults


def _check_fhir_url(url: str) -> list[str]:
    """The sharing service's URL is required here: Kubernetes runs no stand-in (docs/kubernetes.md)."""
    if not url:
        return ["[settings] fhir_submission_url is empty: on Kubernetes there is no sharing service stand-in, so the "
                "cloud's FHIR worker would post to one that does not exist; set the national sharing service's FHIR "
                "base URL (e.g. \"https://fhir.sharing.example.org/fhir\")"]
    try:
        parts = urlsplit(url)
        parts.port  # noqa: B018 - raises ValueError for a port out of range
    except ValueError as exc:
        return [f"[settings] fhir_submission_url {url!r}: {exc}"]
    if parts.scheme not in ("https", "http") or not parts.hostname:
        return [f"[settings] fhir_submission_url {url!r} is not an http(s) URL with a host"]
    return []


def _config_from(table: dict[str, Any], faults: list[str]) -> DeploymentConfig:
    known = {f.name: f for f in fields(DeploymentConfig)}
    values: dict[str, Any] = {}
    defaults = DeploymentConfig()
    for key, raw in table.items():
        if key not in known:
            faults.append(f"[k8s] unknown key {key!r}; known: {', '.join(sorted(known))}")
            continue
        default = getattr(defaults, key)
        if key == "resources":
            merged = dict(defaults.resources)
            for comp, spec in (raw or {}).items():
                if comp not in merged:
                    faults.append(f"[k8s.resources] unknown component {comp!r}; known: {', '.join(sorted(merged))}")
                    continue
                try:
                    merged[comp] = dataclasses.replace(merged[comp], **spec)
                except TypeError as exc:
                    faults.append(f"[k8s.resources.{comp}] {exc}")
            values[key] = merged
        elif key == "nodes":
            values[key] = _nodes_from(raw, faults)
        elif key == "master_import":
            values[key] = _master_import_from(raw, faults)
        elif key == "backup":
            values[key] = backup_from(raw, faults)
        elif key == "worker_replicas":
            if not isinstance(raw, dict) or set(raw) - set(default):
                faults.append(f"[k8s] worker_replicas must map routes ({', '.join(default)}) to counts")
                continue
            values[key] = {**default, **{k: int(v) for k, v in raw.items()}}
        elif isinstance(default, tuple):
            values[key] = tuple(raw)
        elif type(raw) is not type(default):
            faults.append(f"[k8s] {key} expects {type(default).__name__}, got {raw!r}")
        else:
            values[key] = raw
    return DeploymentConfig(**values)


def load_deployment(path: Path = DEFAULT_DEPLOYMENT_FILE) -> Deployment:
    """Read and validate the deployment file; raise :class:`DeploymentError` listing every fault."""
    try:
        data = tomllib.loads(path.read_text(encoding="utf-8"))
    except (OSError, tomllib.TOMLDecodeError) as exc:
        raise DeploymentError(str(path), [str(exc)]) from None
    faults: list[str] = [f"unknown table [{t}]; expected [k8s] and [settings]" for t in data
                         if t not in ("k8s", "settings")]
    cfg = _config_from(data.get("k8s", {}), faults)
    faults += _check_config(cfg)
    table = dict(data.get("settings", {}))
    for key in sorted(table):
        if key in SECRET_SETTINGS or key.endswith(_SECRET_SUFFIXES):
            faults.append(f"[settings] {key} is a credential: it comes from a Secret, not from this file")
        elif key in GENERATED_SETTINGS:
            faults.append(f"[settings] {key} is set by the generator for every pod (docs/kubernetes.md)")
    settings = Settings()
    try:
        # The generator gives every pod TLS + SASL to the cluster (workloads.BROKER_SECURITY).
        settings = load_settings(env={}, **{k: v for k, v in table.items() if k not in GENERATED_SETTINGS},
                                 data_dir="/var/lib/platsync", broker_security_protocol="sasl_ssl")
    except SettingsError as exc:
        faults.append(f"[settings] {exc}")
    else:
        faults += _check_fhir_url(settings.fhir_submission_url)
    if faults:
        raise DeploymentError(str(path), faults)
    return Deployment(cfg, settings, table, path)
