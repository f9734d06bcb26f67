"""The one settings object: defaults, overridden by a TOML file, overridden by the environment.

Nothing here reads the environment at import time; :func:`load_settings` is the factory.
Environment variables are ``PLATSYNC_<FIELD>`` (for example ``PLATSYNC_DATA_DIR``,
``PLATSYNC_BROKER_PORT``). The settings file is ``<data_dir>/platsync.toml`` unless
``PLATSYNC_CONFIG`` or an explicit path names another one.
"""

from __future__ import annotations

import dataclasses
import os
import tomllib
from collections.abc import Mapping
from dataclasses import dataclass, fields
from pathlib import Path
from typing import Any

from streams.credentials import role_credentials
from streams.errors import PlatSyncError

ENV_PREFIX = "PLATSYNC_"
#: ``broker_security_protocol`` values and the librdkafka ``security.protocol`` each stands for.
PROTOCOLS = {"plaintext": "PLAINTEXT", "ssl": "SSL", "sasl_ssl": "SASL_SSL"}
SASL_MECHANISMS = ("SCRAM-SHA-256", "SCRAM-SHA-512", "PLAIN")


class SettingsError(PlatSyncError, ValueError):
    """A settings file or environment variable holds a value of the wrong kind."""


@dataclass(frozen=True)
class Settings:
    """Every tunable of the engine and of the embedded two-site stack."""

    data_dir: Path = Path(".platsync")
    host: str = "127.0.0.1"
    broker_port: int = 19092  # what Kafka clients use: the link proxy (infra/local/link.py)
    broker_listen_port: int = 19093  # where the broker itself listens, behind the link proxy
    pg_local_port: int = 15432
    pg_remote_port: int = 15433
    # Production (infra/k8s, docs/kubernetes.md): each side's PostgreSQL host and the Kafka bootstrap
    # list. Empty: ``host`` and ``host:broker_port`` (the embedded stack).
    pg_local_host: str = ""
    pg_remote_host: str = ""
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
    pg_bin_dir: str = ""  # empty: auto-detect (pg_config, then /usr/lib/postgresql/*/bin)
    pg_user: str = "platsync"  # the admin: provisioning only (streams/access_policy.py, docs/security.md)
    pg_password: str = "platsync"
    # Least-privilege roles: each process connects as its own role (capture, apply, app, operator).
    # false: every process connects as pg_user. Empty passwords: generated once per side in <data_dir>/secrets/.
    pg_least_privilege: bool = True
    pg_capture_password: str = ""
    pg_apply_password: str = ""
    pg_app_password: str = ""
    pg_operator_password: str = ""
    topic_prefix: str = "platsync"
    # Debezium
    # How often each Debezium engine looks for new changes when idle. Every wake costs about a
    # millisecond of CPU per engine (7 engines: 10 ms kept 62% of a core busy on an idle stack,
    # 50 ms 17%); under load batches are full and this interval does not matter.
    debezium_poll_interval_ms: int = 50
    debezium_max_batch_size: int = 2048
    debezium_heartbeat_ms: int = 10000
    # Drop echo rows inside the Debezium engine (connectors/capture/echo_filter.py); needs javac.
    debezium_echo_filter: bool = True
    # Change events per Kafka message (schemas/change_batch.avsc) and the message size budget.
    capture_events_per_message: int = 100
    capture_message_max_bytes: int = 262_144
    java_cache_dir: str = ""  # empty: ~/.cache/platsync/java (compiled echo filter)
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
    worker_batches_in_flight: int = 2  # batches applied while the next is collected (streams/agents/pipeline.py)
    worker_session_timeout_s: float = 10.0
    # Keycloak (empty URL: the embedded stand-in on the port below; empty DB DSN: the side's
    # embedded PostgreSQL database "keycloak", which holds Keycloak's own account tables)
    keycloak_local_url: str = ""
    keycloak_remote_url: str = ""
    keycloak_local_port: int = 18080
    keycloak_remote_port: int = 18081
    keycloak_local_db: str = ""
    keycloak_remote_db: str = ""
    keycloak_realm: str = "plat"
    keycloak_admin_user: str = "platsync-admin"
    keycloak_admin_password: str = "platsync-admin"
    keycloak_timeout_s: float = 10.0
    keycloak_token_ttl_s: int = 300  # stand-in only: admin/user access token lifetime
    # Credential hashes travel encrypted: "kid:base64key[,kid:base64key...]", first one encrypts.
    # Empty: the embedded stack generates <data_dir>/secrets/credential.keys once.
    credential_keys: str = ""
    # Mode servers (X-Hybridmode status endpoint of each side)
    mode_local_port: int = 18090
    mode_remote_port: int = 18091
    mode_peer_timeout_s: float = 10.0
    # Confluent-compatible schema registry (docs/schema_registry.md). Empty URL: no registry, messages
    # keep the plain framing of streams/codec.py. Otherwise messages use the Confluent wire format and
    # every process registers schemas/*.avsc (subjects by RecordNameStrategy) at start.
    schema_registry_url: str = ""
    schema_registry_user: str = ""  # HTTP basic auth (both empty: none)
    schema_registry_password: str = ""
    schema_registry_compatibility: str = "BACKWARD"  # set on every subject at start
    schema_registry_timeout_s: float = 5.0  # per HTTP request
    schema_registry_start_wait_s: float = 30.0  # how long a starting process waits for an unreachable registry
    # Observability (docs/observability.md): /metrics, /healthz, /readyz of each long-running process
    metrics_enabled: bool = True
    metrics_capture_local_port: int = 19100
    metrics_capture_remote_port: int = 19101
    metrics_worker_local_to_remote_port: int = 19102
    metrics_worker_remote_to_local_port: int = 19103
    metrics_mode_local_port: int = 19104
    metrics_mode_remote_port: int = 19105
    metrics_stall_after_s: float = 30.0  # /healthz turns 503 when a process loop made no progress for this long
    log_format: str = "text"  # text | json (streams/logs.py)
    # Supervisor
    ready_timeout_s: float = 120.0
    status_interval_s: float = 1.0

    def __post_init__(self) -> None:
        validate_broker_security(self)

    @property
    def broker_bootstrap(self) -> str:
        """Bootstrap servers of the Kafka-compatible broker (``host:broker_port`` unless configured)."""
        return self.broker_bootstrap_servers or f"{self.host}:{self.broker_port}"

    def mode_port(self, side: str) -> int:
        """Port of a side's HTTP status endpoint (``X-Hybridmode``)."""
        return {"local": self.mode_local_port, "remote": self.mode_remote_port}[side]

    def metrics_port(self, process: str) -> int:
        """Metrics/health port of a long-running process: ``capture-<side>``, ``worker-<route>``, ``mode-<side>``."""
        name = f"metrics_{process.replace('-', '_')}_port"
        port = getattr(self, name, None)
        if not isinstance(port, int) or process.count("-") != 1:
            raise SettingsError(f"no metrics port for process {process!r}: expected capture-<side>, "
                                "worker-<route> or mode-<side>")
        return port

    def pg_port(self, side: str) -> int:
        """The PostgreSQL port of one side."""
        return {"local": self.pg_local_port, "remote": self.pg_remote_port}[side]

    def pg_host(self, side: str) -> str:
        """The PostgreSQL host of one side (``host`` unless ``pg_<side>_host`` is set)."""
        return {"local": self.pg_local_host, "remote": self.pg_remote_host}[side] or self.host

    def pg_credentials(self, side: str, role: str = "admin") -> tuple[str, str]:
        """(user, password) of a database role on one side (roles: streams/access_policy.py)."""
        return role_credentials(self, side, role)

    def dsn(self, side: str, store: str, role: str = "admin") -> str:
        """SQLAlchemy URL of a store's database on one side as ``role`` (psycopg 3 driver)."""
        from urllib.parse import quote

        user, password = self.pg_credentials(side, role)
        return (
            f"postgresql+psycopg://{quote(user, safe='')}:{quote(password, safe='')}@{self.pg_host(side)}:"
            f"{self.pg_port(side)}/{store}"
        )

    def libpq_dsn(self, side: str, store: str, role: str = "admin") -> str:
        """Plain libpq connection string of a store's database on one side as ``role``."""
        user, password = self.pg_credentials(side, role)
        if not password.isalnum():  # libpq's quoting of values with spaces, quotes or backslashes
            password = "'" + password.replace("\\", "\\\\").replace("'", "\\'") + "'"
        return f"host={self.pg_host(side)} port={self.pg_port(side)} dbname={store} user={user} password={password}"

    def keycloak_url(self, side: str) -> str:
        """Base URL of a side's Keycloak (the embedded stand-in unless configured)."""
        configured = {"local": self.keycloak_local_url, "remote": self.keycloak_remote_url}[side]
        port = {"local": self.keycloak_local_port, "remote": self.keycloak_remote_port}[side]
        return configured or f"http://{self.host}:{port}"

    def keycloak_port(self, side: str) -> int:
        """Port of a side's embedded Keycloak stand-in."""
        return {"local": self.keycloak_local_port, "remote": self.keycloak_remote_port}[side]

    def keycloak_db_dsn(self, side: str, role: str = "admin") -> str:
        """libpq DSN of the database holding a side's Keycloak account tables (captured), as ``role``.

        A configured DSN is used as given, whatever the role (its user is Keycloak's database owner's
        choice; docs/security.md)."""
        configured = {"local": self.keycloak_local_db, "remote": self.keycloak_remote_db}[side]
        return configured or self.libpq_dsn(side, "keycloak", role)

    def topic(self, side: str, store: str) -> str:
        """Topic holding the changes captured from ``store`` on ``side``."""
        return f"{self.topic_prefix}.{side}.{store}"

    def dead_letter_topic(self, route: str) -> str:
        """Dead-letter topic of a route."""
        return f"{self.topic_prefix}.dlq.{route}"

    def consumer_group(self, route: str) -> str:
        """Consumer group (Faust app id) applying a route."""
        return f"{self.topic_prefix}-{route}"

    def as_dict(self) -> dict[str, Any]:
        """A JSON-friendly view (paths as strings)."""
        return {k: str(v) if isinstance(v, Path) else v for k, v in dataclasses.asdict(self).items()}


def _coerce(name: str, raw: Any, kind: type, source: str) -> Any:
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
    if bool(settings.broker_username) != bool(settings.broker_password):
        raise SettingsError("broker_username and broker_password go together: set both (a real Kafka's SASL "
                            "user) or neither (the embedded stack's generated users)")


def load_settings(
    config: Path | None = None,
    env: Mapping[str, str] | None = None,
    **overrides: Any,
) -> Settings:
    """Build the settings: defaults < TOML file < environment < explicit ``overrides``.

    ``overrides`` with value ``None`` are ignored, so CLI options can be passed through as is.
    """
    env = os.environ if env is None else env
    kinds = {f.name: (Path if f.name == "data_dir" else type(f.default)) for f in fields(Settings)}
    values: dict[str, Any] = {}

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
        for key, raw in data.items():
            if key not in kinds:
                raise SettingsError(f"{config}: unknown setting {key!r}; known: {', '.join(sorted(kinds))}")
            values[key] = _coerce(key, raw, kinds[key], str(config))
    for name, kind in kinds.items():
        env_name = f"{ENV_PREFIX}{name.upper()}"
        if env_name in env:
            values[name] = _coerce(name, env[env_name], kind, f"environment {env_name}")
    for name, raw in overrides.items():
        if raw is None:
            continue
        if name not in kinds:
            raise SettingsError(f"unknown setting {name!r}")
        values[name] = _coerce(name, raw, kinds[name], "option")
    settings = Settings(**values)
    return dataclasses.replace(settings, data_dir=settings.data_dir.absolute())
