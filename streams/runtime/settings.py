"""The one settings object: defaults, overridden by a TOML file, overridden by the environment.

Nothing here reads the environment at import time; :func:`load_settings` is the factory.
Environment variables are ``PLATSYNC_<FIELD>`` (for example ``PLATSYNC_DATA_DIR``,
``PLATSYNC_BROKER_PORT``). The settings file is ``<data_dir>/platsync.toml`` unless
``PLATSYNC_CONFIG`` or an explicit path names another one.
"""

from __future__ import annotations

import dataclasses
import ipaddress
import os
import re
import tomllib
from collections.abc import Mapping
from dataclasses import dataclass, field, fields
from pathlib import Path
from typing import Any

from streams.core.model import CAPTURED_STORES, ROUTES, SHARED_STORES, SIDES, replica_node, replica_route
from streams.runtime.node_settings import (
    DEFAULT_WORKER_METRICS_PORTS,
    NODE_FIELDS,
    NodeSettings,
    SettingsError,
    alias_names,
    default_nodes,
)
from streams.runtime.number_ranges import number_range, overlapping_ranges

ENV_PREFIX = "PLATSYNC_"
#: ``broker_security_protocol`` values and the librdkafka ``security.protocol`` each stands for.
PROTOCOLS = {"plaintext": "PLAINTEXT", "ssl": "SSL", "sasl_ssl": "SASL_SSL"}
SASL_MECHANISMS = ("SCRAM-SHA-256", "SCRAM-SHA-512", "PLAIN")
#: Where plaintext-only listeners (the embedded broker behind its link proxy) always bind.
LOOPBACK = "127.0.0.1"
_IDENTIFIER = re.compile(r"[a-z][a-z0-9_]{0,62}")


@dataclass(frozen=True)
class Settings:
    """Every tunable of the engine and of the embedded two-site stack."""

    data_dir: Path = Path(".platsync")
    host: str = "127.0.0.1"
    broker_port: int = 19092  # what Kafka clients use: the link proxy (infra/local/link.py)
    broker_listen_port: int = 19093  # where the broker itself listens, behind the link proxy
    # Production (infra/k8s, docs/kubernetes.md): the Kafka bootstrap list. Empty: ``host:broker_port``
    # (the embedded stack). Each node's PostgreSQL, Keycloak and ports: ``nodes`` below.
    broker_bootstrap_servers: str = ""
    # Broker connection security (docs/broker_security.md): plaintext | ssl | sasl_ssl. On the embedded
    # stack the link proxy (infra/local/link.py) is the TLS/SASL endpoint. Empty username/password: the
    # embedded stack's generated per-process users; empty CA file: its generated CA
    # (<data_dir>/secrets/broker/).
    broker_security_protocol: str = "plaintext"
    broker_sasl_mechanism: str = "SCRAM-SHA-256"  # SCRAM-SHA-256 | SCRAM-SHA-512 | PLAIN
    broker_username: str = ""
    broker_password: str = ""
    broker_ca_file: str = ""
    # Plaintext is allowed on loopback only (the embedded default). Any non-loopback broker address
    # (``host`` the embedded broker and link listen on, or a bootstrap server) needs sasl_ssl, or the
    # settings are refused. A comma-separated list of hosts named here is exempt: for a disposable test
    # cluster only, never production (docs/broker_security.md).
    broker_plaintext_hosts: str = ""
    pg_bin_dir: str = ""  # empty: auto-detect (pg_config, then /usr/lib/postgresql/*/bin)
    pg_user: str = "platsync"  # the admin: provisioning only (streams/ops/access_policy.py, docs/security.md)
    pg_password: str = "platsync"
    # Least-privilege roles: each process connects as its own role (capture, apply, app, operator, ...).
    # false: every process connects as pg_user. Empty passwords: generated once per side in <data_dir>/secrets/.
    pg_least_privilege: bool = True
    pg_capture_password: str = ""
    pg_apply_password: str = ""
    pg_app_password: str = ""
    pg_operator_password: str = ""
    pg_fhir_password: str = ""  # the cloud's FHIR worker (docs/fhir.md)
    # The sharing processes' roles (a network's fan-out, subscribers, indexer and declarers; docs/sharing.md).
    pg_fanout_password: str = ""
    pg_subscriber_password: str = ""
    pg_indexer_password: str = ""
    pg_declarer_password: str = ""
    topic_prefix: str = "platsync"
    # The home link this two-party stack is in a network (its hospital's id; infra/local/network.py
    # writes it into each link's settings file): its Kafka client ids name it, so that the shared link
    # proxy cuts that link alone. Empty: a standalone two-party stack (the default topology).
    network_link: str = ""
    # A network's common servers that declare to the patient index, comma-separated (the cloud first;
    # infra/local/network.py writes it when the network shares: two hospitals or more). Its sharing processes
    # then have Kafka principals of their own: the fan-out, the indexer, each server's declarer and, in a
    # link's settings, the hospital's subscriber (streams/runtime/credentials.py). Empty: no sharing.
    network_servers: str = ""
    # Debezium
    # How often each Debezium engine looks for new changes when idle. A wake cost about a millisecond
    # of CPU per engine, most of it Debezium's poll timer spinning (fixed: connectors/capture/timer_fix.py);
    # now about 0.3 ms, mostly the replication stream's read timeout. Under load batches are full and
    # this interval does not matter.
    debezium_poll_interval_ms: int = 50
    debezium_max_batch_size: int = 2048
    debezium_heartbeat_ms: int = 10000
    # Drop echo rows inside the Debezium engine (connectors/capture/echo_filter.py); needs javac.
    debezium_echo_filter: bool = True
    # On PostgreSQL >= 16, the server leaves the engine's own applies out of the captured stream
    # (pgoutput origin = none; connectors/stores/origins.py). false: they are dropped as echoes only.
    pg_origin_filter: bool = True
    # Change events per Kafka message (schemas/change_batch.avsc) and the message size budget.
    capture_events_per_message: int = 100
    capture_message_max_bytes: int = 262_144
    java_cache_dir: str = ""  # empty: ~/.cache/platsync/java (the capture's compiled Java: connectors/capture/java/)
    # Largest change message (one event, e.g. a signed PDF) the engine produces and consumes. A real
    # Kafka's topics need max.message.bytes at least this (Kafka's default is about 1 MB). A change
    # above it is dead-lettered by the capture without its bytes ("oversized"); raise this, then resync.
    kafka_message_max_bytes: int = 16_777_216
    # Every Kafka client's wait before reconnecting to an unreachable broker: from the first value,
    # doubling (librdkafka, jittered -25%..+50%) up to the second. The cap bounds how late catch-up
    # starts after a link is restored; the first value bounds a cut's reconnect rate even when
    # something accepts connections and resets them (a proxy, a load balancer), which resets
    # librdkafka's doubling: 50 ms by default gave ~20 attempts/s per client (issue 13).
    broker_reconnect_backoff_ms: int = 1000
    broker_reconnect_backoff_max_ms: int = 2000
    # Repeated broker-connection errors are logged once, then summarised at most this often.
    log_repeat_summary_s: float = 60.0
    # Faust worker
    worker_batch_size: int = 1000
    worker_batch_within_s: float = 0.05
    worker_batches_in_flight: int = 2  # batches applied while the next is collected (streams/apply/pipeline.py)
    # Consumer-group session of the Faust workers and the sharing processes (heartbeat: a third of it).
    # The embedded broker (Tansu) answers a JoinGroup only after half the session: every start waits
    # that long (10 s cost 5 s). 6 s is the least a real Kafka accepts (group.min.session.timeout.ms).
    worker_session_timeout_s: float = 6.0
    # Keycloak: each node's URL and account database are in ``nodes``.
    keycloak_realm: str = "plat"
    keycloak_admin_user: str = "platsync-admin"
    keycloak_admin_password: str = "platsync-admin"
    keycloak_timeout_s: float = 10.0
    keycloak_token_ttl_s: int = 300  # stand-in only: admin/user access token lifetime
    # Credential hashes travel encrypted: "kid:base64key[,kid:base64key...]", first one encrypts.
    # Empty: the embedded stack generates <data_dir>/secrets/credential.keys once.
    credential_keys: str = ""
    # Mode servers (X-Hybridmode status endpoint of each node; ports in ``nodes``)
    mode_peer_timeout_s: float = 10.0
    # Confluent-compatible schema registry (docs/schema_registry.md). Empty URL: no registry, messages
    # keep the plain framing of streams/core/codec.py. Otherwise messages use the Confluent wire format and
    # every process registers schemas/*.avsc (subjects by RecordNameStrategy) at start.
    schema_registry_url: str = ""
    schema_registry_user: str = ""  # HTTP basic auth (both empty: none)
    schema_registry_password: str = ""
    schema_registry_compatibility: str = "BACKWARD"  # set on every subject at start
    schema_registry_timeout_s: float = 5.0  # per HTTP request
    schema_registry_start_wait_s: float = 30.0  # how long a starting process waits for an unreachable registry
    # Observability (docs/observability.md): /metrics, /healthz, /readyz of each long-running process
    metrics_enabled: bool = True
    # Metrics ports: each node's capture and mode server in ``nodes``; each route's worker here.
    metrics_worker_ports: Mapping[str, int] = field(default_factory=lambda: dict(DEFAULT_WORKER_METRICS_PORTS))
    metrics_stall_after_s: float = 30.0  # /healthz turns 503 when a process loop made no progress for this long
    log_format: str = "text"  # text | json (streams/runtime/logs.py)
    # Sharing (docs/sharing.md): the share rules file. Empty: the shipped streams/sharing/share_rules.toml.
    share_rules: str = ""
    # The MHLW master (docs/master.md): columns of the cloud's partial copy maintained in the cloud, which the
    # sync never writes (上書き禁止), comma-separated; each is a text column added to the cloud's table.
    master_protected_columns: str = "display_alias,cloud_note"
    # FHIR documents (docs/fhir.md): the national sharing service's FHIR base URL the cloud's FHIR worker submits
    # to, and its bearer token. Empty URL: the embedded stack's stand-in, on ``fhir_standin_port``.
    fhir_submission_url: str = ""
    fhir_submission_token: str = ""
    fhir_submission_timeout_s: float = 10.0
    fhir_standin_port: int = 19480
    # Backups (docs/backups.md): where this node keeps its backups (empty: <data_dir>/backups), where its parent
    # keeps the copies shipped to it (empty: <data_dir>/parent-backups), how many of each node's backups both
    # keep, and when the Kubernetes CronJob takes one (cron syntax, UTC; nightly by default).
    backup_dir: str = ""
    backup_parent_dir: str = ""
    backup_keep: int = 7
    backup_schedule: str = "30 17 * * *"  # 02:30 in Japan (UTC+9)
    # Operator console (docs/console.md): its port (on ``host``, loopback by default), the node whose Keycloak
    # realm signs operators in (the hospital's: it keeps working while the cloud is cut off), the realm users who
    # may operate (comma-separated usernames; empty: the console refuses to start) and a session's idle limit.
    console_port: int = 8765
    console_login_node: str = "local"
    console_operators: str = ""
    console_session_idle_s: float = 1800.0
    # Supervisor
    ready_timeout_s: float = 120.0
    status_interval_s: float = 1.0
    # Per node: PostgreSQL, Keycloak, mode server and metrics ports (NodeSettings). TOML: ``[nodes.<id>]``.
    # The flat names of the two-site stack (``pg_local_port``, ``keycloak_remote_url``, ...) remain accepted
    # as aliases of ``nodes.local`` / ``nodes.remote`` everywhere (file, environment, options).
    nodes: Mapping[str, NodeSettings] = field(default_factory=default_nodes)

    def __post_init__(self) -> None:
        validate_broker_security(self)
        bad = [c for c in self.master_protected_column_names if not _IDENTIFIER.fullmatch(c)]
        if bad:
            raise SettingsError(f"master_protected_columns: {', '.join(map(repr, bad))} is not a column name "
                                "(lower-case letters, digits and _, starting with a letter)")
        if faults := overlapping_ranges(self.nodes):
            raise SettingsError("; ".join(faults))

    @property
    def console_operator_names(self) -> tuple[str, ...]:
        """The realm usernames allowed into the operator console (``console_operators``), lower-cased as
        Keycloak keeps them."""
        return tuple(dict.fromkeys(u.strip().lower() for u in self.console_operators.split(",") if u.strip()))

    @property
    def master_protected_column_names(self) -> tuple[str, ...]:
        """The cloud-maintained columns of the master's partial copy (``master_protected_columns``)."""
        return tuple(c.strip() for c in self.master_protected_columns.split(",") if c.strip())

    @property
    def broker_bootstrap(self) -> str:
        """Bootstrap servers of the Kafka-compatible broker (``host:broker_port`` unless configured)."""
        return self.broker_bootstrap_servers or f"{self.host}:{self.broker_port}"

    def node(self, node: str) -> NodeSettings:
        """The settings of one node; a :class:`SettingsError` naming the file section for an unknown one."""
        try:
            return self.nodes[node]
        except KeyError:
            raise SettingsError(f"no settings for node {node!r}: add a [nodes.{node}] table to the settings file "
                                f"(known: {', '.join(sorted(self.nodes))})") from None

    def with_node(self, node: str, **changes: Any) -> Settings:
        """A copy with some of one node's settings changed (``settings.with_node("local", pg_port=1)``)."""
        nodes = dict(self.nodes)
        nodes[node] = dataclasses.replace(self.node(node), **changes)
        return dataclasses.replace(self, nodes=nodes)

    def mode_port(self, side: str) -> int:
        """Port of a node's HTTP status endpoint (``X-Hybridmode``)."""
        return self.node(side).mode_port

    def api_port(self, side: str) -> int:
        """Port of a node's reference API over HTTP (``connectors/reference_api/http_server.py``)."""
        return self.node(side).api_port

    def metrics_port(self, process: str) -> int:
        """Metrics/health port of a long-running process: ``capture-<node>``, ``worker-<route>``, ``mode-<node>``."""
        kind, _, name = process.partition("-")
        if kind == "worker" and name in self.metrics_worker_ports:
            return self.metrics_worker_ports[name]
        if kind in ("capture", "mode") and name in self.nodes:
            return getattr(self.nodes[name], f"metrics_{kind}_port")
        raise SettingsError(f"no metrics port for process {process!r}: expected capture-<node>, "
                            "worker-<route> or mode-<node>")

    def metrics_port_setting(self, process: str) -> str:
        """The setting that holds a process's metrics port, as an operator writes it in the settings file."""
        kind, _, name = process.partition("-")
        alias = f"metrics_{kind}_{name}_port"
        if alias in alias_names():
            return alias
        if kind == "worker":
            return f"metrics_worker_ports.{name}"
        return f"[nodes.{name}] metrics_{kind}_port"

    def pg_port(self, side: str) -> int:
        """The PostgreSQL port of one node."""
        return self.node(side).pg_port

    def pg_host(self, side: str) -> str:
        """The PostgreSQL host of one node (``host`` unless the node sets ``pg_host``)."""
        return self.node(side).pg_host or self.host

    def keycloak_url(self, side: str) -> str:
        """Base URL of a node's Keycloak (the embedded stand-in unless configured)."""
        node = self.node(side)
        return node.keycloak_url or f"http://{self.host}:{node.keycloak_port}"

    def keycloak_port(self, side: str) -> int:
        """Port of a node's embedded Keycloak stand-in."""
        return self.node(side).keycloak_port

    def captured_stores(self, side: str) -> tuple[str, ...]:
        """The stores captured on ``side``: one institution's stores on a multi-tenant server (a node with a
        ``db_suffix``) never include the shared ones, which hold every institution's records."""
        if side not in CAPTURED_STORES:  # a regional server: read-only replicas, nothing captured
            return ()
        if self.node(side).db_suffix:
            return tuple(s for s in CAPTURED_STORES[side] if s not in SHARED_STORES)
        return CAPTURED_STORES[side]

    @property
    def replica_nodes(self) -> tuple[str, ...]:
        """The regional servers fed by this home link's replica routes: its nodes other than the two sides."""
        return tuple(n for n in self.nodes if n not in SIDES)

    @property
    def applied_routes(self) -> tuple[str, ...]:
        """Every route a worker of this stack applies: both home directions, then one replica route per
        regional server (:attr:`replica_nodes`)."""
        return (*ROUTES, *(replica_route(n) for n in self.replica_nodes))

    def progress_route(self, route: str) -> str:
        """The name a route's applied positions are kept under: the route, or, for a replica route, the
        plan's ``<hospital>_to_<region>`` (a regional server keeps the positions of every hospital's link)."""
        node = replica_node(route)
        return f"{self.network_link}_to_{node}" if node is not None and self.network_link else route

    def worker_client_tag(self, route: str) -> str:
        """The client tag of a route's worker: it runs beside the stores it writes (a replica route's on
        the regional server: ``<node>.replica``, which the link proxy cuts with that node)."""
        node = replica_node(route)
        return f"{node}.replica" if node is not None else self.client_tag(ROUTES[route][1])

    def client_tag(self, side: str) -> str:
        """What a Kafka ``client.id`` says about its process's side: ``platsync-<tag>-...``, where the tag is
        the side, or ``<link>.<side>`` in a network (the link proxy reads it; docs/topology.md)."""
        return f"{self.network_link}.{side}" if self.network_link else side

    def topic(self, side: str, store: str) -> str:
        """Topic holding the changes captured from ``store`` on ``side``."""
        return f"{self.topic_prefix}.{side}.{store}"

    def dead_letter_topic(self, route: str) -> str:
        """Dead-letter topic of a route."""
        return f"{self.topic_prefix}.dlq.{route}"

    def consumer_group(self, route: str) -> str:
        """Consumer group (Faust app id) applying a route."""
        return f"{self.topic_prefix}-{route}"

    def group_heartbeat_s(self) -> float:
        """Heartbeat interval of a consumer-group member: a third of its session, as Kafka advises."""
        return self.worker_session_timeout_s / 3

    def as_dict(self) -> dict[str, Any]:
        """A JSON-friendly view (paths as strings; ``nodes`` and ``metrics_worker_ports`` as nested tables)."""
        view: dict[str, Any] = {}
        for f in fields(self):
            value = getattr(self, f.name)
            if f.name == "nodes":
                value = {node: dataclasses.asdict(ns) for node, ns in value.items()}
            elif isinstance(value, Mapping):
                value = dict(value)
            view[f.name] = str(value) if isinstance(value, Path) else value
        return view


def _coerce(name: str, raw: Any, kind: type, source: str) -> Any:
    if kind is tuple:  # a node's number range: nodes.<id>.<field>
        try:
            return number_range(name.rpartition(".")[2], raw)
        except ValueError as exc:
            raise SettingsError(f"{source}: {name.rpartition('.')[0]}.{exc}") from None
    try:
        if kind is Path:
            return Path(str(raw)).expanduser()
        if kind is bool:
            if isinstance(raw, bool):
                return raw
            if str(raw).lower() in ("1", "true", "yes", "on"):
                return True
            if str(raw).lower() in ("0", "false", "no", "off"):
                return False
            raise ValueError(raw)
        return kind(raw)
    except (TypeError, ValueError):
        raise SettingsError(f"{source}: {name} expects {kind.__name__}, got {raw!r}") from None


def validate_broker_security(settings: Settings) -> None:
    """Raise :class:`SettingsError` for a protocol, mechanism or credential combination that cannot work."""
    protocol = settings.broker_security_protocol
    if protocol not in PROTOCOLS:
        raise SettingsError(f"broker_security_protocol must be one of {', '.join(PROTOCOLS)}, got {protocol!r}")
    if settings.broker_sasl_mechanism not in SASL_MECHANISMS:
        raise SettingsError(f"broker_sasl_mechanism must be one of {', '.join(SASL_MECHANISMS)}, "
                            f"got {settings.broker_sasl_mechanism!r}")
    exposed = non_loopback_broker_hosts(settings)
    if exposed and protocol != "sasl_ssl":
        raise SettingsError(
            f"the broker is reached on a non-loopback address ({', '.join(exposed)}) with "
            f"broker_security_protocol={protocol}: links that leave the machine must use TLS + SASL; set "
            "broker_security_protocol = \"sasl_ssl\" (docs/broker_security.md), or keep host and "
            "broker_bootstrap_servers on 127.0.0.1 for the embedded stack")
    if bool(settings.broker_username) != bool(settings.broker_password):
        raise SettingsError("broker_username and broker_password go together: set both (a real Kafka's SASL "
                            "user) or neither (the embedded stack's generated users)")


def _scalar_kinds() -> dict[str, type]:
    return {f.name: (Path if f.name == "data_dir" else type(f.default))
            for f in fields(Settings) if f.name not in ("nodes", "metrics_worker_ports")}


class _Collected:
    """Values gathered from the file, the environment and the options, latest source winning."""

    def __init__(self) -> None:
        self.scalars: dict[str, Any] = {}
        self.nodes: dict[str, dict[str, Any]] = {}
        self.worker_ports: dict[str, int] = {}

    def set(self, name: str, raw: Any, source: str) -> bool:
        """Record a scalar or alias setting; False when ``name`` is neither."""
        kinds = _scalar_kinds()
        if name in kinds:
            self.scalars[name] = _coerce(name, raw, kinds[name], source)
            return True
        alias = alias_names().get(name)
        if alias is None:
            return False
        owner, key = alias
        if owner == "worker":
            self.worker_ports[key] = _coerce(name, raw, int, source)
        else:
            self.nodes.setdefault(owner, {})[key] = _coerce(name, raw, NODE_FIELDS[key], source)
        return True

    def set_tables(self, data: Mapping[str, Any], source: str) -> None:
        """Record the ``[nodes.<id>]`` and ``[metrics_worker_ports]`` tables of a settings file."""
        for node, table in dict(data.get("nodes", {})).items():
            if not isinstance(table, Mapping):
                raise SettingsError(f"{source}: nodes.{node} expects a table of {', '.join(NODE_FIELDS)}")
            for key, raw in table.items():
                if key not in NODE_FIELDS:
                    raise SettingsError(f"{source}: nodes.{node}: unknown setting {key!r}; "
                                        f"known: {', '.join(NODE_FIELDS)}")
                self.nodes.setdefault(node, {})[key] = _coerce(f"nodes.{node}.{key}", raw, NODE_FIELDS[key], source)
        for route, raw in dict(data.get("metrics_worker_ports", {})).items():
            self.worker_ports[route] = _coerce(f"metrics_worker_ports.{route}", raw, int, source)

    def build_nodes(self) -> dict[str, NodeSettings]:
        nodes = default_nodes()
        for node, values in self.nodes.items():
            if node in nodes:
                nodes[node] = dataclasses.replace(nodes[node], **values)
                continue
            missing = [f.name for f in fields(NodeSettings)
                       if f.default is dataclasses.MISSING and f.name not in values]
            if missing:
                raise SettingsError(f"nodes.{node}: missing {', '.join(missing)} (a node other than local/remote "
                                    "has no default ports)")
            nodes[node] = NodeSettings(**values)
        return nodes


def is_loopback(host: str) -> bool:
    """True for ``localhost`` and loopback addresses (``127.0.0.0/8``, ``::1``); False for any other name."""
    host = host.strip().strip("[]")
    if host.lower() == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def non_loopback_broker_hosts(settings: Settings) -> list[str]:
    """Hosts through which the broker is reached or listens that are not loopback (exemptions removed)."""
    hosts = [settings.host]
    for server in filter(None, (x.strip() for x in settings.broker_bootstrap_servers.split(","))):
        hosts.append(server.rsplit(":", 1)[0] if server.count(":") == 1 or server.startswith("[") else server)
    exempt = {h.strip() for h in settings.broker_plaintext_hosts.split(",") if h.strip()}
    return sorted({h for h in hosts if not is_loopback(h) and h not in exempt})


def load_settings(
    config: Path | None = None,
    env: Mapping[str, str] | None = None,
    **overrides: Any,
) -> Settings:
    """Build the settings: defaults < TOML file < environment < explicit ``overrides``.

    ``overrides`` with value ``None`` are ignored, so CLI options can be passed through as is. The flat
    two-site names (``pg_local_port``, ...; :func:`alias_names`) are accepted in all three sources.
    """
    env = os.environ if env is None else env
    collected = _Collected()

    data_dir_hint = overrides.get("data_dir") or env.get(f"{ENV_PREFIX}DATA_DIR") or Settings.data_dir
    config = config or (Path(env[f"{ENV_PREFIX}CONFIG"]) if f"{ENV_PREFIX}CONFIG" in env else None)
    if config is None:
        candidate = Path(data_dir_hint) / "platsync.toml"
        config = candidate if candidate.exists() else None
    if config is not None:
        try:
            data = tomllib.loads(Path(config).read_text(encoding="utf-8"))
        except (OSError, tomllib.TOMLDecodeError) as exc:
            raise SettingsError(f"{config}: {exc}") from None
        collected.set_tables(data, str(config))
        for key, raw in data.items():
            if key not in ("nodes", "metrics_worker_ports") and not collected.set(key, raw, str(config)):
                known = sorted([*_scalar_kinds(), "nodes", "metrics_worker_ports", *alias_names()])
                raise SettingsError(f"{config}: unknown setting {key!r}; known: {', '.join(known)}")
    for name in [*_scalar_kinds(), *alias_names()]:
        env_name = f"{ENV_PREFIX}{name.upper()}"
        if env_name in env:
            collected.set(name, env[env_name], f"environment {env_name}")
    for name, raw in overrides.items():
        if raw is not None and not collected.set(name, raw, "option"):
            raise SettingsError(f"unknown setting {name!r}")
    worker_ports = {**DEFAULT_WORKER_METRICS_PORTS, **collected.worker_ports}
    settings = Settings(**collected.scalars, nodes=collected.build_nodes(), metrics_worker_ports=worker_ports)
    return dataclasses.replace(settings, data_dir=settings.data_dir.absolute())
