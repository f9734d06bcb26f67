"""Who each process is: its database role and password, its Kafka principal (runtime layer).

The least-privilege policy (:mod:`streams.ops.access_policy`) says what each role and principal may do;
this module only names them and finds their secrets, so that the connection strings
(:mod:`streams.runtime.connections`), the Kafka client configuration and the provisioning can use it without
importing the policy (and, through it, the store schemas and the capture).
"""

from __future__ import annotations

import os
import secrets
from pathlib import Path

from streams.core.errors import PlatSyncError
from streams.core.model import ROUTES, SIDES
from streams.runtime.settings import Settings

ADMIN, CAPTURE, APPLY, APP, OPERATOR, FHIR = "admin", "capture", "apply", "app", "operator", "fhir"
#: Roles provisioned on every side besides the admin (key -> role name).
ROLE_NAMES: dict[str, str] = {CAPTURE: "platsync_capture", APPLY: "platsync_apply", APP: "platsync_app",
                              OPERATOR: "platsync_operator", FHIR: "platsync_fhir"}
FANOUT, SUBSCRIBER, INDEXER, DECLARER = "fanout", "subscriber", "indexer", "declarer"
#: Roles of a network's sharing processes (docs/sharing.md), provisioned only where those run: the fan-out's
#: and the indexer's on the cloud, a subscriber's on its hospital, a declarer's on each common server.
SHARING_ROLE_NAMES: dict[str, str] = {FANOUT: "platsync_fanout", SUBSCRIBER: "platsync_subscriber",
                                      INDEXER: "platsync_indexer", DECLARER: "platsync_declarer"}
#: Every role but the admin.
ALL_ROLE_NAMES: dict[str, str] = {**ROLE_NAMES, **SHARING_ROLE_NAMES}


class AccessPolicyError(PlatSyncError, RuntimeError):
    """A role's credentials are missing or the policy is asked for something it does not know."""


def secret_path(settings: Settings, side: str, role: str) -> Path:
    """Where the embedded stack keeps the generated password of ``role`` on ``side``."""
    return settings.data_dir / "secrets" / f"pg-{side}-{ALL_ROLE_NAMES[role]}.password"


def _configured_password(settings: Settings, role: str) -> str:
    return str(getattr(settings, f"pg_{role}_password"))


def role_name(settings: Settings, side: str, role: str) -> str:
    """The database role name of ``role`` (a key of :data:`ALL_ROLE_NAMES`) on ``side``: the policy's name plus
    the node's ``db_suffix``, so that each institution on a multi-tenant server has roles of its own."""
    return ALL_ROLE_NAMES[role] + settings.node(side).db_suffix


def role_credentials(settings: Settings, side: str, role: str) -> tuple[str, str]:
    """(user, password) of ``role`` on ``side``; the admin's when ``pg_least_privilege`` is off."""
    if role == ADMIN or not settings.pg_least_privilege:
        return settings.pg_user, settings.pg_password
    if role not in ALL_ROLE_NAMES:
        raise AccessPolicyError(f"unknown database role {role!r}; known: {ADMIN}, {', '.join(ALL_ROLE_NAMES)}")
    password = _configured_password(settings, role)
    if not password:
        path = secret_path(settings, side, role)
        try:
            password = path.read_text(encoding="utf-8").strip()
        except FileNotFoundError:
            raise AccessPolicyError(
                f"no password for database role {ALL_ROLE_NAMES[role]} on the {side} side: {path} is missing; "
                f"run 'platsync up' once to provision the roles, or set PLATSYNC_PG_{role.upper()}_PASSWORD") from None
    return role_name(settings, side, role), password


def ensure_role_password(settings: Settings, side: str, role: str) -> str:
    """The password of ``role`` on ``side``: configured, else generated once (file mode 0600)."""
    configured = _configured_password(settings, role)
    if configured:
        return configured
    path = secret_path(settings, side, role)
    if not path.exists():
        path.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
        try:
            fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        except FileExistsError:  # a concurrent provisioning wrote it first
            return path.read_text(encoding="utf-8").strip()
        with os.fdopen(fd, "w", encoding="utf-8") as fh:
            fh.write(secrets.token_urlsafe(24) + "\n")
    return path.read_text(encoding="utf-8").strip()


def sharing_kafka_processes(settings: Settings) -> tuple[str, ...]:
    """The sharing processes of a network with Kafka principals under ``settings`` (``network_servers``): in the
    network's own settings the fan-out, the indexer and each common server's declarer; in a link's settings
    (``network_link``) the hospital's subscriber. None outside a sharing network."""
    servers = [s for s in settings.network_servers.split(",") if s]
    if not servers:
        return ()
    if settings.network_link:
        return (SUBSCRIBER,)
    return (FANOUT, INDEXER, *(f"{DECLARER}-{server}" for server in servers))


def kafka_processes(settings: Settings | None = None) -> tuple[str, ...]:
    """Every process that talks to Kafka under its own principal (with ``settings``: a network link's replica
    workers too, one per regional server it feeds, and the network's sharing processes)."""
    routes = settings.applied_routes if settings is not None else tuple(ROUTES)
    sharing = sharing_kafka_processes(settings) if settings is not None else ()
    return (*(f"capture-{s}" for s in SIDES), *(f"worker-{r}" for r in routes), *(f"mode-{s}" for s in SIDES),
            *sharing, "operator")


def kafka_principals(settings: Settings) -> dict[str, str]:
    """Process name -> Kafka user name (``platsync-capture-local``, ...; a link's subscriber
    ``platsync.hosp-a-subscriber``: the names of :meth:`streams.topology.plan.NetworkPlan.principal`)."""
    return {process: f"{settings.topic_prefix}-{process}" for process in kafka_processes(settings)}
