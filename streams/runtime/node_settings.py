"""One node's settings (where its PostgreSQL, Keycloak and ports are), and the flat two-site aliases of them.

A node is a site of the network (docs/topology.md); the settings of a two-party stack hold one per side
(``[nodes.local]``, ``[nodes.remote]``), plus the regional servers a network link feeds.
"""

from __future__ import annotations

from dataclasses import dataclass, fields

from streams.core.errors import PlatSyncError
from streams.runtime.number_ranges import RANGE_FIELDS, number_range


class SettingsError(PlatSyncError, ValueError):
    """A settings file or environment variable holds a value of the wrong kind."""


@dataclass(frozen=True)
class NodeSettings:
    """Where one node's stores and processes are: its PostgreSQL, its Keycloak, its ports."""

    pg_port: int
    keycloak_port: int  # the embedded Keycloak stand-in
    mode_port: int  # the X-Hybridmode status endpoint
    metrics_capture_port: int
    metrics_mode_port: int
    api_port: int = 0  # the reference API over HTTP (docs/reference_api_http.md); 0: not served
    pg_host: str = ""  # empty: the settings' ``host``
    keycloak_url: str = ""  # empty: the embedded stand-in on ``keycloak_port``
    # libpq DSN of the database holding Keycloak's account tables (captured); empty: the node's
    # embedded PostgreSQL database "keycloak"
    keycloak_db: str = ""
    # Appended to the names of this node's store databases and database roles: one institution's
    # stores on a multi-tenant server (the cloud: "_hosp_a"). The shared stores keep their names.
    db_suffix: str = ""
    # False: another supervisor runs this node's PostgreSQL (a network's shared cloud server); the
    # two-party stack only provisions its databases there.
    pg_managed: bool = True
    # The node's own inclusive ranges ``(lo, hi)`` of patient numbers (9 digits) and document numbers
    # (10 digits): TOML ``patient_numbers = [lo, hi]``. None: its side's two-site default
    # (connectors/stores/serials.py). A network gives each link's nodes their topology's ranges.
    patient_numbers: tuple[int, int] | None = None
    document_numbers: tuple[int, int] | None = None

    def __post_init__(self) -> None:
        for name in RANGE_FIELDS:
            value = getattr(self, name)
            if value is not None:
                try:
                    object.__setattr__(self, name, number_range(name, value))
                except ValueError as exc:
                    raise SettingsError(str(exc)) from None


#: Each node setting's kind; ``tuple``: a number range (:func:`streams.runtime.number_ranges.number_range`).
NODE_FIELDS: dict[str, type] = {f.name: tuple if f.name in RANGE_FIELDS else {"int": int, "bool": bool}.get(
    str(f.type), str) for f in fields(NodeSettings)}


def default_nodes() -> dict[str, NodeSettings]:
    """The two nodes of the embedded default topology on their documented ports."""
    return {
        "local": NodeSettings(pg_port=15432, keycloak_port=18080, mode_port=18090, metrics_capture_port=19100,
                              metrics_mode_port=19104, api_port=18092),
        "remote": NodeSettings(pg_port=15433, keycloak_port=18081, mode_port=18091, metrics_capture_port=19101,
                               metrics_mode_port=19105, api_port=18093),
    }


DEFAULT_WORKER_METRICS_PORTS: dict[str, int] = {"local_to_remote": 19102, "remote_to_local": 19103}


def alias_names() -> dict[str, tuple[str, str]]:
    """The flat two-site setting names kept as aliases: name -> ``(node, field)`` or ``("worker", route)``.

    ``pg_local_port`` is ``nodes.local.pg_port``; ``metrics_worker_local_to_remote_port`` is
    ``metrics_worker_ports.local_to_remote``. Number ranges have none: ``[nodes.<id>]`` tables only."""
    names: dict[str, tuple[str, str]] = {}
    for node in ("local", "remote"):
        for name in (n for n in NODE_FIELDS if n not in RANGE_FIELDS):
            prefix, _, suffix = name.rpartition("_")
            names[f"{prefix}_{node}_{suffix}"] = (node, name)
    for route in DEFAULT_WORKER_METRICS_PORTS:
        names[f"metrics_worker_{route}_port"] = ("worker", route)
    return names
