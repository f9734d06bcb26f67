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

ENV_PREFIX = "PLATSYNC_"


class SettingsError(ValueError):
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
    pg_bin_dir: str = ""  # empty: auto-detect (pg_config, then /usr/lib/postgresql/*/bin)
    pg_user: str = "platsync"
    pg_password: str = "platsync"
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
    # Supervisor
    ready_timeout_s: float = 120.0
    status_interval_s: float = 1.0

    @property
    def broker_bootstrap(self) -> str:
        """``host:port`` of the Kafka-compatible broker."""
        return f"{self.host}:{self.broker_port}"

    def mode_port(self, side: str) -> int:
        """Port of a side's HTTP status endpoint (``X-Hybridmode``)."""
        return {"local": self.mode_local_port, "remote": self.mode_remote_port}[side]

    def pg_port(self, side: str) -> int:
        """The PostgreSQL port of one side."""
        return {"local": self.pg_local_port, "remote": self.pg_remote_port}[side]

    def dsn(self, side: str, store: str) -> str:
        """SQLAlchemy URL of a store's database on one side (psycopg 3 driver)."""
        return (
            f"postgresql+psycopg://{self.pg_user}:{self.pg_password}@{self.host}:"
            f"{self.pg_port(side)}/{store}"
        )

    def libpq_dsn(self, side: str, store: str) -> str:
        """Plain libpq connection string of a store's database on one side."""
        return (
            f"host={self.host} port={self.pg_port(side)} dbname={store} "
            f"user={self.pg_user} password={self.pg_password}"
        )

    def keycloak_url(self, side: str) -> str:
        """Base URL of a side's Keycloak (the embedded stand-in unless configured)."""
        configured = {"local": self.keycloak_local_url, "remote": self.keycloak_remote_url}[side]
        port = {"local": self.keycloak_local_port, "remote": self.keycloak_remote_port}[side]
        return configured or f"http://{self.host}:{port}"

    def keycloak_port(self, side: str) -> int:
        """Port of a side's embedded Keycloak stand-in."""
        return {"local": self.keycloak_local_port, "remote": self.keycloak_remote_port}[side]

    def keycloak_db_dsn(self, side: str) -> str:
        """libpq DSN of the database holding a side's Keycloak account tables (captured)."""
        configured = {"local": self.keycloak_local_db, "remote": self.keycloak_remote_db}[side]
        return configured or self.libpq_dsn(side, "keycloak")

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
